"""/v1/realtime over WebSocket: JSON events in and out of a RealtimeSession. Translation only, no decisions."""
from __future__ import annotations

import asyncio
import json
import logging

from fastapi import WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse

from livehost.server.auth import presented_credential
from livehost.server.protocol import ProtocolError
from livehost.server.session import RealtimeSession

log = logging.getLogger("livehost.ws")


async def realtime_websocket(ws: WebSocket) -> None:
    settings, engines = ws.app.state.settings, ws.app.state.engines
    reason = ws.app.state.gate.why_not(presented_credential(ws.headers))
    if reason:  # a clear 401 with the reason, where the server supports denial responses; else a policy close
        try:
            await ws.send_denial_response(JSONResponse({"error": {"type": "invalid_request_error",
                                                                  "code": "unauthorized", "message": reason}}, 401))
        except RuntimeError:
            await ws.close(code=1008, reason=reason)
        return
    offered = [p.strip() for p in ws.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
    await ws.accept(subprotocol="realtime" if "realtime" in offered else None)
    session = RealtimeSession(engines, settings, "websocket", model=ws.query_params.get("model", "livehost"))
    session.start()
    log.info("session %s opened", session.id)
    reader = asyncio.create_task(_read(ws, session, settings.server.max_message_bytes))
    writer = asyncio.create_task(_write(ws, session))
    try:
        await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (reader, writer):
            task.cancel()
        await asyncio.gather(reader, writer, return_exceptions=True)
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
        if len(data) > limit:
            session.send(ProtocolError(f"message of {len(data)} bytes is over the limit of {limit} bytes "
                                       f"(server.max_message_bytes); split audio into smaller appends",
                                       code="message_too_large").event())
            continue
        await session.handle(data)


async def _write(ws: WebSocket, session: RealtimeSession) -> None:
    try:
        while True:
            event = await session.outbox.get()
            await ws.send_text(json.dumps(event, ensure_ascii=False))
    except (WebSocketDisconnect, RuntimeError):
        return
