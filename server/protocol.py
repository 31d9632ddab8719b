"""The OpenAI Realtime (GA) wire format: client event validation, session config, server event ids.

Only translation lives here; what an event does is decided in session.py.
"""
from __future__ import annotations

import itertools
import json
import re
import secrets
from dataclasses import dataclass, field, replace
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from livehost.server.auth import user_id_problem
from livehost.speech.audio import PCM24K, AudioFormat, AudioFormatError

_counter = itertools.count()


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(6)}{next(_counter):04d}"


class ProtocolError(Exception):
    """A client mistake: becomes an `error` event; the session goes on."""

    def __init__(self, message: str, *, code: str = "invalid_request_error", param: Optional[str] = None,
                 event_id: Optional[str] = None):
        super().__init__(message)
        self.message, self.code, self.param, self.event_id = message, code, param, event_id

    def event(self) -> dict:
        return {"type": "error", "event_id": new_id("event"),
                "error": {"type": "invalid_request_error", "code": self.code, "message": self.message,
                          "param": self.param, "event_id": self.event_id}}


# ---- client events -------------------------------------------------------------------------------------------------

class _Event(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    event_id: Optional[str] = None


class SessionUpdate(_Event):
    session: dict


class AudioAppend(_Event):
    audio: str


class ItemCreate(_Event):
    item: dict
    previous_item_id: Optional[str] = None


class ItemRef(_Event):
    item_id: str


class ItemTruncate(_Event):
    item_id: str
    content_index: int = Field(0, ge=0)
    audio_end_ms: int = Field(ge=0)


class ResponseCreate(_Event):
    response: Optional[dict] = None


class ResponseCancel(_Event):
    response_id: Optional[str] = None


CLIENT_EVENTS: dict[str, type[_Event]] = {
    "session.update": SessionUpdate,
    "input_audio_buffer.append": AudioAppend,
    "input_audio_buffer.commit": _Event,
    "input_audio_buffer.clear": _Event,
    "conversation.item.create": ItemCreate,
    "conversation.item.retrieve": ItemRef,
    "conversation.item.delete": ItemRef,
    "conversation.item.truncate": ItemTruncate,
    "response.create": ResponseCreate,
    "response.cancel": ResponseCancel,
    "output_audio_buffer.clear": _Event,
}


MAX_DEPTH = 32  # no Realtime event nests deeper than a handful of levels
MAX_INSTRUCTIONS = 32_000  # characters: they go into every prompt of the session


def decode_message(raw: str | bytes) -> Any:
    """JSON text -> data; any problem (bad JSON, nesting deeper than MAX_DEPTH, a lone surrogate, which no UTF-8
    writer can send back) is a ProtocolError."""
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"the message is not valid JSON: {exc}", code="invalid_json") from None
    except RecursionError:
        raise ProtocolError(f"the message nests deeper than {MAX_DEPTH} levels", code="invalid_json") from None
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                raise ProtocolError("the message holds a lone UTF-16 surrogate (such as \\ud800), which is not text",
                                    code="invalid_json")
        elif isinstance(value, (dict, list)):
            if depth > MAX_DEPTH:
                raise ProtocolError(f"the message nests deeper than {MAX_DEPTH} levels", code="invalid_json")
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, child in items:
                if isinstance(key, str) and _SURROGATE.search(key):
                    raise ProtocolError("the message holds a lone UTF-16 surrogate, which is not text",
                                        code="invalid_json")
                stack.append((child, depth + 1))
    return data


_SURROGATE = re.compile("[\ud800-\udfff]")


def _check_item(item: dict, event_id: Optional[str]) -> None:
    """conversation.item.create: the fields the server reads have the types it reads them as."""
    def bad(param: str, what: str) -> ProtocolError:
        return ProtocolError(f"conversation.item.create: {param} must be {what}", code="invalid_value",
                             param=param, event_id=event_id)
    for key in ("id", "type", "role", "status"):
        if item.get(key) is not None and not isinstance(item[key], str):
            raise bad(f"item.{key}", "a string")
    if item.get("id") is not None and not 1 <= len(item["id"]) <= 64:
        raise bad("item.id", "1..64 characters")
    content = item.get("content")
    if isinstance(content, list):
        for part in content:
            if not isinstance(part, dict):
                continue  # the conversation's own check names this one
            for key in ("type", "text", "transcript"):
                if part.get(key) is not None and not isinstance(part[key], str):
                    raise bad(f"item.content.{key}", "a string")


def check_modalities(value: Any, param: str, event_id: Optional[str] = None) -> None:
    if value is None:
        return
    if not isinstance(value, list) or not value or not all(isinstance(m, str) for m in value) \
            or not set(value) <= {"audio", "text"}:
        raise ProtocolError(f"{param} must be a list holding 'audio' or 'text'", code="invalid_value", param=param,
                            event_id=event_id)


def _check_response(options: Optional[dict], event_id: Optional[str]) -> None:
    if not options:
        return
    for key in ("output_modalities", "modalities"):
        check_modalities(options.get(key), f"response.{key}", event_id)
    if options.get("instructions") is not None and (not isinstance(options["instructions"], str)
                                                    or len(options["instructions"]) > MAX_INSTRUCTIONS):
        raise ProtocolError(f"response.instructions must be a string of at most {MAX_INSTRUCTIONS} characters",
                            code="invalid_value", param="response.instructions", event_id=event_id)


def parse_client_event(data: Any) -> _Event:
    if not isinstance(data, dict):
        raise ProtocolError("an event must be a JSON object", code="invalid_event")
    event_id = data.get("event_id") if isinstance(data.get("event_id"), str) else None
    kind = data.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("the event has no 'type'", code="missing_required_parameter", param="type",
                            event_id=event_id)
    model = CLIENT_EVENTS.get(kind)
    if model is None:
        raise ProtocolError(f"unknown event type {kind!r}", code="invalid_event_type", param="type",
                            event_id=event_id)
    try:
        event = model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        param = ".".join(str(p) for p in err["loc"])
        code = "missing_required_parameter" if err["type"] == "missing" else "invalid_value"
        raise ProtocolError(f"{kind}: {param}: {err['msg']}", code=code, param=param, event_id=event_id) from None
    if isinstance(event, ItemCreate):
        _check_item(event.item, event_id)
    elif isinstance(event, ResponseCreate):
        _check_response(event.response, event_id)
    return event


# ---- session configuration -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TurnDetection:
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 400
    create_response: bool = True
    interrupt_response: bool = True
    type: str = "server_vad"  # or "semantic_vad": the end-of-turn model decides (speech/smart_turn.py)
    eagerness: str = "auto"  # semantic_vad: low | medium | high | auto
    idle_timeout_ms: Optional[int] = None  # server_vad: prompt the user after this long quiet after a reply

    def to_dict(self) -> dict:
        common = {"type": self.type, "create_response": self.create_response,
                  "interrupt_response": self.interrupt_response}
        if self.type == "semantic_vad":
            return {**common, "eagerness": self.eagerness}
        return {**common, "threshold": self.threshold, "prefix_padding_ms": self.prefix_padding_ms,
                "silence_duration_ms": self.silence_duration_ms, "idle_timeout_ms": self.idle_timeout_ms}


@dataclass(frozen=True)
class SessionConfig:
    instructions: str = ""  # empty: the character's own system prompt
    character: str = "lumi"  # extension `session.livehost.character`
    user_id: Optional[str] = None  # extension `session.livehost.user_id`: whose long-term memory to use
    avatar_frames: Optional[tuple[int, str]] = None  # extension `session.livehost.avatar_frames`: (fps, format)
    input_format: AudioFormat = PCM24K
    output_format: AudioFormat = PCM24K
    voice: str = "default"
    speed: float = 1.0
    output_modalities: tuple[str, ...] = ("audio",)
    turn_detection: Optional[TurnDetection] = field(default_factory=TurnDetection)
    language: Optional[str] = None  # transcription language; None: the server default
    max_output_tokens: Optional[int] = None
    kind: str = "realtime"  # session.type; "transcription": live captions of the input only, never a reply
    tools: tuple = ()  # persona.tools.Tool: function tools the client answers
    tool_choice: str = "auto"  # auto | none | required | a tool's name

    def to_dict(self, session_id: str, model: str, instructions: str = "") -> dict:
        session = {
            "type": "realtime", "object": "realtime.session", "id": session_id, "model": model,
            "instructions": self.instructions or instructions, "output_modalities": list(self.output_modalities),
            "livehost": {"character": self.character, "user_id": self.user_id,
                         "avatar_frames": {"fps": self.avatar_frames[0], "format": self.avatar_frames[1]}
                         if self.avatar_frames else None},
            "max_output_tokens": self.max_output_tokens or "inf",
            "tools": [t.as_dict() for t in self.tools],
            "tool_choice": self.tool_choice if self.tool_choice in ("auto", "none", "required") else
            {"type": "function", "name": self.tool_choice},
            "audio": {
                "input": {"format": self.input_format.to_dict(),
                          "transcription": {"model": "whisper", "language": self.language},
                          "turn_detection": self.turn_detection.to_dict() if self.turn_detection else None},
                "output": {"format": self.output_format.to_dict(), "voice": self.voice, "speed": self.speed},
            },
        }
        if self.kind == "transcription":  # nothing about replies
            return {"type": "transcription", "object": "realtime.transcription_session", "id": session_id,
                    "audio": {"input": session["audio"]["input"]}}
        return session


def _get(obj: dict, key: str, kind: type | tuple, where: str):
    value = obj.get(key)
    if value is not None and not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ProtocolError(f"{where}.{key} must be {names}", code="invalid_value", param=f"{where}.{key}")
    return value


def apply_session_update(config: SessionConfig, patch: dict) -> SessionConfig:
    """A new config with the GA `session` object (and the beta flat fields) applied; errors name the field."""
    changes: dict[str, Any] = {}
    if (kind := _get(patch, "type", str, "session")) is not None:
        if kind not in ("realtime", "transcription"):
            raise ProtocolError(f"session.type {kind!r} is not supported; use 'realtime' or 'transcription'",
                                code="invalid_value", param="session.type")
        changes["kind"] = kind
    if (text := _get(patch, "instructions", str, "session")) is not None:
        if len(text) > MAX_INSTRUCTIONS:
            raise ProtocolError(f"session.instructions is {len(text)} characters; at most {MAX_INSTRUCTIONS}",
                                code="invalid_value", param="session.instructions")
        changes["instructions"] = text
    if "tools" in patch or "tool_choice" in patch:
        changes.update(_tools(patch, config))
    ext = _get(patch, "livehost", dict, "session") or {}
    for key in ("character", "user_id"):
        if (value := _get(ext, key, str, "session.livehost")) is not None:
            if not value.strip() or len(value) > 128:
                raise ProtocolError(f"session.livehost.{key} must be 1..128 characters", code="invalid_value",
                                    param=f"session.livehost.{key}")
            if key == "user_id" and value != config.user_id and (problem := user_id_problem(value)):
                raise ProtocolError(f"session.livehost.user_id: {problem}", code="invalid_value",
                                    param="session.livehost.user_id")
            changes[key] = value.strip()
    if "avatar_frames" in ext:
        changes["avatar_frames"] = _avatar_frames(ext["avatar_frames"])
    if (mods := _get(patch, "output_modalities", list, "session") or _get(patch, "modalities", list, "session")):
        check_modalities(mods, "session.output_modalities")
        changes["output_modalities"] = ("audio",) if "audio" in mods else ("text",)
    if "max_output_tokens" in patch:
        limit = patch["max_output_tokens"]
        if limit != "inf" and not (isinstance(limit, int) and 1 <= limit <= 4096):
            raise ProtocolError("session.max_output_tokens must be 1..4096 or 'inf'", code="invalid_value",
                                param="session.max_output_tokens")
        changes["max_output_tokens"] = None if limit == "inf" else limit
    audio = _get(patch, "audio", dict, "session") or {}
    inp = _get(audio, "input", dict, "session.audio") or {}
    out = _get(audio, "output", dict, "session.audio") or {}
    try:
        if "format" in inp or "input_audio_format" in patch:
            changes["input_format"] = AudioFormat.parse(inp.get("format", patch.get("input_audio_format")))
        if "format" in out or "output_audio_format" in patch:
            changes["output_format"] = AudioFormat.parse(out.get("format", patch.get("output_audio_format")))
    except AudioFormatError as exc:
        raise ProtocolError(str(exc), code="invalid_value", param="session.audio.format") from None
    if (voice := _get(out, "voice", str, "session.audio.output") or _get(patch, "voice", str, "session")):
        if len(voice) > 64:
            raise ProtocolError("session.audio.output.voice must be at most 64 characters", code="invalid_value",
                                param="session.audio.output.voice")
        changes["voice"] = voice
    if (speed := _get(out, "speed", (int, float), "session.audio.output")) is not None:
        if not 0.25 <= speed <= 4:
            raise ProtocolError("session.audio.output.speed must be within 0.25..4", code="invalid_value",
                                param="session.audio.output.speed")
        changes["speed"] = float(speed)
    transcription = _get(inp, "transcription", dict, "session.audio.input") or \
        _get(patch, "input_audio_transcription", dict, "session") or {}
    if "language" in transcription:
        changes["language"] = _get(transcription, "language", str, "session.audio.input.transcription")
    if "turn_detection" in inp or "turn_detection" in patch:
        changes["turn_detection"] = _turn_detection(inp.get("turn_detection", patch.get("turn_detection")),
                                                    config.turn_detection or TurnDetection())
    return replace(config, **changes)


def _tools(patch: dict, config: SessionConfig) -> dict:
    from livehost.persona.tools import ToolError, parse_tool_choice, parse_tools

    try:
        tools = tuple(parse_tools(patch["tools"], "session.tools")) if "tools" in patch else config.tools
        current: Any = config.tool_choice
        if current not in ("auto", "none", "required"):
            current = {"type": "function", "name": current}
        choice = parse_tool_choice(patch.get("tool_choice", current), list(tools), "session.tool_choice")
    except ToolError as exc:
        raise ProtocolError(str(exc), code="invalid_value", param=exc.param) from None
    return {"tools": tools, "tool_choice": choice}


def _avatar_frames(value: Any) -> Optional[tuple[int, str]]:
    """`{"fps": 1..30, "format": "jpeg" | "png"}` asks for the avatar as frames on the WebSocket; null stops them."""
    where = "session.livehost.avatar_frames"
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ProtocolError(f"{where} must be an object or null", code="invalid_value", param=where)
    fps, fmt = value.get("fps", 15), value.get("format", "jpeg")
    if not isinstance(fps, int) or not 1 <= fps <= 30:
        raise ProtocolError(f"{where}.fps must be 1..30", code="invalid_value", param=f"{where}.fps")
    if fmt not in ("jpeg", "png"):
        raise ProtocolError(f"{where}.format must be jpeg or png", code="invalid_value", param=f"{where}.format")
    return fps, fmt


def _turn_detection(value: Any, current: TurnDetection) -> Optional[TurnDetection]:
    where = "session.audio.input.turn_detection"
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ProtocolError(f"{where} must be an object or null", code="invalid_value", param=where)
    kind = value.get("type", "server_vad")
    if kind not in ("server_vad", "semantic_vad"):
        raise ProtocolError(f"{where}.type {kind!r} is not supported; use 'server_vad', 'semantic_vad' or null",
                            code="invalid_value", param=f"{where}.type")
    changes: dict[str, Any] = {"type": kind}
    if kind == "semantic_vad" and (eagerness := _get(value, "eagerness", str, where)) is not None:
        if eagerness not in ("low", "medium", "high", "auto"):
            raise ProtocolError(f"{where}.eagerness {eagerness!r} is not one of low, medium, high, auto",
                                code="invalid_value", param=f"{where}.eagerness")
        changes["eagerness"] = eagerness
    if "idle_timeout_ms" in value:
        idle = value["idle_timeout_ms"]
        if idle is not None and (kind != "server_vad" or not isinstance(idle, int) or isinstance(idle, bool)
                                 or not 5000 <= idle <= 30000):
            raise ProtocolError(f"{where}.idle_timeout_ms must be 5000..30000 or null, with server_vad only",
                                code="invalid_value", param=f"{where}.idle_timeout_ms")
        changes["idle_timeout_ms"] = idle
    for key, kind_, low, high in (("threshold", (int, float), 0.01, 0.99), ("prefix_padding_ms", int, 0, 2000),
                                  ("silence_duration_ms", int, 100, 5000)):
        if (v := _get(value, key, kind_, where)) is not None:
            if not low <= v <= high:
                raise ProtocolError(f"{where}.{key} must be within {low}..{high}", code="invalid_value",
                                    param=f"{where}.{key}")
            changes[key] = v
    for key in ("create_response", "interrupt_response"):
        if (v := _get(value, key, bool, where)) is not None:
            changes[key] = v
    return replace(current, **changes)
