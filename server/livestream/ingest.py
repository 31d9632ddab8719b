"""The generic chat ingest format that any bot or platform bridge can POST (or send over a WebSocket):

    {"platform": "youtube", "channel": "mychannel", "type": "message",
     "user": {"id": "UC123", "name": "Ann", "badges": ["member"]},
     "text": "hello!", "mention": false, "ts": 1718000000.5}

type is one of message | gift | superchat | follow | join; gift and superchat need "amount" and "currency" (gift
may add "gift_name" and "count"). Validation is strict about structure and lenient about optional extras, and its
errors name the field, so a bridge author can fix their bot from the error text alone.
"""
from __future__ import annotations

import time
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .events import ChatEvent, Follow, Gift, Join, Message, SuperChat

MAX_TEXT = 2000  # the queue applies the stricter spoken-length cap; this only stops abuse of the endpoint


class IngestError(ValueError):
    """The payload does not follow the ingest format; str() says which fields and why."""


class _User(BaseModel):
    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=True)
    id: Optional[str] = Field(None, max_length=128)
    name: str = Field(min_length=1, max_length=128)
    badges: list[str] = Field(default_factory=list, max_length=32)


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=True)
    platform: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_.\-]+$")
    channel: str = Field("", max_length=128)
    type: Literal["message", "gift", "superchat", "follow", "join"]
    user: _User
    text: str = Field("", max_length=MAX_TEXT)
    mention: bool = False
    amount: Optional[float] = Field(None, ge=0, allow_inf_nan=False)
    currency: Optional[str] = Field(None, min_length=1, max_length=16)
    gift_name: str = Field("", max_length=128)
    count: int = Field(1, ge=1, le=1_000_000)
    ts: Optional[float] = Field(None, ge=0, allow_inf_nan=False)

    @field_validator("text")
    @classmethod
    def _no_nul(cls, v: str) -> str:
        if "\x00" in v:
            raise ValueError("text must not contain NUL characters")
        return v


def _describe(e: ValidationError) -> str:
    parts = []
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "payload"
        parts.append(f"{loc}: {err['msg']}")
    return "invalid chat event: " + "; ".join(parts)


def parse_ingest(payload: dict) -> ChatEvent:
    """Validate one ingest payload and return the typed event. Raises IngestError with a readable message."""
    if not isinstance(payload, dict):
        raise IngestError(f"invalid chat event: expected a JSON object, got {type(payload).__name__}")
    try:
        p = _Payload.model_validate(payload)
    except ValidationError as e:
        raise IngestError(_describe(e)) from None
    base = dict(platform=p.platform.lower(), channel=p.channel, user_id=p.user.id or p.user.name,
                user_name=p.user.name, ts=p.ts if p.ts is not None else time.time())
    if p.type == "message":
        if not p.text.strip():
            raise IngestError("invalid chat event: text: a message needs non-empty text")
        return Message(**base, text=p.text, is_mention=p.mention, badges=tuple(p.user.badges))
    if p.type in ("gift", "superchat"):
        missing = [f for f in ("amount", "currency") if getattr(p, f) is None]
        if missing:
            raise IngestError(f"invalid chat event: {', '.join(missing)}: required for type {p.type!r}")
        if p.type == "superchat":
            return SuperChat(**base, amount=p.amount, currency=p.currency, text=p.text)
        return Gift(**base, amount=p.amount, currency=p.currency, text=p.text, gift_name=p.gift_name,
                    count=p.count)
    return (Follow if p.type == "follow" else Join)(**base)
