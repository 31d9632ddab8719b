"""A session's conversation: its items in order, what each reply actually said (its `ReplyResult`), and the text
the LLM sees.

State only; the session decides what happens and announces it to the client.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import replace
from typing import Optional

from livehost.server.protocol import ProtocolError, new_id
from livehost.server.reply_events import ReplyResult
from livehost.server.tool_calls import TOOL_ITEMS, as_message
from livehost.server.voice_out import text_until

MAX_ITEMS = 200  # older items leave the conversation (and the prompt) first
_TEXT_PARTS = ("input_text", "text", "output_text")


def item_text(item: dict) -> str:
    parts = [p.get("text") if p.get("type") in _TEXT_PARTS else p.get("transcript") for p in item.get("content", [])]
    return " ".join(p for p in parts if p).strip()


def user_audio_item(item_id: str) -> dict:
    return {"id": item_id, "object": "realtime.item", "type": "message", "role": "user", "status": "completed",
            "content": [{"type": "input_audio", "transcript": None}]}


def client_item(item: dict) -> dict:
    """A `conversation.item.create` item checked and completed; errors name the field."""
    item = dict(item)
    if item.get("type", "message") != "message" or item.get("role") not in ("user", "assistant", "system"):
        raise ProtocolError("conversation.item.create: only message items with role user, assistant or "
                            "system are supported", code="invalid_value", param="item.role")
    content = item.get("content")
    if not isinstance(content, list) or not content or not all(isinstance(c, dict) for c in content):
        raise ProtocolError("conversation.item.create: item.content must be a non-empty list of parts",
                            code="missing_required_parameter", param="item.content")
    for part in content:
        if part.get("type") not in (*_TEXT_PARTS, "input_audio", "output_audio"):
            raise ProtocolError(f"conversation.item.create: content type {part.get('type')!r} is not supported",
                                code="invalid_value", param="item.content.type")
        if part["type"] == "input_audio":
            raise ProtocolError("conversation.item.create: send audio with input_audio_buffer.append",
                                code="invalid_value", param="item.content.type")
    item.update(id=item.get("id") or new_id("item"), object="realtime.item", type="message", status="completed")
    return item


class Conversation:
    def __init__(self) -> None:
        self.items: OrderedDict[str, dict] = OrderedDict()
        self.spoken: dict[str, ReplyResult] = {}  # assistant items -> what their reply said, when, and how much

    def last_id(self) -> Optional[str]:
        return next(reversed(self.items), None)

    def add(self, item: dict) -> Optional[str]:
        """Append an item; returns the id of the item before it."""
        previous = self.last_id()
        self.items[item["id"]] = item
        while len(self.items) > MAX_ITEMS:
            old, _ = self.items.popitem(last=False)
            self.spoken.pop(old, None)
        return previous

    def record(self, item: dict, result: ReplyResult) -> None:
        """A reply has ended: its item (if the client has not deleted it meanwhile) and what it said."""
        if item["id"] in self.items:
            self.items[item["id"]] = item
            self.spoken[item["id"]] = result

    def get(self, item_id: str) -> dict:
        if item_id not in self.items:
            raise ProtocolError(f"item {item_id!r} does not exist", code="item_not_found", param="item_id")
        return self.items[item_id]

    def delete(self, item_id: str) -> None:
        self.get(item_id)
        del self.items[item_id]
        self.spoken.pop(item_id, None)

    def truncate(self, item_id: str, audio_end_ms: int) -> None:
        """Cut an assistant item's transcript to the words heard by audio_end_ms."""
        item = self.get(item_id)
        said = self.spoken.get(item_id)
        if item.get("role") != "assistant" or said is None or not said.audio:
            raise ProtocolError("only assistant audio items can be truncated", code="invalid_value", param="item_id")
        if audio_end_ms > said.audio_ms + 1:
            raise ProtocolError(f"audio_end_ms {audio_end_ms} is past the end of the item's audio "
                                f"({said.audio_ms:.0f} ms)", code="invalid_value", param="audio_end_ms")
        heard = text_until(said.segments, audio_end_ms)
        for part in item.get("content", []):
            if part.get("type") == "output_audio":
                part["transcript"] = heard
        self.spoken[item_id] = replace(said, heard=heard, generated="")  # the LLM sees only what was heard

    def for_llm(self) -> list[dict]:
        """Finished items with words in them, oldest first, as the dialogue core sees them."""
        out = []
        for item in self.items.values():
            if item.get("type") in TOOL_ITEMS:  # a call and its result, as the dialogue reads them
                out.append({**as_message(item, self.items), "status": "completed"})
                continue
            said = self.spoken.get(item["id"])
            if said and said.status == "completed" and said.generated.strip() and not said.wrapped:
                text = said.generated.strip()  # exactly what the LLM wrote, so its prompt cache still matches
            else:
                text = item_text(item)  # an interrupted reply: only what was heard
            if text and item.get("status") != "in_progress":
                out.append({"role": item["role"], "content": text, "status": item.get("status", "completed")})
        return out
