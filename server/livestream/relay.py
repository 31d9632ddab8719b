"""Chat ingest that reaches the stream's host from any node: a bounded table in PostgreSQL plus LISTEN/NOTIFY.

Why rows and not forwarding to the holder's URL: a node that takes a POST may not know who holds the stream right
now (a takeover is under way, the holder just died), and forwarding would lose those events; a row waits for
whoever holds the lease next. NOTIFY wakes the holder at once; it also polls every heartbeat_s, so a lost
notification (a dropped LISTEN connection) delays an event, never drops it. Bounded both ways: at most `backlog`
rows per stream wait (a POST past that gets 503), and the holder skips rows older than `max_age_s` (chat that old is
no longer worth answering). Delivery is at most once: the holder deletes the rows it takes, and an event in a dying
holder's queue dies with it, like the rest of its queue.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, Callable, Optional

import psycopg

from ..cluster_lease import close_quietly
from .ingest import IngestError, parse_ingest

log = logging.getLogger("livehost.stream")
CHANNEL = "livehost_stream_ingest"
SCHEMA = """
CREATE TABLE IF NOT EXISTS livehost_stream_ingest (
    id bigserial PRIMARY KEY,
    stream text NOT NULL,
    payload jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS livehost_stream_ingest_stream ON livehost_stream_ingest (stream, id)"""
INSERT = """
INSERT INTO livehost_stream_ingest (stream, payload)
SELECT %(stream)s, p FROM jsonb_array_elements(%(payloads)s::jsonb) AS p
WHERE (SELECT count(*) FROM livehost_stream_ingest WHERE stream = %(stream)s) + %(n)s <= %(backlog)s
RETURNING id"""
TAKE = """
DELETE FROM livehost_stream_ingest WHERE id IN (
    SELECT id FROM livehost_stream_ingest WHERE stream = %(stream)s ORDER BY id LIMIT 200 FOR UPDATE SKIP LOCKED)
RETURNING id, payload, extract(epoch FROM now() - created_at)::float8"""


class RelayFull(Exception):
    """The stream's backlog is full (no node is taking chat, or chat comes faster than it is answered)."""


class _Checked:
    """Stands in for the host while a standby checks payloads: the same validation, the same errors."""

    def ingest(self, event: Any) -> str:
        return "relayed"


async def relay_payload(relay: "ChatRelay", payload: Any, check: Callable[[Any, Any], dict]) -> dict:
    """A POSTed payload (one event or a list) on a standby: checked like the host checks it, valid events relayed
    (outcome "relayed"), bad ones answered with their error. Raises HTTPException 503 when nothing could be relayed
    (backlog full, database out of reach): the caller keeps its events and may send them again."""
    from fastapi import HTTPException
    result = check(_Checked(), payload)
    if "error" in result:
        return result
    items, results = (payload, result["results"]) if isinstance(payload, list) else ([payload], [result])
    valid = [p for p, r in zip(items, results) if "outcome" in r]
    if valid:
        try:
            await relay.send(valid)
        except RelayFull as exc:
            raise HTTPException(503, str(exc), headers={"Retry-After": "5"}) from None
        except (psycopg.Error, OSError, asyncio.TimeoutError) as exc:
            raise HTTPException(503, f"chat could not be relayed to the stream's host (database: {exc}); nothing "
                                     f"was taken, send it again", headers={"Retry-After": "5"}) from None
    return result


class ChatRelay:
    def __init__(self, url: str, stream: str, backlog: int = 1000, max_age_s: float = 60.0, poll_s: float = 3.0):
        self.url, self.stream, self.backlog, self.max_age_s, self.poll_s = url, stream, backlog, max_age_s, poll_s
        self._conn: Optional[psycopg.AsyncConnection] = None
        self._lock = asyncio.Lock()  # one statement at a time on the shared connection

    async def _connection(self) -> psycopg.AsyncConnection:
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True, connect_timeout=5)
            await self._conn.execute(SCHEMA)
        return self._conn

    async def send(self, payloads: list[dict]) -> int:
        """Queue valid ingest payloads for the host (all or none); raises RelayFull past the backlog."""
        stamped = [{**p, "ts": p.get("ts") if p.get("ts") is not None else time.time()} for p in payloads]
        async with self._lock:
            try:
                conn = await self._connection()
                async with conn.transaction():
                    cur = await conn.execute(INSERT, {"stream": self.stream, "payloads": json.dumps(stamped),
                                                      "n": len(stamped), "backlog": self.backlog})
                    sent = len(await cur.fetchall())
                    if sent:
                        await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, self.stream))
            except BaseException:
                await self.close()
                raise
        if sent < len(stamped):
            raise RelayFull(f"the stream's chat backlog is full ({self.backlog} events wait for the host); "
                            "try again shortly")
        return sent

    async def serve(self, ingest: Callable[[Any], str]) -> None:
        """On the holder: hand every relayed event to `ingest` (StreamHost.ingest), until cancelled."""
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.url, autocommit=True,
                                                                 connect_timeout=5) as listen:
                    await listen.execute(SCHEMA)
                    await listen.execute(f"LISTEN {CHANNEL}")
                    while True:
                        await self._drain(listen, ingest)
                        async for _ in listen.notifies(timeout=self.poll_s, stop_after=1):
                            pass
            except asyncio.CancelledError:
                raise
            except (psycopg.Error, OSError) as exc:
                log.warning("chat relay: database unreachable (%s); trying again in %.0f s", exc, self.poll_s)
                await asyncio.sleep(self.poll_s)

    async def _drain(self, conn: psycopg.AsyncConnection, ingest: Callable[[Any], str]) -> None:
        while True:
            rows = await (await conn.execute(TAKE, {"stream": self.stream})).fetchall()
            stale = 0
            for _, payload, age in sorted(rows):
                if age > self.max_age_s:
                    stale += 1
                    continue
                try:
                    ingest(parse_ingest(payload))
                except IngestError as exc:  # checked before it was stored; only a changed format gets here
                    log.warning("chat relay: skipped an event: %s", exc)
            if stale:
                log.warning("chat relay: skipped %d events older than %.0f s", stale, self.max_age_s)
            if len(rows) < 200:
                return

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        await close_quietly(conn)
