"""The claims in words an LLM wrote itself (small talk, what it remembers about the user) that the facts it was given
do not hold: every number, weekday, name and yes/no claim in a sentence must be found in them. The reply filter
drops a sentence with any (persona/reply_filter.py); grounded answers themselves are the sources' words
(persona/grounding.py)."""
from __future__ import annotations

import re

_NUMBER_WORDS = {w: str(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split())}
_NUMBER_WORDS.update({"thirty": "30", "forty": "40", "fifty": "50", "sixty": "60", "hundred": "100",
                      "half": "0.5", "once": "1", "twice": "2"})
_ZH_DIGITS = {"一": "1", "二": "2", "两": "2", "三": "3", "四": "4", "五": "5", "六": "6", "七": "7", "八": "8",
              "九": "9", "十": "10"}
_DAYS = {"monday": "mon", "tuesday": "tue", "wednesday": "wed", "thursday": "thu", "friday": "fri",
         "saturday": "sat", "sunday": "sun", "weekend": "weekend", "weekday": "weekday",
         "周一": "mon", "周二": "tue", "周三": "wed", "周四": "thu", "周五": "fri", "周六": "sat", "周日": "sun",
         "周天": "sun", "星期一": "mon", "星期二": "tue", "星期三": "wed", "星期四": "thu", "星期五": "fri",
         "星期六": "sat", "星期日": "sun", "星期天": "sun"}
_DAY_RE = re.compile("|".join(sorted(map(re.escape, _DAYS), key=len, reverse=True)), re.I)
_YES_NO = re.compile(r"^\W*(yes|yeah|yep|no|nope|sure,? we|of course|absolutely|definitely|certainly|we (?:do|can|"
                     r"don't|do not|cannot|can't|won't|will)|you (?:can|cannot|can't)|是的|可以|不可以|不能|能|没有|有的)\b",
                     re.I)
_STOP = set("a an the and or but to of in on at for with by from is are was were be been it this that these those "
            "we you i they he she our your my me us them do does did can could will would should may might not no "
            "yes so as if than then there here what which who when where how please just also very about".split())
_NAME = re.compile(r"(?<![.!?]\s)(?<!^)\b([A-Z][a-z]+(?:\s[A-Z][a-z]+)*)\b")


def _norm_number(n: str) -> str:
    n = n.replace(",", ".")
    return n.rstrip("0").rstrip(".") if "." in n else n.lstrip("0") or "0"


def numbers(text: str) -> set[str]:
    found = {_norm_number(n) for n in re.findall(r"\d+(?:[.,]\d+)?", text)}
    found |= {_NUMBER_WORDS[w] for w in re.findall(r"[a-z]+", text.lower()) if w in _NUMBER_WORDS}
    found |= {_ZH_DIGITS[c] for c in re.findall(r"[一二两三四五六七八九十](?=[天个年月周小分次元块])", text)}
    return found


def days(text: str) -> set[str]:
    return {_DAYS[m.group().lower()] for m in _DAY_RE.finditer(text)}


def _content(text: str) -> set[str]:
    words = {w for w in re.findall(r"[a-z]+", text.lower()) if w not in _STOP and len(w) > 2}
    return words | set(re.findall(r"[\u4e00-\u9fff]", text))


def unsupported(sentence: str, facts: str) -> list[str]:
    """The claims in `sentence` that `facts` does not hold (empty: it may be said)."""
    sentence = sentence.strip().lstrip("\"'“‘([")
    missing = [f"number {n}" for n in sorted(numbers(sentence) - numbers(facts))]
    missing += [f"day {d}" for d in sorted(days(sentence) - days(facts))]
    low = facts.lower()
    missing += [f"name {n}" for n in _NAME.findall(sentence) if n.lower() not in low and not _DAY_RE.match(n)]
    if _YES_NO.search(sentence):
        words = _content(sentence)
        if words and len(words & _content(facts)) < 0.6 * len(words):
            missing.append("yes/no claim")
    return missing
