"""Mandarin text front end: Chinese text -> phrases of tone-numbered pinyin syllables, read as a speaker reads them.

What pypinyin alone gets wrong for speech, and is fixed here:
  * digits: "3.5" "50%" "2024年" "12:30" "¥99" are unreadable to pypinyin (dropped); they become Chinese words
    (三点五, 百分之五十, 二零二四年, 十二点三十分, 九十九元) first (`normalize_numbers`);
  * Latin letters ("AI", "VIP", "OK") are dropped too; each letter gets the syllables Chinese speakers say for it
    (A -> ei1, I -> ai4);
  * tone sandhi: pypinyin gives dictionary tones, speech changes them. A run of third tones inside a phrase is
    said with all but the last as second tone (你好 ni2 hao3, 我很好 wo2 hen2 hao3); 不 is bu2 before a fourth
    tone; 一 is yi2 before a fourth tone, yi4 before the others, yi1 in numbers, at a phrase end and after 第;
    a reduplicated third-tone word keeps its first tone and softens the second (姐姐 jie3 jie5); 得 alone and
    地 after a reduplicated word are the particle de5 (跑得快, 慢慢地).
The voice (speech/tts_zh.py) turns syllables into its model's phonemes; this file knows nothing of models.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

_DIGITS = "零一二三四五六七八九"
_SMALL_UNITS = ("", "十", "百", "千")
_BIG_UNITS = ("", "万", "亿", "万亿")
# A 2 before these is 两 (两个, 两天), not 二.
_MEASURES = set("个位件本只条张次天年岁块元斤种台份双对杯瓶家辆倍周句点分")

# The syllables Chinese speakers say for each Latin letter (tone-numbered pinyin).
LETTERS = {
    "A": "ei1", "B": "bi4", "C": "xi1", "D": "di4", "E": "yi4", "F": "ai2 fu5", "G": "ji4", "H": "ei1 qi1",
    "I": "ai4", "J": "jie4", "K": "kai4", "L": "ai2 le5", "M": "ai2 mu5", "N": "en1", "O": "ou1", "P": "pi1",
    "Q": "ke1 you1", "R": "a4 er5", "S": "ai2 si5", "T": "ti4", "U": "you1", "V": "wei1", "W": "da2 bu5 liu5",
    "X": "ai2 ke4 si5", "Y": "wai4", "Z": "zei4",
}
LATIN_WORDS = {"OK": "ou1 kei4"}  # Latin words said as one word, not spelled

# Applied after numbers are read out, so a "." left is a full stop.
_CLAUSE_BREAK = re.compile(r"[，,、；;：:。．.！!？?…\n]+")
_RUN = re.compile(r"[A-Za-z]+|[\u3400-\u9fff\uf900-\ufaff]+")  # what can be read; the rest is dropped


def cardinal(n: int) -> str:
    """An integer in Chinese numerals: 10 -> 十, 105 -> 一百零五, 20010 -> 二万零一十."""
    if n < 0:
        return "负" + cardinal(-n)
    if n == 0:
        return "零"
    groups: list[int] = []
    while n:
        groups.append(n % 10000)
        n //= 10000
    if len(groups) > len(_BIG_UNITS):
        raise ValueError("number too large to read")
    out, zero_pending = "", False
    for i in range(len(groups) - 1, -1, -1):
        g = groups[i]
        if g == 0:
            zero_pending = bool(out)
            continue
        if out and (zero_pending or g < 1000):
            out += "零"
        out += _group(g) + _BIG_UNITS[i]
        zero_pending = False
    return out[1:] if out.startswith("一十") else out  # 十五, not 一十五 (but 一百一十五 stays)


def _group(g: int) -> str:
    """0 < g < 10000 -> 一千零五 etc. (no leading zero)."""
    digits = f"{g:04d}"
    out, zero = "", False
    for pos, ch in enumerate(digits):
        d = int(ch)
        unit = _SMALL_UNITS[3 - pos]
        if d == 0:
            zero = bool(out)
            continue
        if zero:
            out += "零"
            zero = False
        out += _DIGITS[d] + unit
    return out


def digits(s: str) -> str:
    """Read digit by digit: 2024 -> 二零二四."""
    return "".join(_DIGITS[int(c)] for c in s if c.isdigit())


def _decimal(s: str) -> str:
    whole, _, frac = s.partition(".")
    out = cardinal(int(whole)) if whole else "零"
    return out + ("点" + digits(frac) if frac else "")


def _integer(s: str, after: str = "") -> str:
    if len(s) > 1 and s.startswith("0") or len(s) > 12:
        return digits(s)  # codes, phone numbers, order numbers
    if len(s) == 11 and s.startswith("1"):
        return digits(s)  # a mobile phone number
    if s == "2" and after[:1] in _MEASURES:
        return "两"
    return cardinal(int(s))


_NUMBER_RULES: list[tuple[re.Pattern, object]] = [
    (re.compile(r"(?<=\d),(?=\d{3}(?!\d))"), lambda m: ""),  # 1,000 -> 1000
    (re.compile(r"(\d+(?:\.\d+)?)\s*[%％]"), lambda m: "百分之" + _decimal(m.group(1))),
    (re.compile(r"(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})日?"),
     lambda m: f"{digits(m.group(1))}年{cardinal(int(m.group(2)))}月{cardinal(int(m.group(3)))}日"),
    (re.compile(r"(?<!\d)(\d{4})\s*年"), lambda m: digits(m.group(1)) + "年"),  # a year, not "20 years"
    (re.compile(r"(\d{1,2})[:：](\d{2})(?!\d)"),
     lambda m: cardinal(int(m.group(1))) + "点" + ("" if m.group(2) == "00" else _minutes(m.group(2)))),
    (re.compile(r"(\d+)/(\d+)"), lambda m: cardinal(int(m.group(2))) + "分之" + cardinal(int(m.group(1)))),
    (re.compile(r"[¥￥](\d+(?:\.\d+)?)(元)?"), lambda m: _decimal(m.group(1)) + "元"),
    (re.compile(r"\$(\d+(?:\.\d+)?)"), lambda m: _decimal(m.group(1)) + "美元"),
    (re.compile(r"(\d+(?:\.\d+)?)\s*(?:°C|℃)"), lambda m: _decimal(m.group(1)) + "摄氏度"),
    (re.compile(r"(\d+(?:\.\d+)?)\s*(kg|km|cm|mm|ml)\b", re.I),
     lambda m: _decimal(m.group(1)) + {"kg": "公斤", "km": "公里", "cm": "厘米", "mm": "毫米",
                                       "ml": "毫升"}[m.group(2).lower()]),
    (re.compile(r"(\d+)\s*[-~～]\s*(\d+)"), lambda m: _integer(m.group(1)) + "到" + _integer(m.group(2))),
    (re.compile(r"(?<![\dA-Za-z.])-(\d+(?:\.\d+)?)"), lambda m: "负" + _decimal(m.group(1))),
    (re.compile(r"\d+\.\d+"), lambda m: _decimal(m.group(0))),
    (re.compile(r"\d+"), lambda m: _integer(m.group(0), m.string[m.end():m.end() + 1])),
]


def _minutes(mm: str) -> str:
    return ("零" if mm.startswith("0") else "") + cardinal(int(mm)) + "分"


def normalize_numbers(text: str) -> str:
    """Digits (and the signs around them) -> how they are read aloud, in Chinese characters."""
    for pattern, repl in _NUMBER_RULES:
        text = pattern.sub(repl, text)
    return text


@dataclass
class Syllable:
    text: str    # the character (or Latin letter/word) it was read from
    pinyin: str  # tone-numbered: "hao3"; tone 5 is neutral

    @property
    def tone(self) -> int:
        return int(self.pinyin[-1])

    def with_tone(self, tone: int) -> None:
        self.pinyin = self.pinyin[:-1] + str(tone)


def phrases(text: str) -> list[list[Syllable]]:
    """Text -> the phrases between pauses (commas, full stops), each a list of syllables after tone sandhi."""
    out = []
    for part in _CLAUSE_BREAK.split(normalize_numbers(text)):
        syllables = _syllables(part)
        if syllables:
            sandhi(syllables)
            out.append(syllables)
    return out


def _syllables(text: str) -> list[Syllable]:
    from pypinyin import Style, lazy_pinyin
    from pypinyin.seg.mmseg import seg

    out: list[Syllable] = []
    for run in _RUN.finditer(text):
        s = run.group(0)
        if s.isascii():
            out += _latin(s)
            continue
        words = list(seg.cut(s))
        for k, word in enumerate(words):
            reading = lazy_pinyin(word, style=Style.TONE3, neutral_tone_with_five=True,
                                  errors=lambda x: [None] * len(x))
            syls = [Syllable(ch, p) for ch, p in zip(word, reading) if p and p[-1].isdigit()]
            if len(word) == 1 and word in _PARTICLES and syls:
                reduplicated = len(out) >= 2 and out[-1].text == out[-2].text
                after = words[k + 1][:1] if k + 1 < len(words) else ""
                if word == "得" and out and after not in ("到", "出") or word == "地" and reduplicated:
                    syls[0].pinyin = "de5"  # 跑得快, 慢慢地 (but 得到, 在地上)
            out += syls
    for a, b in zip(out, out[1:]):
        if a.text == b.text and a.tone == 3 == b.tone and a.text in _SOFT_REDUPLICATED:
            b.with_tone(5)  # 姐姐 jie3 jie5, 想想 xiang3 xiang5 (but 好好学习 stays hao3 hao3 -> hao2 hao3)
    return out


_PARTICLES = {"得", "地"}  # alone (not in a word like 得到, 地方), read as the neutral particle de5
_SOFT_REDUPLICATED = set("姐奶姥嫂婶宝想走洗改讲比找等")


def _latin(word: str) -> list[Syllable]:
    if word.upper() in LATIN_WORDS:
        return [Syllable(word, p) for p in LATIN_WORDS[word.upper()].split()]
    return [Syllable(ch, p) for ch in word for p in LETTERS[ch.upper()].split()]


_NUMERALS = set(_DIGITS + "〇十两")


def sandhi(syllables: list[Syllable]) -> None:
    """Tone sandhi inside one phrase, in place: 一 and 不 first (their tone depends on the next one's dictionary
    tone), then runs of third tones."""
    n = len(syllables)
    for i, s in enumerate(syllables):
        prev = syllables[i - 1] if i else None
        nxt = syllables[i + 1] if i + 1 < n else None
        if s.text == "不" and s.pinyin.startswith("bu"):
            s.pinyin = "bu2" if nxt is not None and nxt.tone == 4 else "bu4"
        elif s.text == "一" and s.pinyin.startswith("yi"):
            s.pinyin = _yi(prev, nxt)
    i = 0
    while i < n:
        if syllables[i].tone != 3:
            i += 1
            continue
        j = i
        while j + 1 < n and syllables[j + 1].tone == 3:
            j += 1
        for k in range(i, j):  # all but the last of the run
            syllables[k].with_tone(2)
        i = j + 1


def _yi(prev: Syllable | None, nxt: Syllable | None) -> str:
    if nxt is None or (prev is not None and (prev.text in _NUMERALS or prev.text == "第")):
        return "yi1"  # 十一, 二零一五, 第一, 统一
    if nxt.text in _NUMERALS and nxt.text != "十" or nxt.text in "月号日":
        return "yi1"  # 一二三, 一月, 五月一日
    if nxt.text == "十" and prev is not None and prev.text in "百千万亿":
        return "yi1"  # 一百一十
    if prev is not None and nxt.text == prev.text:
        return "yi5"  # 看一看
    return "yi2" if nxt.tone in (4, 5) else "yi4"
