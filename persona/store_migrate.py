"""`livehost db migrate`: copy a SQLite data dir (memory.db, knowledge-<engine>.db) into PostgreSQL.

Idempotent: rows keep their ids, and a second run writes the same rows again (ON CONFLICT ... DO UPDATE). Each store
is copied in one transaction, so a failure leaves that store as it was. A row id that PostgreSQL already uses for
another user or character means the target holds other data: refused, nothing of that store written. Every copied
user's and character's version is bumped, so nodes already running reload them. Run it before the nodes switch
to storage.url: a later run copies the SQLite rows again, including ones erased in PostgreSQL since.
"""
from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Callable, Iterable

from livehost.persona import knowledge, memory
from livehost.persona.store import StorageError, bump
from livehost.persona.store_postgres import PostgresDatabase

# store kind -> (schema DDL, [(table, columns, owner column or None, conflict key)])
LAYOUT = {
    "memory": (memory.SCHEMA, [
        ("memories", "id, user_id, text, kind, importance, created_at, last_used_at, embedding", "user_id", "id")]),
    "knowledge": (knowledge.SCHEMA, [
        ("chunks", "id, character, source, locator, text, embedding", "character", "id"),
        ("sources", "character, source, digest, chunks, added_at", None, "character, source")]),
}


def sqlite_stores(data_dir: Path) -> list[Path]:
    """The store files in a data dir, memory first."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise StorageError(f"data dir {data_dir} does not exist (give --data-dir, or set data_dir)")
    found = [p for p in [data_dir / "memory.db", *sorted(data_dir.glob("knowledge-*.db"))] if p.is_file()]
    if not found:
        raise StorageError(f"no memory.db or knowledge-*.db in {data_dir}: nothing to migrate")
    return found


def _rows(source: sqlite3.Connection, path: Path, sql: str) -> list[tuple]:
    try:
        return source.execute(sql).fetchall()
    except sqlite3.DatabaseError as exc:
        raise StorageError(f"cannot read {path}: {exc}") from None


def migrate_store(path: Path, url: str, progress: Callable[[Iterable, str, int], Iterable] = lambda it, d, n: it
                  ) -> dict[str, int]:
    """Copy one SQLite store file into the schema of the same name on `url`; returns rows copied per table."""
    name = path.stem
    kind = "memory" if name == "memory" else "knowledge"
    ddl, tables = LAYOUT[kind]
    source = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        target = PostgresDatabase(url, name)
        try:
            target.ensure_schema(ddl)
            return _copy(source, path, target, tables, progress)
        finally:
            target.close()
    finally:
        source.close()


def _copy(source: sqlite3.Connection, path: Path, target: PostgresDatabase, tables: list, progress) -> dict[str, int]:
    meta = dict(_rows(source, path, "SELECT key, value FROM meta WHERE key LIKE 'embedder:%'"))
    for key, value in meta.items():
        row = target.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        if row and row[0] != value:
            raise StorageError(f"{path}: its embeddings come from {value}, but {target.where} schema "
                               f"{target.schema} holds ones from {row[0]}; set memory.embeddings alike or migrate "
                               f"into a new database")
    copied: dict[str, int] = {}
    with target.transaction() as tx:
        for key, value in meta.items():
            tx.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING", (key, value))
        owners: set[str] = set()
        for table, columns, owner, conflict in tables:
            names = [c.strip() for c in columns.split(",")]
            rows = _rows(source, path, f"SELECT {columns} FROM {table} ORDER BY {conflict}")
            keys = [c.strip() for c in conflict.split(",")]
            updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in names if c not in keys)
            guard = f" WHERE {table}.{owner} = EXCLUDED.{owner}" if owner else ""
            sql = (f"INSERT INTO {table} ({columns}) VALUES ({', '.join('?' * len(names))}) ON CONFLICT ({conflict}) "
                   f"DO UPDATE SET {updates}{guard} RETURNING 1")
            for row in progress(rows, f"{path.name}: {table}", len(rows)):
                if tx.execute(sql, row).fetchone() is None:
                    raise StorageError(f"{path}: {table} row id {row[0]} is already used in {target.where} "
                                       f"(schema {target.schema}) by another {owner}: the target holds other data; "
                                       f"migrate into a new database. Nothing of {path.name} was written.")
                if owner:
                    owners.add(row[names.index(owner)])
            if "id" in names and rows:  # new rows written by the nodes must not reuse the copied ids
                tx.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                           f"(SELECT max(id) FROM {table}))")
            copied[table] = len(rows)
        for key in sorted(owners):
            bump(tx, key)
    return copied
