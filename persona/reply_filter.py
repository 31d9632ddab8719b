"""Whole, clean replies from any LLM stream, in every mode (voice, text, livestream):

- never ends mid-sentence: generation may run up to EXTRA_TOKENS past max_tokens to finish the sentence it is in,
  and stops at that sentence's end; a sentence that still does not end is not said;
- never says a sentence twice in one reply, nor a long sentence of one of the character's earlier replies
  in the prompt (a small model in a warm session copies them);
- never says the prompt's instruction text (five words in a row from an instruction line, eight characters in
  Chinese), e.g. "One to three short sentences, no lists";
- with a `Prompt` that carries facts (a character that may only say what its knowledge holds), a sentence whose
  numbers, days, names or yes/no claims the facts do not hold is not said; if nothing is left, the fallback is.

Text streams on as it comes; only a sentence that could still turn out to be a repeat or an echo (its words so far
match the start of one) is held until it ends or differs, so the first words reach the voice without waiting.
"""
from __future__ import annotations

import logging
import re
from typing import AsyncIterator, Optional

from livehost.persona.claims import unsupported

log = logging.getLogger("livehost.reply_filter")
EXTRA_TOKENS = 40  # past max_tokens, to finish the sentence being written
TAIL_TOKENS = 12   # within this many tokens of max_tokens, a new sentence is held whole (it may not finish)
_END = re.compile(r"(?<=[。！？])|(?<=[.!?…])(?=\s)")
_TAGS = re.compile(r"\[[^\]]*\]?|【[^】]*】?|<[^>]*>?")
_CJK = re.compile(r"[\u3400-\u9fff]")
_QUOTED = re.compile(r"\"[^\"]*\"|“[^”]*”|«[^»]*»")


# Condolences are never offered to a user whose words are not sad ("I'm sorry for your loss." to "hi!").
SAD_NEWS = re.compile(r"passed away|\bdied\b|\bdead\b|funeral|\blost my\b|\brip\b|:\(|😢|😭|\bsad\b|depress|"
                      r"feel\w* (?:a bit |so |really )?down|rough day|bad day|去世|走了|难过|伤心|哭|不开心", re.I)
_CONDOLENCE_HOLD = re.compile(r"sorry|condolen|heart goes|rest in|抱歉|节哀|遗憾")
_CONDOLENCE_START = "抱节遗"  # the first characters of _CONDOLENCE_HOLD's Chinese words
_CONDOLENCE = re.compile(r"sorry (?:for|about) your (?:loss|family)|condolence|sorry to hear|heart goes out|"
                         r"rest in peace|passed away|节哀")  # "I'm so sorry for your family." (SmolLM2, to JFK)


class Prompt(list):
    """LLM messages, plus what a grounded reply may claim (`facts`), sentences it must not say (`avoid`, e.g.
    condolences to a happy viewer) and what to say when nothing passes."""

    def __init__(self, messages: list[dict], facts: Optional[str] = None, fallback: Optional[str] = None,
                 avoid: Optional[re.Pattern] = None):
        super().__init__(messages)
        self.facts, self.fallback, self.avoid = facts, fallback, avoid


def norm(text: str) -> str:
    text = _TAGS.sub(" ", text.lower())
    return " ".join(re.sub(r"[^\w\u3400-\u9fff]+", " ", text).split())


def _shingles(key: str) -> set[str]:
    words = key.split()
    grams = {" ".join(words[i:i + 5]) for i in range(len(words) - 4)}
    cjk = "".join(_CJK.findall(key))
    return grams | {cjk[i:i + 8] for i in range(len(cjk) - 7)}


def instruction_lines(messages: list[dict]) -> list[str]:
    """Normalised lines that instruct the model: system lines other than notes, memories and the persona's
    self-description, and parenthesised stage directions in user turns. Quoted lines (the handoff) may be said."""
    out = []
    for m in messages:
        content = str(m.get("content") or "")
        if m.get("role") == "system":
            lines = [ln.strip() for ln in content.splitlines()]
            lines = [ln for ln in lines if ln and not ln.startswith(("[", "- ", "Q:", "A:", "You are "))]
        elif m.get("role") == "user" and content.startswith("("):
            lines = [content]
        elif m.get("role") == "user" and "«" in content:  # a chat line's framing: 'Viewer "Bo" sent a super chat'
            lines = [re.sub(r"«[^»]*»?", " ", content)]
        else:
            continue
        out += [k for k in (norm(_QUOTED.sub(" ", ln)) for ln in lines) if len(k.split()) >= 3 or _CJK.search(k)]
    return out


CHECK_EARLIER_REPLIES = True  # a small model copies its earlier replies into the next ("I'm so sorry for the ...")


def _earlier_replies(messages: list[dict]) -> list[str]:
    """The character's replies in the prompt, but those to the words the user has just said again (asked again,
    the same answer may come); the conversation window bounds how many."""
    if not CHECK_EARLIER_REPLIES:
        return []
    asked, replies, now = "", [], norm(next((str(m.get("content") or "") for m in reversed(messages)
                                             if m.get("role") == "user"), ""))
    for m in messages:
        if m.get("role") == "user":
            asked = norm(str(m.get("content") or ""))
        elif m.get("role") == "assistant" and asked != now:
            replies.append(str(m.get("content") or ""))
    return replies


def earlier_sentences(messages: list[dict]) -> list[str]:
    """The long sentences of earlier replies (a short "Thanks!" may well come again). bench/warm_repeats.py: the
    last 3 replies alone let 4 in 10 copies through. Chinese is left out: Qwen did not copy in
    bench/warm_repeats.py (0/24), and in bench/voice_loop_zh.py dropping its answers to repeated lines cost retries
    (first audio p50 2.7 s)."""
    keys = [norm(s) for reply in _earlier_replies(messages) for s in _END.split(reply)]
    return [k for k in keys if len(k.split()) >= 4 and not _CJK.search(k)]


_LEAD = re.compile(r"^\s*([^:.!?\n]{6,60}):\s")  # "Here's a revised version: ..." (a few words, then a colon)


def earlier_leads(messages: list[dict]) -> set[str]:
    """Lead-ins that earlier replies opened a sentence with. SmolLM2 in a warm session begins every reply with the
    same one ("Here's a revised version:" 16 turns in a row in bench/voice_loop.py); it says nothing, so it goes."""
    leads = (_LEAD.match(s) for reply in _earlier_replies(messages) for s in _END.split(reply))
    return {k for k in (norm(m.group(1)) for m in leads if m) if len(k.split()) >= 3 and not _CJK.search(k)}


def _trigrams(key: str) -> set[str]:
    words = key.split()
    grams = {" ".join(words[i:i + 3]) for i in range(len(words) - 2)}
    cjk = "".join(_CJK.findall(key))
    return grams | {cjk[i:i + 3] for i in range(len(cjk) - 2)}


class _Checker:
    def __init__(self, messages: list[dict]):
        self.instructions = instruction_lines(messages)
        self._instruction_grams = set().union(*map(_shingles, self.instructions)) if self.instructions else set()
        self.said: list[str] = []
        self.earlier = earlier_sentences(messages)
        self.leads = earlier_leads(messages)
        self.facts: Optional[str] = getattr(messages, "facts", None)
        self.avoid: Optional[re.Pattern] = getattr(messages, "avoid", None)
        # the words the user (or a viewer) just said: saying them back is parroting, not answering
        last = next((str(m.get("content") or "") for m in reversed(messages) if m.get("role") == "user"), "")
        quoted = re.findall(r"«([^»]*)»", last)
        self.user = norm(" ".join(quoted) if quoted else last)
        self._user_grams = _trigrams(self.user)
        self.mourning_wrong = self.avoid is None and not SAD_NEWS.search(last)  # condolences would not fit

    def suspicious(self, key: str) -> bool:
        """The sentence so far could still become a repeat, an echo or a sentence to avoid."""
        words, cjk = len(key.split()), len(_CJK.findall(key))
        # Chinese has no spaces: two characters are held (a word), then the prefix checks below decide
        if words < 2 and cjk < 2:
            return True
        if self.avoid is not None and (words < 5 and cjk < 6 or self.avoid.search(key)):
            return True
        if self.mourning_wrong and (words < 4 and not cjk or cjk and key[-1:] in _CONDOLENCE_START
                                    or _CONDOLENCE_HOLD.search(key)):
            return True  # "I'm sorry for ..." is known from its fourth word on; 抱歉, 节哀, 遗憾 from their second
        return any(s.startswith(key) for s in self.said) or any(key in line for line in self.instructions) \
            or key in self.user or any(s.startswith(key) for s in self.earlier) \
            or any(lead.startswith(key) for lead in self.leads)

    def drop_lead(self, text: str) -> str:
        """`text` less a lead-in that an earlier reply opened with (the rest of the sentence is said)."""
        m = _LEAD.match(text)
        if m and norm(m.group(1)) in self.leads:
            log.info("reply: a lead-in of an earlier reply was not said: %r", m.group(1).strip())
            return text[m.end():]
        return text

    def _user_said_back(self, key: str) -> bool:
        """The user's words whole, with an interjection before or after ("哎呀，推荐一首歌吧！" to "推荐一首歌吧")."""
        user, said = "".join(_CJK.findall(self.user)), "".join(_CJK.findall(key))
        if len(user) >= 4 and user in said:
            return len(said) - len(user) <= 3
        return len(self.user.split()) >= 3 and f" {self.user} " in f" {key} " and \
            len(key.split()) - len(self.user.split()) <= 2

    def verdict(self, sentence: str) -> Optional[str]:
        """Why a whole sentence must not be said, or None."""
        key = norm(sentence)
        if not key:
            return None
        if key in self.said or (len(key.split()) >= 4 and any(key in s or s in key for s in self.said
                                                                if len(s.split()) >= 4)):
            return "repeat"
        if _shingles(key) & self._instruction_grams or key in self.instructions:
            return "echo"
        grams = _trigrams(key)
        if key in self.earlier or len(grams) >= 3 and any(len(grams & _trigrams(s)) >= 0.8 * len(grams)
                                                           for s in self.earlier):
            return "said in an earlier reply"
        if self.avoid is not None and self.avoid.search(key):
            return "avoided here"
        if self.mourning_wrong and _CONDOLENCE.search(key):
            return "condolences to a user who is not sad"
        if len(grams) >= 3 and len(grams & self._user_grams) >= 0.7 * len(grams) or self._user_said_back(key):
            return "parrots the user"
        if self.facts is not None:
            missing = unsupported(_TAGS.sub(" ", sentence), self.facts)
            if missing:
                return "unsupported: " + ", ".join(missing)
        return None


# A line that begins with a speaker's label: the model has gone on to write the next turn of the chat itself
# ("...glad you're here!\nBo: **." to a super chat; "User: I am so sorry ..." in bench/voice_loop.py).
_LABEL = re.compile(r"\s*(?:(?i:user|human|viewer|assistant|system)|[A-Z][\w']{0,15}(?: [A-Z][\w']{0,15})?)\s*:(?:\s|$)")
_OTHERS = re.compile(r"\s*(?i:user|human|viewer|system)\s*:")
_MAYBE_LABEL = re.compile(r"\s*(?:[A-Za-z][\w']{0,15}(?: (?:[A-Z][\w']{0,15})?)?\s*)?")  # may still become one
_OTHER_WORDS = ("user", "human", "viewer", "system")


def _maybe_other(head: str) -> bool:
    word = head.lstrip().lower()
    return any(w.startswith(word) for w in _OTHER_WORDS) and len(word) <= 6


def _speaker_end(text: str, final: bool) -> tuple[int, bool]:
    """How much of `text` is the character's, and whether its turn ends there: at a line that begins with a
    label. A new line is held while it may still become one ("Bo", then "Bo:")."""
    start = text.find("\n") + 1
    while start:
        nl = text.find("\n", start)
        head = text[start:] if nl < 0 else text[start:nl]
        if _LABEL.match(head):
            return start - 1, True
        if nl < 0 and not final and _MAYBE_LABEL.fullmatch(head):
            return start - 1, False
        start = nl + 1
    return len(text), False


async def one_speaker(tokens: AsyncIterator[str]) -> AsyncIterator[str]:
    """The raw stream up to where the model starts to write someone else's turn: a new line that begins with a
    label ("Bo:", "User:"), or a reply that begins with the user's or a viewer's label (then nothing is said).
    Only what may still become such a label is held (a word or two), so the first words are not delayed."""
    text, sent, opened = "", 0, False
    try:
        async for token in tokens:
            text += token
            if not opened:
                if _maybe_other(text):
                    continue
                if _OTHERS.match(text):
                    return
                opened = True
            end, stop = _speaker_end(text, final=False)
            if end > sent:
                yield text[sent:end]
                sent = end
            if stop:
                return
        if not opened and _OTHERS.match(text):
            return
        end, _ = _speaker_end(text, final=True)
        if end > sent:
            yield text[sent:end]
    finally:
        if hasattr(tokens, "aclose"):
            await tokens.aclose()


async def clean_reply(tokens: AsyncIterator[str], messages: list[dict], max_tokens: int,
                      use_fallback: bool = True) -> AsyncIterator[str]:
    """`tokens`: the raw stream, asked for max_tokens + EXTRA_TOKENS. Yields the text to say."""
    tokens = one_speaker(tokens)
    check = _Checker(messages)
    strict = check.facts is not None or check.avoid is not None  # grounded, or heard by viewers: whole sentences
    buf = ""        # the current sentence: what is not yet said of it
    current = ""    # the current sentence, all of it
    released = False  # the current sentence is being said as it comes
    count, out, done = 0, False, False
    spaced = False  # the last sentence said went out with the space after it
    try:
        async for token in tokens:
            buf, current, count = buf + token, current + token, count + 1
            if not released and check.leads:
                current = buf = check.drop_lead(current)
            while (m := _END.search(current)) and current[:m.end()].strip():
                # the space that showed the sentence has ended goes with it: the chunker downstream then knows it
                # too, instead of waiting for the next sentence's first words (held, they may be a while)
                end = m.end() + (current[m.end():m.end() + 1].isspace())
                sentence, rest = current[:end], current[end:]
                said = buf[:len(buf) - len(rest)] if released else _judged(check, sentence)
                if released:
                    check.said.append(norm(sentence))
                buf, current, released = rest, rest, False
                if said:
                    out, spaced = True, said[-1:].isspace()
                    yield said.rstrip() if count >= max_tokens else said
                if count >= max_tokens:  # the budget is spent and this sentence is whole: stop here
                    done, current, buf = True, "", ""
                    break
            if done:
                break
            if not released and current.strip() and not strict and count < max_tokens - TAIL_TOKENS \
                    and not check.suspicious(norm(current)):
                released = True  # the rest of this sentence follows as it comes
            if released and buf:
                out = True
                yield buf
                buf = ""
            if count >= max_tokens + EXTRA_TOKENS:
                log.debug("reply: no sentence end within %d extra tokens; the unfinished one is not said",
                          EXTRA_TOKENS)
                if released:
                    yield "."  # already partly said: at least end it
                current = buf = ""
                break
        if current.strip() and not norm(current):  # a trailing tag or emoji: no words, so no full stop either
            tags = "".join(t for t in _TAGS.findall(buf if released else current)
                           if t.endswith(("]", "】", ">")) and len(t) <= 26)
            if tags:
                yield ("" if spaced else " ") + tags  # the tagger takes the emotion from it; nothing is said
        elif current.strip():  # the model stopped without a final full stop: the sentence is whole, end it
            said = buf if released else _judged(check, current)
            if released or said:
                out = True
                ending = "" if current.rstrip()[-1:] in ".!?。！？…~" else \
                    ("。" if _CJK.search(current.rstrip()[-1:]) else ".")
                if said or ending:
                    yield said.rstrip() + ending if ending else said
    finally:
        if hasattr(tokens, "aclose"):
            await tokens.aclose()
    fallback = getattr(messages, "fallback", None)
    if not out and fallback and use_fallback:
        yield fallback


_STAGE = re.compile(r"\[[^\]\n]{25,}\]?|【[^】\n]{25,}】?|\*[^*\n]{25,}\*")  # "[Rin waves goodbye to ...]"


def _judged(check: _Checker, sentence: str) -> str:
    if _STAGE.search(sentence):  # a stage direction is never spoken (emotion tags are short; the tagger takes them)
        sentence = _STAGE.sub("", sentence)
        if not sentence.strip():
            return ""
    why = check.verdict(sentence)
    if why:
        log.info("reply: a sentence was not said (%s): %r", why, sentence.strip()[:120])
        return ""
    check.said.append(norm(sentence))
    return sentence
