"""What the host says to the LLM for a chat event or a quiet moment, and the name that starts every answer.

Chat text only ever reaches the LLM through `quote_for_llm` (quoted, sanitised, orders withheld); the system
prompt says so. What viewers are known for comes from long-term memory and goes just before the chat line, so the
persona part of the prompt stays the same from answer to answer (the LLM's prompt cache keeps it).
"""
from __future__ import annotations

import re
from typing import Any, AsyncIterator, Optional

from livehost.persona.memory import has_cjk
from livehost.persona.reply_filter import SAD_NEWS, Prompt

from .events import ChatEvent, Follow, Gift, Join, SuperChat
from .queue import SYSTEM_NOTE, quote_for_llm, sanitise

HOST_RULES = ("Answer the viewer by name in one or two short sentences. Thank viewers for gifts. "
              "Never repeat a viewer's words on request.")
_TAG = re.compile(r"^\s*(\[[^\]]{1,20}\]\s*)*")
# Viewers hear every word: condolences for a happy message, or cheering at sad news, are never said.
CONDOLENCE = re.compile(r"sorry|condolence|\bloss\b|passed away|heart goes out|sad to hear|rest in peace|"
                        r"抱歉|遗憾|节哀|难过", re.I)
CHEER = re.compile(r"\b(yay|awesome|congrat\w*|so glad|happy (?:new year|birthday)|woo+)\b|太棒了|哈哈|恭喜", re.I)


def host_system(character: Any) -> str:
    return f"{character.persona_prompt()}\n{SYSTEM_NOTE}\n{HOST_RULES}"


def task_for(event: ChatEvent) -> str:
    name = viewer_name(event)
    if isinstance(event, (Gift, SuperChat)):
        return f"Thank {name} warmly for it, and react to their message if there is one."
    if isinstance(event, Follow):
        return f"Welcome {name} to the stream."
    if isinstance(event, Join):
        return f"Say hi to {name}."
    return f"Answer {name}."


def viewer_name(event: ChatEvent) -> str:
    return sanitise(event.user_name, 40).replace('"', "'") or "friend"


def chat_messages(character: Any, history: list[dict], event: ChatEvent, memories: list[str],
                  regular: bool) -> list[dict]:
    """LLM messages to answer one chat event. history: recent [{role, content}] of this stream, oldest first."""
    name = viewer_name(event)
    messages = [{"role": "system", "content": host_system(character)}, *history]
    context = [f"Known about {name}:"] + [f"- {m}" for m in memories] if memories else []
    if regular:
        context.append(f"{name} is a regular viewer from earlier streams: welcome them back.")
    # the task goes in this note, not beside the chat line: the small default model echoes a bracketed task back
    context.append(task_for(event))
    messages.append({"role": "system", "content": "\n".join(context)})
    messages.append({"role": "user", "content": quote_for_llm(event)})
    sad = bool(SAD_NEWS.search(getattr(event, "text", "") or ""))
    return Prompt(messages, avoid=CHEER if sad else CONDOLENCE)


def idle_messages(character: Any, history: list[dict], topic: str) -> list[dict]:
    """Chat has been quiet: the host starts a topic from its card and asks chat something."""
    return [{"role": "system", "content": host_system(character)}, *history,
            {"role": "user", "content": f"(Chat has been quiet for a while. Bring up this topic yourself and ask "
                                        f"the viewers one question about it: {topic})"}]


def lead_for(event: ChatEvent) -> tuple[str, tuple[str, ...]]:
    """The words an answer starts with unless the LLM already says them: the viewer's name (and thanks for a
    gift). Returns (lead, words that make it unnecessary)."""
    name = viewer_name(event)
    chinese = has_cjk(getattr(event, "text", "") or event.user_name)
    if isinstance(event, (Gift, SuperChat)):
        return (f"谢谢{name}！" if chinese else f"Thank you, {name}!"), ("谢", "thank")
    return (f"{name}，" if chinese else f"{name}, "), (name.casefold(),)


class Addressed:
    """An LLM wrapper that makes an answer start by addressing the viewer: it reads the first few words, and if
    the name (or the thanks) is not among them, says the lead first, after any emotion tag."""

    def __init__(self, llm: Any, lead: str, enough: tuple[str, ...], look_words: int = 6):
        self.llm, self.lead, self.enough, self.look_words = llm, lead, enough, look_words

    async def stream(self, messages: list[dict], **options: Any) -> AsyncIterator[str]:
        head: Optional[str] = ""
        stream = self.llm.stream(messages, **options)
        try:
            async for token in stream:
                if head is None:
                    yield token
                    continue
                head += token
                if len(head.split()) > self.look_words or re.search(r"[.!?。！？]", _TAG.sub("", head)):
                    yield self._addressed(head)
                    head = None
            if head is not None and _TAG.sub("", head).strip():
                yield self._addressed(head)
            elif head is not None:  # no words at all: at least the greeting, as a whole sentence
                lead = self.lead.strip().rstrip(",，")
                yield head + (lead if lead.endswith(("!", "！", ".", "。")) else lead + ("！" if has_cjk(lead) else "!"))
        finally:
            await stream.aclose()

    def _addressed(self, head: str) -> str:
        if any(word in head.casefold() for word in self.enough):
            return head
        tags = _TAG.match(head).group(0)
        sep = "" if self.lead.endswith((" ", "，", "！")) else " "
        return f"{tags}{self.lead}{sep}{head[len(tags):].lstrip()}"
