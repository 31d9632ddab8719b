"""The embedded default: one SQLite file per store in data_dir (memory.db, knowledge-<engine>.db).

Durability: WAL with synchronous=NORMAL; a transaction is committed when it returns, so a killed process loses
nothing committed (a power cut may lose the last commits). Erasure: secure_delete on, and the WAL is truncated after
an erase, so erased text is gone from the files. One connection shared by threads under a lock.
"""
from __future__ import annotations

import logging
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from livehost.persona.store import Cursor

log = logging.getLogger("livehost.storage")

TYPES = {"{ID}": "INTEGER PRIMARY KEY AUTOINCREMENT", "{REAL}": "REAL", "{BLOB}": "BLOB"}


def _result(cursor: sqlite3.Cursor) -> Cursor:
    return Cursor(cursor.fetchall() if cursor.description else [], cursor.rowcount)


class _Tx:
    def __init__(self, conn: sqlite3.Connection):
        self._conn = conn

    def execute(self, sql: str, params: tuple | list = ()) -> Cursor:
        return _result(self._conn.execute(sql, params))

    def executemany(self, sql: str, rows: list) -> None:
        self._conn.executemany(sql, rows)


class SqliteDatabase:
    kind, shared = "sqlite", False

    def __init__(self, path: Path):
        self.path = Path(path)
        self.where = str(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self.conn = sqlite3.connect(str(self.path), check_same_thread=False, timeout=10)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")  # in WAL mode: durable against a crashed process
        self.conn.execute("PRAGMA secure_delete=ON")  # deleted rows are overwritten with zeros, not just unlinked

    def ensure_schema(self, ddl: str) -> None:
        for token, sql_type in TYPES.items():
            ddl = ddl.replace(token, sql_type)
        with self._lock:
            self.conn.executescript(ddl)

    def execute(self, sql: str, params: tuple | list = ()) -> Cursor:
        with self._lock:
            with self.conn:
                return _result(self.conn.execute(sql, params))

    @contextmanager
    def transaction(self) -> Iterator[_Tx]:
        with self._lock:
            with self.conn:  # commits on success, rolls back on an exception
                yield _Tx(self.conn)

    def after_erase(self, table: str) -> None:
        """Copy the WAL into the database and truncate it, so deleted text no longer lies in old WAL frames."""
        with self._lock:
            busy, _, _ = self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            log.warning("WAL checkpoint blocked by another reader: erased text may stay in the -wal file until the "
                        "next checkpoint")

    def ping(self) -> bool:
        return True

    def close(self) -> None:
        with self._lock:
            self.conn.close()
