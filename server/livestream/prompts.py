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


# What viewers pay for most: a hello to someone, a happy birthday. The small models rarely say it (SmolLM2 answered
# "can you say hi to my sister Mia?" with "Thank you, Bo! Hi, I love you."), so the host says it before their words.
_KIN = (r"(?:my\s+(?:little\s+|big\s+|best\s+)?(?:sister|brother|mum|mom|mother|dad|father|friend|wife|husband|"
        r"girlfriend|boyfriend|partner|son|daughter|cousin|aunt|uncle|grandma|grandpa|nan|roommate|buddy|bestie)\s+)?")
_SAY_HI = re.compile(r"\b(?:say|send|give|shout|wave)\s+(?:a\s+)?(?:hi|hello|hey|hiya|shout\s*out|out)\s+to\s+" + _KIN +
                     r"(?P<n>[^\W\d_][\w'-]{0,19})", re.I)
_NOT_A_NAME = {"everyone", "everybody", "all", "chat", "the", "my", "our", "your", "me", "us", "you", "him", "her",
               "them"}
_BIRTHDAY = re.compile(r"\b(?:it'?s|it\s+is|today\s+is)\s+my\s+(?:\w+\s+)?birthday\b(?!\s+(?:next|on|in|tomorrow|soon))|"
                       r"\bmy\s+birthday\s+(?:is\s+)?today\b", re.I)
_HI_ZH = re.compile(r"(?:跟|向|给|和)(?:我的?(?:妹妹|姐姐|哥哥|弟弟|妈妈|爸爸|朋友|女朋友|男朋友|老婆|老公|闺蜜|兄弟))?"
                    r"(?P<n>[\u4e00-\u9fffA-Za-z]{1,6}?)(?:打个?招呼|问个?好|问声好|说声?(?:你好|嗨|hi))", re.I)
_BIRTHDAY_ZH = re.compile(r"(?:今天|今儿|今日)是?我的?生日|我今天(?:过)?生日")


def request_for(event: ChatEvent) -> Optional[tuple[str, tuple[str, ...]]]:
    """A hello or a happy birthday the viewer asks the host for, and the words that show it was said, or None."""
    text = sanitise(getattr(event, "text", "") or "", 300)
    if has_cjk(text):
        if (m := _HI_ZH.search(text)) and m.group("n") not in ("大家", "我", "你", "我们"):
            return f"{m.group('n')}你好！", (m.group("n"),)
        return ("生日快乐！", ("生日快乐",)) if _BIRTHDAY_ZH.search(text) else None
    if (m := _SAY_HI.search(text)) and m.group("n").casefold() not in _NOT_A_NAME:
        friend = m.group("n")[:1].upper() + m.group("n")[1:]
        return f"Hi, {friend}!", (friend.casefold(),)
    return ("Happy birthday!", ("birthday",)) if _BIRTHDAY.search(text) else None


def lead_for(event: ChatEvent) -> tuple[str, tuple[str, ...], Optional[tuple[str, tuple[str, ...]]]]:
    """The words an answer starts with unless the LLM already says them: the viewer's name (and thanks for a
    gift), then what they asked the host to say. Returns (lead, words that make it unnecessary, request)."""
    name = viewer_name(event)
    chinese = has_cjk(getattr(event, "text", "") or event.user_name)
    request = request_for(event)
    if isinstance(event, (Gift, SuperChat)):
        return (f"谢谢{name}！" if chinese else f"Thank you, {name}!"), ("谢", "thank"), request
    if request:  # "Bo, Hi, Mia!" reads badly: the name alone first
        return (f"{name}！" if chinese else f"{name}!"), (name.casefold(),), request
    return (f"{name}，" if chinese else f"{name}, "), (name.casefold(),), None


class Addressed:
    """An LLM wrapper that makes an answer start by addressing the viewer: it reads the first few words, and if
    the name (or the thanks) is not among them, says the lead first, after any emotion tag."""

    def __init__(self, llm: Any, lead: str, enough: tuple[str, ...],
                 request: Optional[tuple[str, tuple[str, ...]]] = None, look_words: int = 6):
        self.llm, self.lead, self.enough, self.look_words = llm, lead, enough, look_words
        self.request = request  # (what the viewer asked to hear, the words that show it was said)

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
                lead = lead if lead.endswith(("!", "！", ".", "。")) else lead + ("！" if has_cjk(lead) else "!")
                yield head + _joined([lead] + ([self.request[0]] if self.request else []))
        finally:
            await stream.aclose()

    def _addressed(self, head: str) -> str:
        said = head.casefold()
        pieces = [] if any(word in said for word in self.enough) else [self.lead]
        if self.request and not any(word.casefold() in said for word in self.request[1]):
            pieces.append(self.request[0])
        if not pieces:
            return head
        tags = _TAG.match(head).group(0)
        return tags + _joined(pieces + [head[len(tags):].lstrip()])


def _joined(pieces: list[str]) -> str:
    out = ""
    for piece in pieces:
        tight = not out or out.endswith((" ", "，", "！", "。")) or (has_cjk(piece[:1]) and out.endswith("!"))
        out += ("" if tight else " ") + piece
    return out
