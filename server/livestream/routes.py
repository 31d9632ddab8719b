"""HTTP and WebSocket routes of livestream mode (mounted by `livehost stream`):

    POST /v1/stream/chat     one chat event (or a list) in the ingest format (ingest.py)      API key
    WS   /v1/stream/chat     the same, one JSON event or list per message; each gets a result  API key
    GET  /v1/stream          what the host is doing: paused, speaking, now answering, queue     API key
    POST /v1/stream/pause    {"now": false}: stop taking chat (now: also cut the current answer)
    POST /v1/stream/resume
    POST /v1/stream/skip     cut the current answer, go on with the next
    POST /v1/stream/say      {"text": "..."}: the host says this line next, as written
    WS   /v1/stream/mic      the streamer's microphone, binary pcm16 mono (?rate=16000): the host yields to it
    WS   /v1/stream/events   what the host says, as it says it (overlays)            API key or client token

On a cluster standby (livestream/cluster.py) chat is relayed to the holder; GET /v1/stream says who holds the
stream; the other calls, the microphone and overlays answer 409 / close with 1013 there: use the holder's address.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import APIRouter, HTTPException, Request, WebSocket, WebSocketDisconnect
from pydantic import BaseModel, Field

from livehost.server.auth import presented_credential, chosen_subprotocol
from livehost.server.protocol import ProtocolError, decode_message
from livehost.speech.audio import AudioFormatError

from .ingest import IngestError, parse_ingest
from .mic import StreamerMic
from .queue import sanitise

log = logging.getLogger("livehost.stream")
router = APIRouter(prefix="/v1/stream", tags=["livestream"])
MAX_BATCH = 500


class PauseBody(BaseModel):
    now: bool = False


class SayBody(BaseModel):
    text: str = Field(min_length=1, max_length=500)


def _stream(request: Request) -> Any:
    request.app.state.gate.require_operator(request.headers)  # a key; keyless: local programs, never web pages
    return request.app.state.stream


def _host(request: Request) -> Any:
    stream = _stream(request)
    if stream.host is None:
        raise HTTPException(409, f"this node ({stream.node_id}) is not hosting the stream right now; GET /v1/stream "
                                 f"names the node that is")
    return stream.host


async def _ingest(stream: Any, payload: Any) -> dict:
    """On the host: into its queue. On a standby: checked the same way, then relayed to the host."""
    if stream.host is not None:
        return ingest_payload(stream.host, payload)
    from .relay import relay_payload
    return await relay_payload(stream.relay, payload, ingest_payload)


def ingest_payload(host: Any, payload: Any, nested: bool = False) -> dict:
    """One event or a list of them -> {"outcome": ...} / {"error": ...} (or {"results": [...]} for a list)."""
    if isinstance(payload, list):
        if nested:  # a list in a list would get around the batch limit
            return {"error": "a batch holds chat events (objects), not lists"}
        if len(payload) > MAX_BATCH:
            return {"error": f"at most {MAX_BATCH} events per batch, got {len(payload)}"}
        return {"results": [ingest_payload(host, p, nested=True) for p in payload]}
    try:
        return {"outcome": host.ingest(parse_ingest(payload))}
    except IngestError as exc:
        return {"error": str(exc)}


@router.post("/chat", summary="Feed chat events (a bot or platform bridge)")
async def post_chat(request: Request) -> dict:
    stream = _stream(request)
    limit = request.app.state.settings.server.max_message_bytes
    body = b""
    async for chunk in request.stream():  # read no further than the limit: a huge body is refused, not held
        body += chunk
        if len(body) > limit:
            raise HTTPException(413, f"the body is over {limit} bytes (server.max_message_bytes); send smaller "
                                     f"batches")
    try:
        payload = decode_message(body)
    except ProtocolError as exc:
        raise HTTPException(400, exc.message.replace("message", "body", 1)) from None
    result = await _ingest(stream, payload)
    if "error" in result:
        raise HTTPException(400, result["error"])
    return result


@router.get("", summary="What the host is doing")
async def state(request: Request) -> dict:
    stream = _stream(request)
    if stream.host is None:
        return await stream.standby_state()
    return {**stream.host.state(), **({"role": "host", "node": stream.node_id} if hasattr(stream, "node_id") else {})}


@router.post("/pause", summary="Stop taking chat")
async def pause(request: Request, body: PauseBody | None = None) -> dict:
    host = _host(request)
    host.pause(now=bool(body and body.now))
    return host.state()


@router.post("/resume", summary="Take chat again")
async def resume(request: Request) -> dict:
    host = _host(request)
    host.resume()
    return host.state()


@router.post("/skip", summary="Cut the current answer")
async def skip(request: Request) -> dict:
    return {"skipped": _host(request).skip()}


@router.post("/say", summary="The host says this line next")
async def say(request: Request, body: SayBody) -> dict:
    text = sanitise(body.text)
    if not text:
        raise HTTPException(400, "text: nothing speakable is left after cleaning")
    return {"position": _host(request).say(text), "text": text}


async def _accepted(ws: WebSocket, key_only: bool, host_only: bool = True) -> bool:
    reason = ws.app.state.gate.why_not(presented_credential(ws.headers), key_only=key_only)
    if key_only and not reason and ws.app.state.gate.open and ws.headers.get("origin"):
        reason = "web pages may not use this endpoint on a server without API keys"
    if reason:
        await ws.close(code=1008, reason=reason)
        return False
    if getattr(ws.app.state, "stream", None) is None:
        await ws.close(code=1011, reason="livestream mode is not running (start it with `livehost stream`)")
        return False
    await ws.accept(subprotocol=chosen_subprotocol(ws.headers))
    if host_only and ws.app.state.stream.host is None:  # accepted first: a close before it is a bare HTTP 403
        await ws.close(code=1013, reason="this node is not hosting the stream right now; GET /v1/stream names the "
                                         "node that is")
        return False
    return True


@router.websocket("/chat")
async def chat_socket(ws: WebSocket) -> None:
    if not await _accepted(ws, key_only=True, host_only=False):
        return
    stream, limit = ws.app.state.stream, ws.app.state.settings.server.max_message_bytes
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text") if message.get("text") is not None else message.get("bytes") or b""
            if len(text) > limit:
                await ws.send_json({"error": f"message of {len(text)} bytes is over the limit of {limit}"})
                continue
            try:
                payload = decode_message(text)
            except ProtocolError as exc:
                await ws.send_json({"error": exc.message})
                continue
            try:
                await ws.send_json(await _ingest(stream, payload))
            except HTTPException as exc:  # a standby could not relay it: the bot keeps it and sends it again
                await ws.send_json({"error": exc.detail})
    except (WebSocketDisconnect, RuntimeError):
        return


@router.websocket("/events")
async def events_socket(ws: WebSocket) -> None:
    if not await _accepted(ws, key_only=False):
        return
    host = ws.app.state.stream.host
    queue = host.subscribe()

    async def forward() -> None:
        await ws.send_json({"type": "livehost.stream.state", **host.state()})
        while True:
            await ws.send_json(await queue.get())
    sender = asyncio.create_task(forward())
    try:  # overlays send nothing; reading notices them leave (and server shutdown) even while the host is quiet
        while (await ws.receive())["type"] != "websocket.disconnect":
            pass
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        sender.cancel()
        host.subscribers.discard(queue)
        await asyncio.gather(sender, return_exceptions=True)


@router.websocket("/mic")
async def mic_socket(ws: WebSocket) -> None:
    if not await _accepted(ws, key_only=True):
        return
    stream = ws.app.state.stream
    try:
        mic = StreamerMic(stream.engines, stream.settings, stream.host, int(ws.query_params.get("rate", 16000)))
    except (AudioFormatError, ValueError) as exc:
        await ws.close(code=1003, reason=str(exc))
        return
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("bytes") is None:
                await ws.send_json({"error": "send the microphone as binary pcm16 frames"})
                continue
            try:
                await mic.feed(message["bytes"])
            except AudioFormatError as exc:
                await ws.send_json({"error": str(exc)})
    except (WebSocketDisconnect, RuntimeError, asyncio.CancelledError):
        return
    finally:
        await mic.close()
