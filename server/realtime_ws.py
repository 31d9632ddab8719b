"""/v1/realtime over WebSocket: JSON events in and out of a RealtimeSession. Translation only, no decisions."""
from __future__ import annotations

import asyncio
import json
import logging

from fastapi import HTTPException, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse

from livehost.server.auth import chosen_subprotocol
from livehost.server.limits import Refused
from livehost.server.protocol import ProtocolError
from livehost.server.session import RealtimeSession

log = logging.getLogger("livehost.ws")


async def realtime_websocket(ws: WebSocket) -> None:
    settings, engines = ws.app.state.settings, ws.app.state.engines
    try:
        identity = ws.app.state.gate.identify(ws.headers)
    except HTTPException as exc:  # a clear 401 with the reason, where the server supports denial responses
        try:
            await ws.send_denial_response(JSONResponse({"error": {"type": "invalid_request_error",
                                                                  "code": "unauthorized", "message": exc.detail}}, 401))
        except RuntimeError:
            await ws.close(code=1008, reason=exc.detail)
        return
    try:
        guard = ws.app.state.limits.open(identity, ws.client.host if ws.client else "")
    except Refused as exc:  # like peers: an error event the client can read, then a "try again later" close
        await ws.accept(subprotocol=chosen_subprotocol(ws.headers))
        await ws.send_text(json.dumps(exc.event()))
        await ws.close(code=1013, reason=exc.code)
        return
    try:
        await ws.accept(subprotocol=chosen_subprotocol(ws.headers))
        session = RealtimeSession(engines, settings, "websocket", model=ws.query_params.get("model", "livehost"),
                                  guard=guard, intent=ws.query_params.get("intent"))
    except BaseException:
        guard.close()
        raise
    session.start()
    log.info("session %s opened (%s)", session.id, identity.kind)
    reader = asyncio.create_task(_read(ws, session, settings.server.max_message_bytes))
    writer = asyncio.create_task(_write(ws, session))
    slow = asyncio.create_task(session.outbox.overflowed.wait())
    try:
        await asyncio.wait({reader, writer, slow}, return_when=asyncio.FIRST_COMPLETED)
        if slow.done():
            log.warning("session %s: the client does not read its events; disconnected", session.id)
    finally:
        for task in (reader, writer, slow):
            task.cancel()
        await asyncio.gather(reader, writer, slow, return_exceptions=True)
        if slow.done() and not slow.cancelled():
            try:
                await asyncio.wait_for(ws.close(code=1008, reason="slow consumer: events were not read in time"), 2)
            except (asyncio.TimeoutError, RuntimeError, WebSocketDisconnect):
                pass
        await session.close()
        log.info("session %s closed", session.id)


async def _read(ws: WebSocket, session: RealtimeSession, limit: int) -> None:
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return
        data = message.get("text") if message.get("text") is not None else message.get("bytes")
        if data is None:
            continue
        await session.guard.pace()
        if len(data) > limit:
            session.send(ProtocolError(f"message of {len(data)} bytes is over the limit of {limit} bytes "
                                       f"(server.max_message_bytes); split audio into smaller appends",
                                       code="message_too_large").event())
            continue
        await session.handle(data)


def encode_event(event: dict) -> str:
    """JSON for the wire; a lone surrogate (which UTF-8 cannot carry) is sent escaped instead of ending the writer."""
    text = json.dumps(event, ensure_ascii=False)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return json.dumps(event)


async def _write(ws: WebSocket, session: RealtimeSession) -> None:
    try:
        while True:
            await ws.send_text(encode_event(await session.outbox.get()))
    except (WebSocketDisconnect, RuntimeError):
        return
