"""Cut an LLM's token stream into speakable chunks (English and Chinese) so TTS can start early.

The cut points depend only on the text, never on how it was split into tokens: where the next
character decides (an English "." may be "3.14"), the chunker waits for it.
"""
from __future__ import annotations

import re
from typing import Any, AsyncIterator

_CJK_ENDERS = "。！？；"  # full-width: a sentence ends here, no space follows
_EN_ENDERS = ".!?…"
_CJK_CLAUSE = "，、；："
_CJK_COMMAS = "，、"  # may end a short first chunk (not '：', which often opens a quote)
_EN_CLAUSE = ",;:—"
# May follow a sentence end before the space: quotes, brackets, markdown emphasis.
_CLOSERS = "\"'”’)]}）」』】》*_`"
# Dropped from the start of a chunk: they belong to the previous one, already sent.
_LEADING_JUNK = "”’)]}）」』】》。！？；，、：!?…,;:"

_ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "vs", "etc", "mt"}
_DOTTED = re.compile(r"(?:[A-Za-z]\.)+[A-Za-z]")  # e.g  i.e  U.S  a.m  p.m  (final dot excluded)

_URL = re.compile(r"(https?://\S+|www\.\S+)")
_MARKDOWN = re.compile(r"[*_#`]+")
_EMOJI = re.compile(
    "[\U0001F000-\U0001FAFF"  # pictographs, emoticons, transport, flags...
    "\u2300-\u23FF\u2600-\u27BF\u2B00-\u2BFF"  # technical symbols, misc symbols, dingbats, stars
    "\uFE00-\uFE0F\u200D\u20E3\U000E0020-\U000E007F]"  # variation selectors, joiners, keycaps, tags
)


def is_cjk(c: str) -> bool:
    """CJK ideographs, kana, hangul and full-width forms: written without spaces between words."""
    return "\u3000" <= c <= "\u9fff" or "\uac00" <= c <= "\ud7af" or "\uf900" <= c <= "\ufaff" \
        or "\uff00" <= c <= "\uffef"


def speakable(text: str) -> str:
    """Text as it should be spoken: no markdown marks or emoji, single spaces; URLs untouched."""
    parts = _URL.split(text)  # odd indexes are URLs
    for k in range(0, len(parts), 2):
        parts[k] = _EMOJI.sub("", _MARKDOWN.sub("", parts[k]))
    return " ".join("".join(parts).split())


def _is_abbreviation(buf: str, dot: int) -> bool:
    """Whether the '.' at buf[dot] ends an abbreviation, an initial or a list number, not a sentence."""
    start = dot
    while start > 0 and not buf[start - 1].isspace():
        start -= 1
    word = buf[start:dot].lstrip("\"'“‘([{*_`")
    if not word:
        return False
    if word.lower() in _ABBREVIATIONS or _DOTTED.fullmatch(word):
        return True
    if len(word) == 1 and word.isupper():  # John F. Kennedy
        return True
    line_start = buf.rfind("\n", 0, start) + 1
    return word.isdigit() and not buf[line_start:start].strip()  # "1. " of a numbered list


class SentenceChunker:
    """push() tokens, get back the chunks that are complete; flush() at the end of the reply.

    Splits at sentence ends and newlines. Until the first chunk is out it also splits at a clause
    boundary once first_min_chars are held (a Chinese one once first_min_cjk Chinese characters are),
    or after first_max_words words when no boundary comes, so the voice starts while the LLM is still
    writing. No chunk is longer than max_chars.
    """

    def __init__(self, first_min_chars: int = 12, max_chars: int = 220, first_max_words: int = 7,
                 first_min_cjk: int = 2):
        if max_chars < 2:
            raise ValueError("max_chars must be at least 2")
        self.first_min_chars = first_min_chars
        self.first_min_cjk = first_min_cjk
        self._first_words = re.compile(r"\s*(?:\S+\s+){%d}" % first_max_words) if first_max_words else None
        self.max_chars = max_chars
        self._buf = ""
        self._emitted = False

    def push(self, text: str) -> list[str]:
        self._buf += text
        return self._drain()

    def flush(self) -> list[str]:
        chunks = self._drain()
        self._emit(self._buf, chunks)
        self._buf, self._emitted = "", False
        return chunks

    def _drain(self) -> list[str]:
        chunks: list[str] = []
        while True:
            self._buf = self._buf.lstrip()  # so a cut never depends on where a token began
            cut = self._next_cut()
            if cut is None:
                return chunks
            self._emit(self._buf[:cut], chunks)
            self._buf = self._buf[cut:]

    def _emit(self, raw: str, chunks: list[str]) -> None:
        text = speakable(raw.strip().lstrip(_LEADING_JUNK))
        if any(c.isalnum() for c in text):  # drop punctuation-only leftovers
            chunks.append(text)
            self._emitted = True

    def _next_cut(self) -> int | None:
        cut = self._natural_cut()
        if self._first_words and (m := self._first_words.match(self._buf)) and self._early(m.end()):
            # a long first sentence: start speaking after a few words rather than wait for its end
            cut = m.end() if cut is None else min(cut, m.end())
        if cut is not None and cut <= self.max_chars:
            return cut
        if len(self._buf) > self.max_chars:  # > so the character after max_chars is known
            return self._forced_cut()
        return None

    def _early(self, cut: int) -> bool:
        """Whether a clause boundary may end the first chunk here."""
        return not self._emitted and len(self._buf[:cut].strip()) >= self.first_min_chars

    def _early_cjk(self, cut: int) -> bool:
        """Whether a Chinese comma may end the first chunk here: after a word or more (first_min_cjk characters).
        The Mandarin voice says each clause alone anyway (speech/tts_zh.py), so a short first chunk costs nothing
        in how it sounds, and it is heard ~5 characters (~3 tokens of the LLM) sooner."""
        return not self._emitted and sum(1 for c in self._buf[:cut] if "\u3400" <= c <= "\u9fff") >= self.first_min_cjk

    def _natural_cut(self) -> int | None:
        buf, n = self._buf, len(self._buf)
        i = 0
        while i < n:
            c = buf[i]
            if c == "\n" or c in _CJK_ENDERS or (c == "…" and i and is_cjk(buf[i - 1])):
                return i + 1
            if c in _CJK_CLAUSE and (self._early_cjk(i + 1) if c in _CJK_COMMAS else self._early(i + 1)):
                return i + 1
            if c in _EN_ENDERS or c in _EN_CLAUSE:
                j = i + 1
                if c in _EN_ENDERS:  # take "?!", "...", closing quotes and ** along
                    while j < n and (buf[j] in _EN_ENDERS or buf[j] in _CLOSERS):
                        j += 1
                if j == n:
                    return None  # the next token decides
                if buf[j].isspace() or is_cjk(buf[j]):
                    if c in _EN_ENDERS and not (c == "." and _is_abbreviation(buf, i)):
                        return j
                    if c in _EN_CLAUSE and self._early(j):
                        return j
                i = j
                continue
            i += 1
        return None

    def _forced_cut(self) -> int:
        """Where to cut a chunk that found no sentence end within max_chars."""
        window = self._buf[: self.max_chars + 1]
        clause = max((k + 1 for k, c in enumerate(window[:-1])
                      if c in _CJK_CLAUSE or (c in _EN_CLAUSE and window[k + 1].isspace())), default=0)
        if clause >= self.max_chars // 2:  # a clause boundary reads better than any space
            return clause
        space = max((k for k, c in enumerate(window) if c.isspace()), default=0)
        return space or clause or self.max_chars


async def speakable_chunks(tokens: AsyncIterator[str], **kw: Any) -> AsyncIterator[str]:
    """Adapter: LLM token stream in, speakable chunks out (kw go to SentenceChunker)."""
    chunker = SentenceChunker(**kw)
    async for token in tokens:
        for chunk in chunker.push(token):
            yield chunk
    for chunk in chunker.flush():
        yield chunk
