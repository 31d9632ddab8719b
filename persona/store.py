"""Where memory and knowledge rows live: one small database interface, SQLite (embedded, the default) or PostgreSQL
(shared by every node of a deployment; storage.url: postgresql://...).

The stores (persona/memory.py, persona/knowledge.py) write their SQL once with `?` placeholders; each backend adapts
it (store_sqlite.py, store_postgres.py). Vectors are searched in the node: a user's memories and a character's
knowledge are loaded on demand and kept fresh by a version counter per key (user or character) that every write
bumps in the same transaction; a node compares its cached version with the stored one (one indexed read) before it
uses its cache, so a write or an erasure on node A is seen by node B on its next turn.
"""
from __future__ import annotations

import logging
import re
import threading
import time
from collections import deque
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Callable, Optional, Protocol
from urllib.parse import urlsplit

log = logging.getLogger("livehost.storage")


class StorageError(RuntimeError):
    """Storage that cannot be used as configured (unreachable at start, a bad URL); the message says what to check."""


class StorageUnavailable(StorageError):
    """The shared database stopped answering while serving; reads fall back to the node's cache, writes queue."""


class Cursor:
    """A statement's result, read in full while the connection is held (threads share one connection)."""

    def __init__(self, rows: list[tuple], rowcount: int):
        self.rows, self.rowcount = rows, rowcount

    def fetchone(self) -> Optional[tuple]:
        return self.rows[0] if self.rows else None

    def fetchall(self) -> list[tuple]:
        return self.rows

    def __iter__(self):
        return iter(self.rows)


class Transaction(Protocol):
    def execute(self, sql: str, params: tuple | list = ()) -> Cursor: ...

    def executemany(self, sql: str, rows: list) -> None: ...


class Database(Protocol):
    """What a store needs from its database. SQL uses `?` placeholders and the types {ID}, {REAL}, {BLOB} in DDL."""
    kind: str  # "sqlite" or "postgresql"
    shared: bool  # other processes write here too (then writes that fail for want of a connection are queued)
    where: str  # for logs and errors: a file path, or the URL with its password hidden

    def ensure_schema(self, ddl: str) -> None: ...

    def execute(self, sql: str, params: tuple | list = ()) -> Cursor: ...  # one statement, committed

    def transaction(self) -> AbstractContextManager[Transaction]: ...

    def after_erase(self, table: str) -> None: ...  # make deleted text leave the files where the engine can

    def ping(self) -> bool: ...

    def close(self) -> None: ...


def is_postgres_url(url: Optional[str]) -> bool:
    return bool(url) and urlsplit(str(url)).scheme in ("postgresql", "postgres")


def redact(url: str) -> str:
    """The URL with its password replaced by ***, for logs, errors and /healthz."""
    parts = urlsplit(url)
    out = url
    if parts.query:  # ?password=... is libpq's too
        out = out.replace("?" + parts.query, "?" + re.sub(r"(?i)(^|&)(password=)[^&]*", r"\1\2***", parts.query), 1)
    if parts.password is not None:
        head, _, tail = parts.netloc.rpartition("@")
        out = out.replace(parts.netloc, f"{head.split(':', 1)[0]}:***@{tail}", 1)
    return out


def open_database(url: Optional[str], data_dir: Path, name: str) -> Database:
    """The database of one store: SQLite file data_dir/<name>.db by default, or schema <name> on the PostgreSQL
    server of `url` (every node that shares the URL shares the rows)."""
    if url and not is_postgres_url(url):
        raise StorageError(f"storage.url must be a postgresql:// URL (or unset for SQLite in data_dir), not "
                           f"{redact(url)!r}")
    if url:
        from livehost.persona.store_postgres import PostgresDatabase
        return PostgresDatabase(url, name)
    from livehost.persona.store_sqlite import SqliteDatabase
    return SqliteDatabase(Path(data_dir) / f"{name}.db")


# ---- versions: how a node knows its cache of a key is still current -------------------------------------------

VERSIONS_DDL = "CREATE TABLE IF NOT EXISTS versions (key TEXT PRIMARY KEY, version BIGINT NOT NULL)"
META_DDL = "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"


def bump(tx: Transaction, key: str) -> int:
    """Count one change to `key` (in the writer's transaction); returns the new version."""
    return int(tx.execute("INSERT INTO versions (key, version) VALUES (?, 1) ON CONFLICT (key) DO UPDATE "
                          "SET version = versions.version + 1 RETURNING version", (key,)).fetchone()[0])


def read_version(db: Database, key: str) -> int:
    row = db.execute("SELECT version FROM versions WHERE key=?", (key,)).fetchone()
    return int(row[0]) if row else 0


def reembed_if_engine_changed(db: Database, table: str, embedder: Any, batch: int = 64) -> int:
    """Vectors from another engine live in another space: re-embed every stored text once after a switch (and bump
    every version, so other nodes drop their caches). Every node of a deployment must use the same engine."""
    key = f"embedder:{table}"
    row = db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
    wanted = f"{embedder.name}/{embedder.dim}"
    if row and row[0] == wanted:
        return 0
    rows = db.execute(f"SELECT id, text FROM {table}").fetchall() if row else []
    if rows:
        log.warning("%s (%s): embeddings came from %s, now %s: re-embedding %d texts", table, db.where, row[0],
                    wanted, len(rows))
    with db.transaction() as tx:
        for start in range(0, len(rows), batch):
            part = rows[start:start + batch]
            vectors = embedder.embed([r[1] for r in part], "passage")
            tx.executemany(f"UPDATE {table} SET embedding=? WHERE id=?",
                           [(v.tobytes(), r[0]) for v, r in zip(vectors, part)])
        if rows:
            tx.execute("UPDATE versions SET version = version + 1")
        tx.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = ?",
                   (key, wanted, wanted))
    return len(rows)


# ---- writes that met an unreachable database ------------------------------------------------------------------

class WriteQueue:
    """Memory writes that found the shared database down wait here (bounded, in order) and are retried every
    retry_s until they land. Nothing is dropped silently: a full queue logs an error with the count it dropped,
    and so does a close with writes still waiting."""

    def __init__(self, name: str, max_items: int = 1000, retry_s: float = 2.0):
        self.name, self.max_items, self.retry_s = name, max_items, retry_s
        self._items: deque[tuple[str, str, Callable[[], None]]] = deque()  # (key, what, write)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = False
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name=f"livehost-{name}-retry", daemon=True)
        self._thread.start()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, key: str, what: str, write: Callable[[], None]) -> bool:
        with self._lock:
            if len(self._items) >= self.max_items:
                self.dropped += 1
                log.error("%s: storage unreachable and the write queue is full (%d): dropped %s; %d writes dropped "
                          "so far", self.name, self.max_items, what, self.dropped)
                return False
            self._items.append((key, what, write))
            queued = len(self._items)
        if queued == 1 or queued % 100 == 0:
            log.warning("%s: storage unreachable: %d writes queued (at most %d), retried every %.1f s", self.name,
                        queued, self.max_items, self.retry_s)
        return True

    def discard(self, key: str) -> int:
        """Forget the queued writes of `key` (its data is being erased: they must not bring it back)."""
        with self._lock:
            kept = [item for item in self._items if item[0] != key]
            gone = len(self._items) - len(kept)
            self._items = deque(kept)
        return gone

    def flush(self) -> bool:
        """Write what is queued, oldest first; False if the database is still unreachable."""
        while True:
            with self._lock:
                if not self._items:
                    return True
                key, what, write = self._items[0]
            try:
                write()
            except StorageUnavailable:
                return False
            except Exception:  # a write the database refuses will never land: say so, go on with the rest
                self.dropped += 1
                log.exception("%s: a queued write failed and is dropped: %s", self.name, what)
            with self._lock:
                if self._items and self._items[0][2] is write:
                    self._items.popleft()
                    if not self._items:
                        log.warning("%s: storage reachable again: queued writes saved", self.name)

    def _run(self) -> None:
        while not self._stop:
            self._wake.wait(self.retry_s)
            self._wake.clear()
            if self._items and not self._stop:
                self.flush()

    def close(self, timeout: float = 5.0) -> None:
        """One last try to save what waits; an error names what could not be saved."""
        deadline = time.monotonic() + timeout
        while self._items and time.monotonic() < deadline and not self.flush():
            time.sleep(0.2)
        self._stop = True
        self._wake.set()
        if self._items:
            log.error("%s: %d queued writes were not saved: storage still unreachable at shutdown", self.name,
                      len(self._items))


def storage_health(store: Any) -> dict:
    """/healthz's storage part: the kind, where (password hidden), whether it answers now, writes waiting/dropped."""
    if store is None:
        return {"kind": "off"}
    if getattr(store, "db", None) is None:  # a memory without a database (a test double)
        return {"kind": type(store).__name__}
    queue = getattr(store, "queue", None)
    return {"kind": store.db.kind, "where": store.db.where, "reachable": store.db.ping(),
            "queued_writes": len(queue) if queue is not None else 0,
            "dropped_writes": queue.dropped if queue is not None else 0}
