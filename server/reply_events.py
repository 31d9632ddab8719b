"""What a reply tells the world, as typed events, and the one translator from them to Realtime server events.

A `Reply` (turn.py) emits these to its listener; the Realtime session and the stream host both subscribe to the
same stream, and only `to_realtime` knows the wire format. `ReplyResult` is what a conversation keeps of a
finished reply.
"""
from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import numpy as np

from livehost.avatar.visemes import VisemeTrack, to_event
from livehost.server.protocol import new_id
from livehost.server.voice_out import Segment, spoken_join
from livehost.speech.audio import encode_audio


@dataclass
class ReplyResult:
    """What a finished reply did: its Realtime status, the words heard and the LLM's own words."""
    status: str  # completed, cancelled or failed
    heard: str
    generated: str = ""
    audio: bool = True
    segments: list[Segment] = field(default_factory=list)
    audio_ms: float = 0.0  # audio sent (the item's length, for truncate)
    status_details: Optional[dict] = None
    wrapped: bool = False  # ended early after a sentence (wrap_up): what was generated was not all said
    calls: list[dict] = field(default_factory=list)  # function_call items: the reply called tools instead


@dataclass
class Created:
    """The reply is announced (response.created): at once, or when a held speculation is released."""
    reply: Any


@dataclass
class Started:
    """Planning is over and the reply speaks: its item exists from here on."""
    reply: Any


@dataclass
class Chunk:
    """Words about to be heard: a spoken chunk (audio mode) or a text token (text mode), with the mouth shapes
    and the feeling of what is said from start_ms of the reply's audio on (emotion None: unchanged)."""
    reply: Any
    text: str
    start_ms: float = 0.0
    visemes: Optional[VisemeTrack] = None
    emotion: Optional[str] = None
    expression: Optional[str] = None
    first: bool = True


@dataclass
class Audio:
    """A piece of reply audio for a transport without a media track (WebSocket deltas)."""
    reply: Any
    pcm: np.ndarray


@dataclass
class Done:
    reply: Any
    result: ReplyResult
    error: Optional[Exception] = None


@dataclass
class Calls:
    """The reply calls tools instead of speaking, as the calls stream: `added` (these function_call items start;
    the listener fills in the item before each), `delta` (a piece of one's arguments) or `done`."""
    reply: Any
    kind: str = "added"
    items: list[dict] = field(default_factory=list)
    delta: str = ""
    previous_ids: list[Optional[str]] = field(default_factory=list)


ReplyEvent = Union[Created, Started, Chunk, Audio, Calls, Done]


def _ids(reply: Any) -> dict:
    return {"response_id": reply.id, "item_id": reply.item_id, "output_index": 0, "content_index": 0}


def assistant_item(reply: Any, result: Optional[ReplyResult] = None) -> dict:
    """The reply's conversation item: in progress while it speaks, then with the words heard."""
    item = {"id": reply.item_id, "object": "realtime.item", "type": "message", "role": "assistant",
            "status": "in_progress", "content": []}
    if result is not None:
        item["status"] = "completed" if result.status == "completed" else "incomplete"
        item["content"] = [{"type": "output_audio", "transcript": result.heard} if result.audio else
                           {"type": "output_text", "text": result.heard}]
    return item


def response(reply: Any, result: Optional[ReplyResult] = None) -> dict:
    plan = reply.plan
    return {"id": reply.id, "object": "realtime.response", "status": result.status if result else "in_progress",
            "status_details": result.status_details if result else None, "conversation_id": "conv_default",
            "output": (list(result.calls) if result else []) +
                      ([assistant_item(reply, result)] if result and reply.started else []),
            "output_modalities": ["audio"] if plan.audio else ["text"],
            "audio": {"output": {"format": plan.output_format.to_dict(), "voice": plan.voice}},
            "max_output_tokens": plan.max_tokens, "usage": None}


def audio_delta(ids: dict, pcm: np.ndarray, fmt: Any) -> dict:
    return {"type": "response.output_audio.delta", **ids,
            "delta": base64.b64encode(encode_audio(pcm, fmt)).decode()}


def to_realtime(event: ReplyEvent) -> list[dict]:
    """The Realtime server events for one reply event (without event_id: the sender adds it)."""
    reply = event.reply
    if isinstance(event, Audio):
        return [audio_delta(_ids(reply), event.pcm, reply.plan.output_format)]
    if isinstance(event, Chunk):
        out = []
        if event.emotion is not None:  # extension: the feeling from this point of the audio on
            out.append({"type": "livehost.emotion", "response_id": reply.id, "item_id": reply.item_id,
                        "emotion": event.emotion, "expression": event.expression or event.emotion,
                        "audio_start_ms": round(event.start_ms)})
        if not reply.plan.audio:
            return out + [{"type": "response.output_text.delta", **_ids(reply), "delta": event.text}]
        if event.visemes is not None:
            out.append(to_event(event.visemes, response_id=reply.id, item_id=reply.item_id))
        return out + [{"type": "response.output_audio_transcript.delta", **_ids(reply),
                       "delta": ("" if event.first or not reply.segments else
                                 spoken_join(reply.segments[-1].text, event.text)) + event.text}]
    if isinstance(event, Created):
        return [{"type": "response.created", "response": response(reply)}]
    if isinstance(event, Calls):
        from livehost.server.tool_calls import call_events

        return call_events(event)
    if isinstance(event, Started):
        item = assistant_item(reply)
        part = {"type": "audio", "transcript": ""} if reply.plan.audio else {"type": "text", "text": ""}
        out = [{"type": "response.output_item.added", "response_id": reply.id, "output_index": 0, "item": item},
               {"type": "conversation.item.added", "previous_item_id": reply.previous_item_id, "item": item},
               {"type": "response.content_part.added", **_ids(reply), "part": part}]
        if reply.plan.sources:  # extension: what grounds this answer (customer-service mode)
            out.append({"type": "livehost.knowledge", "response_id": reply.id, "item_id": reply.item_id,
                        "sources": reply.plan.sources})
        if reply.plan.handoff:  # extension: offer a human; the embedding page can hook this
            out.append({"type": "livehost.handoff", "response_id": reply.id, "item_id": reply.item_id,
                        "reason": reply.plan.handoff})
        return out
    return _done(event)


def _done(event: Done) -> list[dict]:
    reply, result = event.reply, event.result
    if not reply.announced:  # a speculation that was never confirmed: the client never saw it
        return []
    out = []
    if event.error is not None:
        out.append({"type": "error", "error": {"type": "server_error", "code": "engine_error",
                                               "message": str(event.error), "param": None, "event_id": None}})
    if reply.started:
        item = assistant_item(reply, result)
        if result.audio:
            out += [{"type": "response.output_audio.done", **_ids(reply)},
                    {"type": "response.output_audio_transcript.done", **_ids(reply), "transcript": result.heard}]
            part = {"type": "audio", "transcript": result.heard}
        else:
            out.append({"type": "response.output_text.done", **_ids(reply), "text": result.heard})
            part = {"type": "text", "text": result.heard}
        out += [{"type": "response.content_part.done", **_ids(reply), "part": part},
                {"type": "response.output_item.done", "response_id": reply.id, "output_index": 0, "item": item},
                {"type": "conversation.item.done", "item": item}]
    out.append({"type": "response.done", "response": response(reply, result)})
    return out


def with_ids(events: list[dict]) -> list[dict]:
    """The same events, each with its own event_id (for subscribers that are not a session)."""
    return [{"event_id": new_id("event"), **e} for e in events]
