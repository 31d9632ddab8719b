"""Facts and preferences a user states about themself, pulled from what they say (rule-based, bounded).

Kept apart from persona/memory.py (where the facts are stored); memory.py re-exports extract_facts.
"""
from __future__ import annotations

import re

from livehost.persona.embeddings import has_cjk

# ---- facts the user states about themself ---------------------------------------------------------------------
# Rule-based on purpose: the bundled LLM (SmolLM2-135M) invents and drops facts when asked to extract them. These
# patterns favour precision: a clause must open with "I ..." / "my ..." (or 我...) after harmless lead-ins, so
# questions, hypotheticals ("if I ..."), reported speech ("she said I ...") and other people ("my friend ...")
# give nothing. English facts are stored in English, Chinese ones in Chinese (what the prompt and retrieval want).

_NAME = r"[A-Za-z\u00C0-\u024F][\w'\-]*(?: [A-Za-z\u00C0-\u024F][\w'\-]*){0,2}"
_REL = (r"wife|husband|partner|son|daughter|kid|child|baby|mother|mom|mum|father|dad|brother|sister|boyfriend|"
        r"girlfriend|fiancee?|dog|cat|puppy|kitten|pet|parrot|rabbit|hamster|horse")
_JOBS = (r"teacher|nurse|doctor|engineer|developer|programmer|designer|lawyer|chef|cook|student|artist|writer|"
         r"musician|accountant|farmer|driver|pilot|scientist|researcher|architect|pharmacist|dentist|vet|"
         r"firefighter|police officer|journalist|photographer|electrician|plumber|mechanic|manager|consultant|"
         r"cashier|waiter|waitress|baker|carpenter|translator|retiree|professor")
_NOT_NAMES = """english british american canadian australian irish scottish welsh french german spanish italian
portuguese dutch swedish norwegian danish finnish polish russian ukrainian greek turkish chinese japanese korean
indian pakistani thai vietnamese filipino brazilian mexican argentinian egyptian nigerian kenyan african european
asian latino christian muslim jewish hindu buddhist catholic vegan vegetarian sorry fine good okay ok back here
there done ready not so just also really very the a an in at on from sure glad happy sad tired home new old
married single free busy late early sick ill well""".lower()
_EN = [  # (pattern matched at a clause start, template, importance); {x} is the cleaned capture
    (rf"my name(?:'s| is) (?P<x>{_NAME})$", "The user's name is {X}", 0.9),
    (rf"(?:i'm|i am|im) called (?P<x>{_NAME})$", "The user's name is {X}", 0.9),
    # "I'm Priya, by the way.": one capitalised word that is not a word people say of themselves ("I'm English")
    (r"(?:i'm|i am) (?!(?:" + "|".join(_NOT_NAMES.split()) + r")\b)(?P<x>(?-i:[A-Z])[a-z\u00C0-\u024F'-]+(?<!ing))"
     r"(?:,.*)?$", "The user's name is {X}", 0.9),
    (r"(?:i'm|i am|im) (?:(?:very|really|severely|extremely|quite|deathly|also) )?allergic to (?P<x>.+)",
     "The user is allergic to {x}", 0.9),
    (r"i (?:have|'ve got|have got) an? (?:severe |serious |bad )?allergy to (?P<x>.+)", "The user is allergic to {x}", 0.9),
    (r"i (?:have|'ve got|have got) an? (?:severe |serious |bad )?(?P<x>[a-z ]{2,30}?) allergy$", "The user is allergic to {x}", 0.9),
    (r"(?:i'm|i am|im) (?:an? )?(?P<x>vegetarian|vegan|pescatarian|lactose intolerant|gluten intolerant|coeliac|"
     r"celiac|diabetic|teetotal)$", "The user is {x}", 0.8),
    (r"i (?:don't|do not|never) (?P<v>eat|drink) (?P<x>.+)", "The user does not {v} {x}", 0.8),
    (r"my (?:absolute |all-time )?favou?rite (?P<w>[a-z ]{2,20}?) (?:is|are|'s) (?P<x>.+)",
     "The user's favourite {w} is {x}", 0.7),
    (r"i (?:really |absolutely |just |also |truly |do )?(?P<v>hate|dislike|can't stand|cannot stand|don't like|"
     r"do not like|don't enjoy) (?P<x>.+)", "The user dislikes {x}", 0.6),
    (r"i (?:really |absolutely |just |also |truly |do )?(?P<v>love|adore|like|enjoy) (?P<x>.+)",
     "The user {v}s {x}", 0.6),
    (r"i (?:really |much |also )?prefer (?P<x>.+)", "The user prefers {x}", 0.6),
    (r"i (?:live|am living|'m living) in (?P<x>.+)", "The user lives in {x}", 0.7),
    (r"(?:i'm|i am|im|i come) from (?P<x>.+)", "The user is from {x}", 0.7),
    (r"i (?:grew up|was raised) in (?P<x>.+)", "The user grew up in {x}", 0.6),
    (r"i (?:just |recently )?moved to (?P<x>.+)", "The user moved to {x}", 0.6),
    (r"i work as (?P<x>.+)", "The user works as {x}", 0.7),
    (r"i work (?P<v>at|for|in) (?P<x>.+)", "The user works {v} {x}", 0.7),
    (r"my (?:job|profession|occupation) is (?P<x>.+)", "The user's job is {x}", 0.7),
    (rf"(?:i'm|i am|im) (?P<x>an? (?:[\w-]+ )?(?:{_JOBS}))$", "The user is {x}", 0.7),
    (r"my birthday(?:'s| is) (?:on )?(?P<x>.+)", "The user's birthday is {x}", 0.8),
    (r"i was born (?P<v>on|in) (?P<x>.+)", "The user was born {v} {x}", 0.7),
    (r"(?:i'm|i am|im) (?P<x>\d{1,3}) (?:years old|year old)$", "The user is {x} years old", 0.6),
    (rf"my (?P<w>{_REL})(?:'s name is| is called| is named|'s called) (?P<x>{_NAME})$",
     "The user's {w} is called {X}", 0.7),
    (rf"i have an? (?P<w>{_REL}) (?:called|named) (?P<x>{_NAME})$", "The user has a {w} called {X}", 0.7),
    (r"i speak (?P<x>.+)", "The user speaks {x}", 0.6),
]
_EN = [(re.compile(p, re.I), t, w) for p, t, w in _EN]
_LEAD_EN = re.compile(r"^(?:(?:well|oh|so|and|but|also|actually|anyway|okay|ok|hi|hello|hey|yes|yeah|no|btw|"
                      r"by the way|fyi|just so you know|for the record|remember|remember that|you know|"
                      r"as you know|honestly|to be honest)\b[\s,]*)+", re.I)
_QUESTION_EN = re.compile(r"^(?:what|who|whom|whose|where|when|why|how|which|do|does|did|is|are|am|was|were|can|"
                          r"could|would|will|should|shall|have|has|may|might|isn't|aren't|don't|doesn't)\b", re.I)
_CLAUSES_EN = re.compile(r"\s*(?:[,;:]|\s-\s|\b(?:and|but|so|also|because)\b)\s*(?=(?:i|i'm|im|my)\b)", re.I)
_CUT_EN = re.compile(r"\s*(?:[,;:()]|\s-\s|\b(?:because|but|although|though|when|if|since|unless|and i|and my)\b).*",
                     re.I)
_TAIL_EN = re.compile(r"(?:\s+(?:a lot|so much|very much|too|as well|though|actually|really|haha|lol|now|currently|these days|at the moment))+$", re.I)
_PRONOUNS = {"my": "their", "me": "them", "myself": "themself", "mine": "theirs"}
_VAGUE = re.compile(r"^(?:it|that|this|them|him|her|those|these|one|so|to|not|you|what|a|an|the|some)$", re.I)

_ZH = [
    (r"我(?:的名字)?叫(?P<x>[\u4e00-\u9fffA-Za-z·]{1,8})$", "用户叫{x}", 0.9),
    (r"我的名字是(?P<x>[\u4e00-\u9fffA-Za-z·]{1,8})$", "用户叫{x}", 0.9),
    (r"我(?:对)?(?P<x>[^不没]{1,12}?)过敏$", "用户对{x}过敏", 0.9),
    (r"我(?:是)?(?:吃素的?|素食者|素食主义者)$", "用户吃素", 0.8),
    (r"我最喜欢的(?P<w>.{1,6}?)是(?P<x>.+)", "用户最喜欢的{w}是{x}", 0.7),
    (r"我(?:也|还|真的|很|非常|特别|最)*(?P<v>不喜欢|讨厌|不爱|受不了)(?P<x>.+)", "用户不喜欢{x}", 0.6),
    (r"我(?:也|还|都|真的|非常|很|特别|超级?|最|蛮|挺)*(?P<v>喜欢|热爱|喜爱|爱)(?P<x>.+)", "用户{v}{x}", 0.6),
    (r"我(?:现在)?(?:住在|家在)(?P<x>.+)", "用户住在{x}", 0.7),
    (r"我(?:来自|是从)(?P<x>.+?)(?:来的)?$", "用户来自{x}", 0.7),
    (r"我是(?P<x>[\u4e00-\u9fff]{2,5})人$", "用户是{x}人", 0.6),
    (r"我(?:的工作|的职业)是(?P<x>.+)", "用户的工作是{x}", 0.7),
    (r"我是(?:一名|一位)(?P<x>.+)", "用户是一名{x}", 0.7),
    (r"我在(?P<x>.+?)(?:工作|上班)$", "用户在{x}工作", 0.7),
    (r"我的生日是(?P<x>.+)", "用户的生日是{x}", 0.8),
    (r"我(?:今年)?(?P<x>[0-9一二三四五六七八九十两]{1,4})岁(?:了)?$", "用户今年{x}岁", 0.6),
    (r"我的?(?P<w>女儿|儿子|孩子|老婆|老公|妻子|丈夫|妈妈|爸爸|哥哥|姐姐|弟弟|妹妹|狗|猫|狗狗|猫咪|宠物)(?:的名字)?叫"
     r"(?P<x>[\u4e00-\u9fffA-Za-z·]{1,8})$", "用户的{w}叫{x}", 0.7),
]
_ZH = [(re.compile(p), t, w) for p, t, w in _ZH]
_LEAD_ZH = re.compile(r"^(?:(?:其实|对了|顺便说一下|顺便说|顺便|嗯|哦|啊|那个|还有|另外|告诉你|跟你说|记住|请记住|"
                      r"你好|好的|是的|对)[，,\s]*)+")
_QUESTION_ZH = re.compile(r"什么|谁|哪里|哪儿|哪个|哪些|多少|怎么|为什么|是不是|有没有|几岁|几点|[吗呢么][。！!]?$")
_VAGUE_ZH = re.compile(r"^(?:你|您|它|他|她|这|那|人|好人|坏人|男人|女人|大人|什么)")


def _clean_en(x: str) -> str:
    x = _TAIL_EN.sub("", _CUT_EN.sub("", x).strip(" .!\"'"))
    if not x or len(x.split()) > 8 or _VAGUE.match(x) or re.search(r"\byou(?:r|rs|rself)?\b", x, re.I):
        return ""
    return " ".join(_PRONOUNS.get(w.lower(), w) for w in x.split())


def _clean_zh(x: str) -> str:
    x = x.strip().rstrip("了啊呀哦啦嘛。！!.")
    return "" if not x or len(x) > 20 or _VAGUE_ZH.match(x) else x


MAX_FACT_TEXT = 4000  # a fact is said in a sentence or two; a pasted document is not read for facts past this
MAX_FACTS = 8  # per message: each one is embedded and written


def extract_facts(text: str) -> list[tuple[str, float]]:
    """Facts and preferences the user states about themself: [(fact in the third person, importance 0..1)].
    Bounded: only the first MAX_FACT_TEXT characters are read, and at most MAX_FACTS facts come out."""
    facts: list[tuple[str, float]] = []
    for sentence in re.split(r"(?<=[.!?])\s+|(?<=[。！？；;])|\n+", text[:MAX_FACT_TEXT]):
        if len(facts) >= MAX_FACTS:
            break
        sentence = sentence.strip()
        if not sentence or sentence.endswith(("?", "？")):
            continue
        zh = has_cjk(sentence)
        sentence = (_LEAD_ZH if zh else _LEAD_EN).sub("", sentence).strip(" ,，")
        if (_QUESTION_ZH.search(sentence) if zh else _QUESTION_EN.match(sentence)):
            continue
        clauses = re.split(r"[，,、；;]", sentence) if zh else _CLAUSES_EN.split(sentence)
        for clause in clauses:
            clause = (_LEAD_ZH if zh else _LEAD_EN).sub("", clause).strip(" .!。！\"'")
            for pattern, template, importance in (_ZH if zh else _EN):
                m = pattern.match(clause)
                if not m:
                    continue
                parts = m.groupdict()
                x = (_clean_zh if zh else _clean_en)(parts.get("x") or "")
                if "x" in parts and not x:
                    break  # the pattern fits but says nothing usable: try no weaker pattern
                v = (parts.get("v") or "").lower()
                name = " ".join(s[:1].upper() + s[1:] for s in x.split())
                fact = template.format(x=x, X=name, w=(parts.get("w") or "").lower(), v=v)
                if fact not in (f for f, _ in facts):
                    facts.append((fact, importance))
                break
    return facts[:MAX_FACTS]
