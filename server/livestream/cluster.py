"""A stream on several nodes: every `livehost stream` node with the same PostgreSQL storage.url and cluster.stream_id
is a candidate; the one holding the lease (server/cluster_lease.py) hosts the stream (chat sources, the host, RTMP
out), the others stand by. Chat POSTed to a standby is relayed to the holder (relay.py). When the holder dies, a
standby takes the lease within cluster.lease_s + cluster.heartbeat_s and starts the stream afresh (the dead host's
queue, pause state and context are gone; memory lives in Postgres).

Without a PostgreSQL storage.url, `make_stream` returns the plain single-node Stream, as before.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Optional

from livehost.server.cluster_lease import Lease, keep

from .relay import ChatRelay
from .stream import Stream

log = logging.getLogger("livehost.stream")


def postgres_url(settings: Any) -> Optional[str]:
    url = getattr(getattr(settings, "storage", None), "url", None)
    return url if isinstance(url, str) and url.startswith(("postgresql://", "postgres://")) else None


def make_stream(engines: Any, settings: Any) -> Any:
    url = postgres_url(settings)
    return LeasedStream(engines, settings, url) if url else Stream(engines, settings)


class LeasedStream:
    """The stream while this node holds its lease; a standby otherwise. `host` is None on a standby."""
    clustered = True

    def __init__(self, engines: Any, settings: Any, url: str):
        c = settings.cluster
        self.engines, self.settings = engines, settings
        self.node_id = c.node_id or default_node_id(settings)
        self.lease = Lease(url, f"stream:{c.stream_id}", self.node_id, c.lease_s, c.heartbeat_s)
        self.relay = ChatRelay(url, c.stream_id, backlog=c.ingest_backlog, max_age_s=c.ingest_max_age_s,
                               poll_s=c.heartbeat_s)
        self.stream: Optional[Stream] = None
        self._keeper: Optional[asyncio.Task] = None
        self._relay_task: Optional[asyncio.Task] = None
        self._starting: Optional[asyncio.Task] = None

    @property
    def host(self) -> Any:
        return self.stream.host if self.stream is not None else None

    async def start(self) -> None:
        self._keeper = asyncio.get_running_loop().create_task(keep(self.lease, self._gain, self._lose),
                                                              name="stream lease")

    async def _gain(self) -> None:
        # started beside the lease keeper, not inside it: the RTMP connection may take longer than a heartbeat
        self._starting = asyncio.get_running_loop().create_task(self._start_stream(), name="stream start")

    async def _start_stream(self) -> None:
        while True:  # the lease is ours: keep trying to host (another node cannot while we hold it)
            stream = Stream(self.engines, self.settings)
            self.stream = stream  # before start(): _lose closes it even half started
            try:
                await stream.start()
                break
            except Exception:  # noqa: BLE001 - logged; tried again after a heartbeat
                log.exception("stream %s did not start on this node; trying again", self.settings.cluster.stream_id)
                self.stream = None
                await stream.close()
                await asyncio.sleep(self.lease.heartbeat_s)
        self._relay_task = asyncio.get_running_loop().create_task(self.relay.serve(stream.host.ingest),
                                                                  name="chat relay")
        log.info("hosting stream %s on this node (%s)", self.settings.cluster.stream_id, self.node_id)

    async def _lose(self) -> None:
        if self._starting is not None:
            self._starting.cancel()
            await asyncio.gather(self._starting, return_exceptions=True)
            self._starting = None
        stream, self.stream = self.stream, None
        if self._relay_task is not None:
            self._relay_task.cancel()
            await asyncio.gather(self._relay_task, return_exceptions=True)
            self._relay_task = None
        if stream is not None:
            await stream.close()
        log.info("stream %s: this node (%s) stands by", self.settings.cluster.stream_id, self.node_id)

    async def standby_state(self) -> dict:
        """What a standby says about the stream: who hosts it, and until when the lease runs."""
        try:
            who = await self.lease.who()
        except Exception as exc:  # noqa: BLE001 - reported, not raised: this is a status call
            return {"role": "standby", "node": self.node_id, "holder": None, "error": f"database: {exc}"}
        return {"role": "standby", "node": self.node_id, **(who or {"holder": None})}

    async def close(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            await asyncio.gather(self._keeper, return_exceptions=True)
        await self._lose()
        await self.lease.release()
        await self.relay.close()


def default_node_id(settings: Any) -> str:
    import os
    import secrets
    import socket
    return f"{socket.gethostname()}:{settings.server.port}:{os.getpid()}:{secrets.token_hex(2)}"
