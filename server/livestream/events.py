"""Typed live-chat events shared by every platform adapter, the ingest endpoint and the host's chat queue.

Plain slotted dataclasses, not pydantic models: the queue must ingest thousands of events a second while the host
speaks, and validation happens once at the edge (the adapters' parsers and `ingest.parse_ingest`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import ClassVar, Union


@dataclass(slots=True)
class ChatEvent:
    platform: str                 # "twitch", "bilibili", or whatever a bridge names itself
    channel: str                  # channel name / room id the event came from
    user_id: str
    user_name: str                # display name, used to address the viewer
    ts: float = field(default_factory=time.time)  # wall-clock seconds (platform timestamp when it has one)

    kind: ClassVar[str] = "event"

    @property
    def paid(self) -> bool:
        return False


@dataclass(slots=True)
class Message(ChatEvent):
    text: str = ""
    is_mention: bool = False      # addressed to the host by name (@host, "host, ...")
    badges: tuple[str, ...] = ()  # e.g. ("moderator", "subscriber/12", "medal:foo:7")

    kind: ClassVar[str] = "message"


@dataclass(slots=True)
class Gift(ChatEvent):
    amount: float = 0.0           # in `currency` units; 0 for free gifts (e.g. Bilibili silver)
    currency: str = ""            # "bits", "CNY", "USD", ...
    text: str = ""                # the message sent with it, or a description ("Rocket x2")
    gift_name: str = ""
    count: int = 1

    kind: ClassVar[str] = "gift"

    @property
    def paid(self) -> bool:
        return self.amount > 0


@dataclass(slots=True)
class SuperChat(ChatEvent):
    amount: float = 0.0
    currency: str = ""
    text: str = ""

    kind: ClassVar[str] = "superchat"

    @property
    def paid(self) -> bool:
        return self.amount > 0


@dataclass(slots=True)
class Follow(ChatEvent):
    kind: ClassVar[str] = "follow"


@dataclass(slots=True)
class Join(ChatEvent):
    kind: ClassVar[str] = "join"


Event = Union[Message, Gift, SuperChat, Follow, Join]
EVENT_TYPES: dict[str, type] = {c.kind: c for c in (Message, Gift, SuperChat, Follow, Join)}
