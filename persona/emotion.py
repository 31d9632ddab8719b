"""Emotion from the LLM's words: tags like [happy] or 【开心】 are read, removed before speech, and turned into prosody.

The system prompt asks for one tag per sentence; small models forget, so untagged text goes through a keyword
classifier, and otherwise the last emotion carries on.
"""
from __future__ import annotations

import re
from dataclasses import replace
from typing import Iterable, Literal, Optional

from livehost.speech.tts import Prosody

Emotion = Literal["neutral", "happy", "sad", "angry", "surprised", "thinking", "excited", "calm"]
EMOTIONS: tuple[Emotion, ...] = ("neutral", "happy", "sad", "angry", "surprised", "thinking", "excited", "calm")

_ALIASES: dict[str, Emotion] = {e: e for e in EMOTIONS}
_ALIASES.update({
    "joy": "happy", "joyful": "happy", "cheerful": "happy", "glad": "happy", "smile": "happy", "smiling": "happy",
    "laughing": "happy", "sadness": "sad", "sorry": "sad", "upset": "sad", "mad": "angry", "annoyed": "angry",
    "anger": "angry", "surprise": "surprised", "shocked": "surprised", "amazed": "surprised", "think": "thinking",
    "thoughtful": "thinking", "curious": "thinking", "pondering": "thinking", "excitement": "excited",
    "thrilled": "excited", "enthusiastic": "excited", "relaxed": "calm", "peaceful": "calm", "gentle": "calm",
    "serious": "neutral",
    "开心": "happy", "高兴": "happy", "快乐": "happy", "愉快": "happy", "微笑": "happy", "难过": "sad", "伤心": "sad",
    "悲伤": "sad", "遗憾": "sad", "生气": "angry", "愤怒": "angry", "惊讶": "surprised", "吃惊": "surprised",
    "思考": "thinking", "疑惑": "thinking", "兴奋": "excited", "激动": "excited", "平静": "calm", "冷静": "calm",
    "温柔": "calm", "中性": "neutral", "平常": "neutral",
})
_CJK_ALIASES = [k for k in _ALIASES if not k.isascii()]
# Closest allowed stand-in when a card does not use an emotion.
_FALLBACK: dict[str, tuple[str, ...]] = {
    "happy": ("excited", "calm"), "excited": ("happy",), "surprised": ("excited", "happy"),
    "thinking": ("calm",), "calm": (), "sad": ("calm",), "angry": ("sad",), "neutral": ("calm",),
}

# A complete tag; groups: 1 [..]  2 【..】  3 <..>  4 (..)  5 *..*
_TAG = re.compile(r"\[([^\[\]\n]{1,24})\]|【([^【】\n]{1,24})】|<\s*/?\s*([A-Za-z\u4e00-\u9fff][\w :-]{0,22})>"
                  r"|[(（]([A-Za-z\u4e00-\u9fff][A-Za-z \u4e00-\u9fff]{0,22})[)）]|\*([A-Za-z\u4e00-\u9fff][A-Za-z \u4e00-\u9fff]{0,22})\*")
# The start of a tag cut off at the end of a chunk or token.
_OPEN = re.compile(r"(\[[^\]\n]{0,24}|【[^】\n]{0,24}|<[A-Za-z/][\w :-]{0,22}|[(（*][A-Za-z\u4e00-\u9fff ]{0,22})$")
_CLOSERS = {"[": "]", "【": "】", "<": ">", "(": ")", "（": "）", "*": "*"}
_REST_OF_TAG = re.compile(r"^[^\s\[\]【】<>()（）*]{0,24}[\]】>)）*]")
# speakable() strips '*', so "*happy* Hello" reaches us as "happy Hello": a bare emotion word before a capital.
_BARE = re.compile(r"^([a-z]+)\s+(?=[A-Z\u4e00-\u9fff])")
_STAGE = re.compile(r"^[a-z]+(?: [a-z]+){0,2}$")  # "(laughs)", "*waves happily*": never spoken

_WORDS = {
    "sad": re.compile(r"\b(sorry|unfortunately|sadly|apologi[sz]e|regret|afraid not|condolences)\b|抱歉|对不起|遗憾|可惜", re.I),
    "thinking": re.compile(r"\b(hmm+|let me (think|see|check)|i wonder|good question)\b|让我想想|嗯|我想想", re.I),
    "surprised": re.compile(r"\b(wow|whoa|oh my|no way|really\?)|哇|天哪|真的吗", re.I),
    "excited": re.compile(r"\b(can'?t wait|so excited|let'?s go|amazing news|woo+hoo?)\b|太棒了|冲", re.I),
    "happy": re.compile(r"\b(great|awesome|love|wonderful|amazing|yay|congrat\w*|fantastic|excellent|glad|welcome|"
                        r"thanks|thank you|fun|nice|perfect|happy)\b|太好了|哈哈|欢迎|谢谢|开心", re.I),
    "calm": re.compile(r"\b(take your time|no rush|deep breath|relax|it'?s okay|don'?t worry)\b|别担心|慢慢来|没关系", re.I),
    "angry": re.compile(r"\b(unacceptable|how dare|outrageous)\b|太过分", re.I),
}


def to_emotion(name: str) -> Optional[Emotion]:
    """The emotion a tag's text names ("happy", "Very happy", "开心", "非常开心"), or None."""
    key = name.strip().lower()
    if key in _ALIASES:
        return _ALIASES[key]
    for word in re.findall(r"[a-z]+", key):
        if word in _ALIASES:
            return _ALIASES[word]
    return next((_ALIASES[k] for k in _CJK_ALIASES if k in key), None)


def classify(text: str) -> Optional[Emotion]:
    """Keyword and punctuation guess for untagged text; None when nothing stands out."""
    if _WORDS["sad"].search(text):
        return "sad"
    if _WORDS["angry"].search(text):
        return "angry"
    if _WORDS["thinking"].search(text) and ("?" in text or "？" in text or "..." in text or "…" in text):
        return "thinking"
    if _WORDS["surprised"].search(text):
        return "surprised"
    bang = text.count("!") + text.count("！")
    if _WORDS["excited"].search(text) or (bang >= 2 and _WORDS["happy"].search(text)):
        return "excited"
    if bang and _WORDS["happy"].search(text):
        return "happy"
    if _WORDS["calm"].search(text):
        return "calm"
    if _WORDS["thinking"].search(text):
        return "thinking"
    return None


class EmotionTagger:
    """One per reply. feed() each speakable chunk (or feed_token() each raw token in text mode) and get back
    (emotion, text without tags). `allowed` is the card's emotion set: other emotions map to the nearest allowed."""

    def __init__(self, allowed: Iterable[str] = EMOTIONS, initial: Emotion = "neutral"):
        self.allowed = [e for e in allowed if e in EMOTIONS] or ["neutral"]
        self.emotion: Emotion = self._allow(initial)
        self.other_tags: list[str] = []  # unknown bracket tags, e.g. citations like [faq:3]
        self._carry = ""
        self._last_out = ""

    def _allow(self, emotion: str) -> Emotion:
        for candidate in (emotion, *_FALLBACK.get(emotion, ()), "neutral"):
            if candidate in self.allowed:
                return candidate  # type: ignore[return-value]
        return self.allowed[0]  # type: ignore[return-value]

    def feed(self, chunk: str) -> tuple[Emotion, str]:
        """A speakable chunk (a sentence or clause). The chunker cuts at whitespace and may drop a lone closer,
        so a carried '[happy' followed by a chunk that does not finish it is closed here."""
        if self._carry:
            opener, content = self._carry[0], self._carry[1:]
            if _REST_OF_TAG.match(chunk):
                glue = ""
            elif opener in "[【<" or to_emotion(content):
                glue = _CLOSERS[opener] + " "
            else:  # a '(' that was not a tag after all
                glue = " "
            chunk, self._carry = self._carry + glue + chunk, ""
        text, found = self._strip(chunk)
        guess = found or classify(text)
        if guess:
            self.emotion = self._allow(guess)
        return self.emotion, text

    def feed_token(self, token: str) -> tuple[Emotion, str]:
        """A raw LLM token (text mode): tags may be split over several tokens; no keyword guessing."""
        text, found = self._strip(self._carry + token, collapse=False)
        if found:
            self.emotion = self._allow(found)
        if not self._last_out or self._last_out[-1].isspace():
            text = text.lstrip()  # the space after a removed tag
        self._last_out += text
        return self.emotion, text

    def flush(self) -> tuple[Emotion, str]:
        """End of the reply: a tag that never closed is dropped, never spoken."""
        self._carry = ""
        return self.emotion, ""

    def _hold_open(self, text: str) -> str:
        self._carry = ""
        m = _OPEN.search(text)
        if m and (m.group()[0] in "[【<" or _may_be_tag(m.group()[1:])):
            self._carry = m.group()
            return text[:m.start()]
        return text

    def _strip(self, text: str, collapse: bool = True) -> tuple[str, Optional[Emotion]]:
        found: list[Emotion] = []

        def drop(m: re.Match) -> str:
            bracket = next(i for i in range(1, 6) if m.group(i) is not None)
            content = m.group(bracket)
            # '(..)' and '*..*' are also ordinary text: only an exact emotion name counts there
            emotion = to_emotion(content) if bracket <= 3 else _ALIASES.get(content.strip().lower())
            if emotion:
                found.append(emotion)
                return " "
            if bracket <= 3:  # [..] 【..】 <..> are never meant to be spoken
                self.other_tags.append(content.strip())
                return " "
            leading = not text[:m.start()].strip()
            return " " if leading and _STAGE.match(content.strip()) else m.group()

        text = self._hold_open(_TAG.sub(drop, text))  # complete tags first: '*calm*' ends in an opener
        if collapse:
            bare = _BARE.match(text.lstrip())
            if bare and not found and bare.group(1) in EMOTIONS:
                found.append(bare.group(1))  # type: ignore[arg-type]
                text = text.lstrip()[bare.end():]
            text = re.sub(r"\s+([,.!?;:，。！？；：])", r"\1", " ".join(text.split()))
        else:
            text = re.sub(r" {2,}", " ", text)
        return text, (found[0] if found else None)


def _may_be_tag(content: str) -> bool:
    """Whether '(' or '*' followed by content could still become an emotion tag."""
    word = content.strip().lower()
    return not word or any(k.startswith(word) or word.startswith(k) for k in _ALIASES)


# Multipliers on the voice's delivery. Piper ignores pitch; rate and energy are what is heard.
PROSODY: dict[str, Prosody] = {
    "neutral": Prosody(1.0, 1.0, 1.0),
    "happy": Prosody(rate=1.10, pitch=1.05, energy=1.08),
    "excited": Prosody(rate=1.14, pitch=1.10, energy=1.18),
    "surprised": Prosody(rate=1.05, pitch=1.12, energy=1.12),
    "sad": Prosody(rate=0.82, pitch=0.94, energy=0.82),
    "angry": Prosody(rate=1.04, pitch=0.96, energy=1.22),
    "thinking": Prosody(rate=0.92, pitch=0.98, energy=0.90),
    "calm": Prosody(rate=0.92, pitch=0.97, energy=0.88),
}


def prosody_for(emotion: str, base: Optional[Prosody] = None) -> Prosody:
    """The base delivery (the card's voice, the session's speed) shaded by the emotion."""
    base = base or Prosody()
    p = PROSODY.get(emotion, PROSODY["neutral"])
    return replace(base, rate=base.rate * p.rate, pitch=base.pitch * p.pitch, energy=base.energy * p.energy)
