"""Scoring one answer of bench/answers.py. Written apart from the product's own reply filter, so that the bench
does not grade the product by the product's rules.

- correct: every `expect` pattern matches (a handoff item: the answer offers a person / says it does not know)
- wrong: a `forbid` pattern matches, or (customer service) the answer holds a number that no source holds
- false handoff: an answerable item (it has `expect`) answered by offering a person / saying it does not know
- echo: five words in a row (eight characters in Chinese) from the prompt's instruction lines
- cut: the answer does not end at a sentence end
- repeat: one sentence said twice
- emotion fit: no sad or angry face for a happy viewer, no happy or excited face for a sad one
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from typing import Optional

_ENDS = tuple(".!?…。！？~)\"'”」»")
_HANDOFF = re.compile(r"colleague|a person|human|not sure|don't know|do not know|人工|同事|不确定|不清楚|不知道", re.I)
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")
_CJK = re.compile(r"[\u3000-\u9fff\uff00-\uffef]")
_BAD_FOR = {"happy": {"sad", "angry"}, "sad": {"happy", "excited"}}


@dataclass
class Score:
    n: int = 1
    gradable: int = 0
    correct: int = 0
    wrong: int = 0
    false_handoff: int = 0
    echo: int = 0
    cut: int = 0
    repeat: int = 0
    empty: int = 0
    emotion_n: int = 0
    emotion_ok: int = 0
    first_text: Optional[float] = field(default=None, compare=False)
    first_audio: Optional[float] = field(default=None, compare=False)

    def flags(self) -> list[str]:
        out = [name.replace("_", " ") for name in ("wrong", "false_handoff", "echo", "cut", "repeat", "empty")
               if getattr(self, name)]
        if self.gradable and not self.correct:
            out.append("not correct")
        if self.emotion_n and not self.emotion_ok:
            out.append("emotion misfit")
        return out

    @staticmethod
    def total(scores: list["Score"]) -> "Score":
        counted = [f.name for f in fields(Score) if f.name not in ("first_text", "first_audio")]
        return Score(**{name: sum(getattr(s, name) for s in scores) for name in counted})


def _matches(pattern, text: str) -> bool:
    if isinstance(pattern, list):  # any of them
        return any(_matches(p, text) for p in pattern)
    return re.search(pattern, text, re.I) is not None


def sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?。！？])\s*", text) if s.strip()]


def _norm(sentence: str) -> str:
    return " ".join(re.sub(r"[^\w\u3000-\u9fff]+", " ", sentence.lower()).split())


def is_cut(text: str) -> bool:
    return bool(text.strip()) and not text.strip().endswith(_ENDS)


def has_repeat(text: str) -> bool:
    seen = set()
    for s in sentences(text):
        key = _norm(s)
        if len(key.split()) >= 3 or len(_CJK.findall(key)) >= 4:
            if key in seen:
                return True
            seen.add(key)
    return False


def instruction_lines(messages: list[dict]) -> list[str]:
    """The lines of the system messages that instruct (not the notes, memories, or the persona's self-description)."""
    out = []
    for m in messages:
        if m.get("role") == "user" and "«" in str(m.get("content")):  # the framing of a quoted chat line
            out.append(re.sub(r"«[^»]*»?", " ", str(m["content"])))
        if m.get("role") != "system":
            continue
        for line in str(m.get("content", "")).splitlines():
            line = line.strip()
            if not line or line.startswith(("[", "- ", "Q:", "A:", "You are ")) or line.endswith(":"):
                continue
            out.append(line)
    return out


def _shingles(text: str, n_words: int = 5, n_chars: int = 8) -> set[str]:
    norm = _norm(text)
    words = norm.split()
    grams = {" ".join(words[i:i + n_words]) for i in range(len(words) - n_words + 1)}
    cjk = "".join(_CJK.findall(norm))
    return grams | {cjk[i:i + n_chars] for i in range(len(cjk) - n_chars + 1)}


def is_echo(text: str, messages: list[dict], allowed: str = "") -> bool:
    """Whether the answer says a run of the prompt's instruction text (the handoff line itself is allowed)."""
    said = _shingles(text) - _shingles(allowed)
    return any(said & _shingles(line) for line in instruction_lines(messages))


def _numbers(text: str) -> set[str]:
    return {n.replace(",", ".").rstrip("0").rstrip(".") if "." in n or "," in n else n for n in _NUMBER.findall(text)}


def score_answer(item: dict, text: str, emotions: list[str], messages: list[dict], sources: Optional[str],
                 handoff_line: str = "") -> Score:
    s = Score()
    text = text.strip()
    s.empty = int(not text)
    if item.get("handoff"):
        s.gradable, s.correct = 1, int(bool(_HANDOFF.search(text)))
    elif item.get("expect"):
        s.gradable, s.correct = 1, int(bool(text) and all(_matches(p, text) for p in item["expect"]))
        s.false_handoff = int(bool(_HANDOFF.search(text)))
    forbidden = any(_matches(p, text) for p in item.get("forbid", []))
    invented = sources is not None and bool(_numbers(text) - _numbers(sources) - _numbers(item["say"]))
    s.wrong = int(forbidden or invented)
    if s.wrong:
        s.correct = 0
    s.echo = int(is_echo(text, messages, handoff_line))
    s.cut, s.repeat = int(is_cut(text)), int(has_repeat(text))
    if item.get("mood"):
        s.emotion_n = 1
        s.emotion_ok = int(not set(emotions) & _BAD_FOR.get(item["mood"], set()))
    return s
