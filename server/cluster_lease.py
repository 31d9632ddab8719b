"""One holder at a time: a lease row in PostgreSQL, renewed by a heartbeat (issue 17: one host per stream).

Why a row and not an advisory lock: an advisory lock lives as long as its connection, so a holder that hangs or is
cut off keeps it until TCP gives up (minutes), and the holder cannot tell it lost the lock until its connection
errors. A row with an expiry on the database's clock bounds takeover in every failure mode: the holder renews every
heartbeat_s; it stops by itself when it has not renewed for lease_s (less a margin), measured on its own monotonic
clock from before the last renewal it saw succeed, so it has stopped before the row expires for anyone else; a
standby tries every heartbeat_s and wins once the row has expired. After a holder dies, another node holds the lease
within lease_s + heartbeat_s. Each acquisition bumps an epoch (a fencing number): a holder renews only its own epoch.
The row also says who holds it and until when (GET /v1/stream on a standby), and it works through PgBouncer.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable, Optional

import psycopg

log = logging.getLogger("livehost.cluster")

SCHEMA = """
CREATE TABLE IF NOT EXISTS livehost_lease (
    name text PRIMARY KEY,
    holder text NOT NULL,
    epoch bigint NOT NULL,
    expires_at timestamptz NOT NULL,
    heartbeat_at timestamptz NOT NULL
)"""
ACQUIRE = """
INSERT INTO livehost_lease AS l (name, holder, epoch, expires_at, heartbeat_at)
VALUES (%(name)s, %(holder)s, 1, now() + make_interval(secs => %(ttl)s), now())
ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, epoch = l.epoch + 1, expires_at = excluded.expires_at,
    heartbeat_at = now()
WHERE l.expires_at < now() OR l.holder = excluded.holder
RETURNING epoch"""
RENEW = """
UPDATE livehost_lease SET expires_at = now() + make_interval(secs => %(ttl)s), heartbeat_at = now()
WHERE name = %(name)s AND holder = %(holder)s AND epoch = %(epoch)s AND expires_at > now()
RETURNING epoch"""
RELEASE = """
UPDATE livehost_lease SET expires_at = now() - interval '1 second'
WHERE name = %(name)s AND holder = %(holder)s AND epoch = %(epoch)s"""
HOLDER = """
SELECT holder, epoch, extract(epoch FROM expires_at - now())::float8 FROM livehost_lease WHERE name = %(name)s"""


class Lease:
    """The lease on `name` for `holder` (this node). Calls are one statement each, on a connection of its own that
    is opened again after an error; each is bounded by `timeout_s`."""

    def __init__(self, url: str, name: str, holder: str, lease_s: float = 10.0, heartbeat_s: float = 3.0):
        if not 0 < heartbeat_s < lease_s:
            raise ValueError(f"heartbeat_s ({heartbeat_s}) must be above 0 and below lease_s ({lease_s})")
        self.url, self.name, self.holder = url, name, holder
        self.lease_s, self.heartbeat_s = float(lease_s), float(heartbeat_s)
        self.margin_s = min(1.0, self.lease_s / 5)  # stop this long before the row expires for the others
        self.epoch: Optional[int] = None  # set while held
        self.valid_until = 0.0  # monotonic: hosting must have stopped by then
        self._conn: Optional[psycopg.AsyncConnection] = None

    @property
    def held(self) -> bool:
        return self.epoch is not None and time.monotonic() < self.valid_until

    async def _execute(self, sql: str, timeout_s: float, **params) -> Optional[tuple]:
        async def run() -> Optional[tuple]:
            if self._conn is None or self._conn.closed:
                self._conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True,
                                                                   connect_timeout=max(1, int(timeout_s)))
                await self._conn.execute(SCHEMA)
            cur = await self._conn.execute(sql, {"name": self.name, "holder": self.holder, "ttl": self.lease_s,
                                                 "epoch": self.epoch, **params})
            return await cur.fetchone() if cur.description else None
        try:
            return await asyncio.wait_for(run(), max(0.1, timeout_s))
        except BaseException:
            await self._drop()  # a half-done statement or a dead server: start from a new connection next time
            raise

    async def acquire(self) -> bool:
        """Take the lease if it is free or expired (or already ours)."""
        sent = time.monotonic()
        row = await self._execute(ACQUIRE, self.heartbeat_s)
        if row is None:
            return False
        self.epoch, self.valid_until = int(row[0]), sent + self.lease_s - self.margin_s
        return True

    async def renew(self) -> bool:
        """Extend our lease; False (and no longer held) when it is not ours any more."""
        if self.epoch is None:
            return False
        sent = time.monotonic()
        row = await self._execute(RENEW, max(0.1, min(self.heartbeat_s, self.valid_until - sent)))
        if row is None:
            self.epoch = None
            return False
        self.valid_until = sent + self.lease_s - self.margin_s
        return True

    async def release(self) -> None:
        """Give the lease up now (clean shutdown): a standby takes over at its next try, not after lease_s."""
        if self.epoch is not None:
            try:
                await self._execute(RELEASE, self.heartbeat_s)
            except (psycopg.Error, OSError, asyncio.TimeoutError) as exc:
                log.warning("could not release lease %s (it expires by itself in %.0f s): %s",
                            self.name, self.lease_s, exc)
        self.epoch = None
        await self._drop()

    async def who(self) -> Optional[dict]:
        """{"holder", "epoch", "expires_in_s"} of the lease row, or None when no one ever held it."""
        row = await self._execute(HOLDER, self.heartbeat_s)
        return None if row is None else {"holder": row[0], "epoch": row[1], "expires_in_s": round(row[2], 2)}

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        await close_quietly(conn)


async def close_quietly(conn: Optional[psycopg.AsyncConnection]) -> None:
    """Close a connection that may already be broken (a dead server, a half-done statement)."""
    if conn is not None:
        try:
            await conn.close()
        except Exception:  # noqa: BLE001 - already broken
            pass


async def keep(lease: Lease, on_gain: Callable[[], Awaitable[None]], on_loss: Callable[[], Awaitable[None]]) -> None:
    """Hold `lease` whenever possible, forever (cancel to stop; the caller releases): on_gain runs when this node
    becomes the holder, on_loss when it stops being one (lost to another node, or not renewed in time because the
    database is out of reach)."""
    holding = False
    while True:
        try:
            ok = await (lease.renew() if holding else lease.acquire())
            problem = "" if ok or not holding else "another node holds it now"
        except (psycopg.Error, OSError, asyncio.TimeoutError) as exc:
            ok, problem = False, f"database: {exc or type(exc).__name__}"
        if ok and not holding:
            holding = True
            log.info("this node (%s) holds %s (epoch %s)", lease.holder, lease.name, lease.epoch)
            try:
                await on_gain()
            except Exception:  # noqa: BLE001 - a node that cannot host gives the lease to one that can
                log.exception("this node (%s) could not take up %s; releasing it", lease.holder, lease.name)
                holding = False
                await on_loss()
                await lease.release()
        elif holding and not ok and (problem.startswith("another") or not lease.held):
            holding = False
            lease.epoch = None
            log.error("this node (%s) no longer holds %s: %s", lease.holder, lease.name, problem)
            await on_loss()
        elif holding and not ok:
            log.warning("lease %s not renewed (%s); this node stops in %.1f s unless a renewal gets through",
                        lease.name, problem, lease.valid_until - time.monotonic())
        wait = lease.heartbeat_s
        if holding:  # wake up in time to stop before the lease runs out
            wait = max(0.05, min(wait, lease.valid_until - time.monotonic()))
        await asyncio.sleep(wait)
