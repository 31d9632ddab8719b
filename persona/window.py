"""Short-term memory: the recent turns that fit the prompt, with older turns folded into a running summary.

Summaries come from the LLM, but never on the reply's path: fit() uses whatever summary is ready and starts the next
one in the background; until it lands, the folded turns appear as their first sentences. Folding happens in batches
(down to keep_recent messages) so the prompt's prefix stays the same for several turns, which llama.cpp reuses.
"""
from __future__ import annotations

import asyncio
import logging
import re
from typing import Awaitable, Callable, Optional, Sequence

from livehost.speech.chunker import is_cjk

log = logging.getLogger("livehost.persona")

Summarize = Callable[[str], Awaitable[str]]
MESSAGE_OVERHEAD = 4  # role markers and separators of the chat template
# A suggested instruction for the summarize callable; its input is a transcript, maybe led by "Earlier: ...".
SUMMARY_INSTRUCTION = ("Summarize this conversation in at most three short sentences. Keep names, facts, "
                       "preferences and promises. Write plain text.")
_SENTENCE = re.compile(r"^.+?(?:[.!?](?=\s|$)|[。！？])", re.S)
_LINE_CHARS = 400  # per message, in the text handed to the summarizer


def estimate_tokens(text: str) -> int:
    """Cheap and a little pessimistic: about 4 characters a token for Latin text, one token per CJK character."""
    cjk = sum(1 for c in text if is_cjk(c))
    return cjk + -(-(len(text) - cjk) // 4)


def message_tokens(message: dict) -> int:
    return estimate_tokens(str(message.get("content") or "")) + MESSAGE_OVERHEAD


def _clip_tail(text: str, tokens: int) -> str:
    """The end of text within tokens (the end of a long message or summary is the newest part)."""
    if estimate_tokens(text) <= tokens:
        return text
    lo, hi = 0, len(text)
    while lo < hi:  # smallest start whose tail fits
        mid = (lo + hi) // 2
        if estimate_tokens(text[mid:]) + 1 <= tokens:
            hi = mid
        else:
            lo = mid + 1
    return "…" + text[lo:].lstrip()


def _line(message: dict, first_sentence: bool = False) -> str:
    text = " ".join(str(message.get("content") or "").split())
    if first_sentence:
        m = _SENTENCE.match(text)
        text = m.group() if m else text
        text = text if len(text) <= 160 else text[:157] + "..."
    else:
        text = text[:_LINE_CHARS]
    cut = " (interrupted)" if message.get("status") == "incomplete" else ""
    return f"{str(message.get('role', 'user')).capitalize()}: {text}{cut}"


def _key(message: dict) -> tuple:
    return message.get("role"), str(message.get("content") or ""), message.get("status")


class ConversationWindow:
    """One per conversation. fit() returns (summary or None, the recent messages to send verbatim).

    Recent messages are the caller's own dicts, unchanged (an interrupted reply stays as cut); only a single message
    larger than the whole budget is replaced by a copy holding its end.
    """

    def __init__(self, budget_tokens: int = 1200, keep_recent: int = 4, summary_tokens: Optional[int] = None):
        if budget_tokens < 32:
            raise ValueError("budget_tokens must be at least 32")
        self.budget_tokens = budget_tokens
        self.keep_recent = max(1, keep_recent)
        self.summary_tokens = min(summary_tokens or budget_tokens // 4, budget_tokens // 2)
        self._reset()

    def _reset(self) -> None:
        task = getattr(self, "_task", None)
        if task and not task.done():
            task.cancel()
        self._task: Optional[asyncio.Task] = None
        self._folded: list[tuple] = []       # keys of the messages folded so far, oldest first
        self._folded_msgs: list[dict] = []
        self._summary: Optional[str] = None  # the LLM's summary of the first _covers folded messages
        self._covers = 0
        self._generation = getattr(self, "_generation", 0) + 1  # a result from before a reset is ignored

    @property
    def summarizing(self) -> bool:
        return self._task is not None and not self._task.done()

    async def fit(self, messages: Sequence[dict], summarize: Summarize) -> tuple[Optional[str], list[dict]]:
        """Never awaits the summarizer: safe on the reply's hot path."""
        messages = list(messages)
        keys = [_key(m) for m in messages]
        if keys[:len(self._folded)] != self._folded:  # an item was edited or deleted under the summary
            self._reset()
        cut = len(self._folded)
        room = self.budget_tokens - self.summary_tokens
        after = [0] * (len(messages) + 1)  # after[i]: tokens of messages[i:]
        for i in range(len(messages) - 1, -1, -1):
            after[i] = after[i + 1] + message_tokens(messages[i])
        if after[cut] > (room if cut else self.budget_tokens):
            new_cut = max(cut, len(messages) - self.keep_recent)
            while new_cut < len(messages) - 1 and after[new_cut] > room:
                new_cut += 1
            if new_cut > cut:
                self._folded, self._folded_msgs = keys[:new_cut], messages[:new_cut]
                cut = new_cut
                self._schedule(summarize)
        recent = messages[cut:]
        limit = room if cut else self.budget_tokens
        if len(recent) == 1 and message_tokens(recent[0]) > limit:  # one message larger than the whole room
            recent = [{**recent[0], "content": _clip_tail(str(recent[0].get("content") or ""),
                                                          limit - MESSAGE_OVERHEAD)}]
        return self.summary(), recent

    def summary(self) -> Optional[str]:
        """The LLM summary so far, then first sentences of the newest folded turns it does not cover yet,
        within summary_tokens (the oldest of those go first)."""
        if not self._folded_msgs:
            return None
        pending = [_line(m, first_sentence=True) for m in self._folded_msgs[self._covers:]]
        head = _clip_tail(self._summary, self.summary_tokens // 2 if pending else self.summary_tokens) \
            if self._summary else ""
        room = self.summary_tokens - estimate_tokens(head) - 2
        lines: list[str] = []
        for line in reversed(pending):
            if estimate_tokens(line) + 1 > room:
                break
            lines.insert(0, line)
            room -= estimate_tokens(line) + 1
        if not lines and pending:  # even the newest line is too long: its end
            lines = [_clip_tail(pending[-1], max(room, 1))]
        elif len(lines) < len(pending):
            lines.insert(0, "…")
        return "\n".join(x for x in (head, *lines) if x)

    def _schedule(self, summarize: Summarize) -> None:
        if not self.summarizing:  # a running task picks up newly folded messages when it finishes
            self._task = asyncio.get_running_loop().create_task(self._summarize_loop(summarize, self._generation))

    async def _summarize_loop(self, summarize: Summarize, generation: int) -> None:
        while generation == self._generation and self._covers < len(self._folded_msgs):
            upto = len(self._folded_msgs)
            earlier = f"Earlier: {self._summary}\n" if self._summary else ""
            text = earlier + "\n".join(_line(m) for m in self._folded_msgs[self._covers:upto])
            try:
                result = " ".join(str(await summarize(text)).split())
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - the extractive fallback stays in place
                log.warning("conversation summary failed (%s: %s); using first sentences instead",
                            type(e).__name__, e)
                return
            if generation != self._generation:
                return
            if result:
                self._summary = _clip_tail(result, self.summary_tokens)
                self._covers = upto
            else:
                return

    async def wait_summarized(self) -> None:
        """For tests and shutdown: until the background summary (if any) is done."""
        while self.summarizing:
            await asyncio.shield(self._task)

    def close(self) -> None:
        if self._task and not self._task.done():
            self._task.cancel()
