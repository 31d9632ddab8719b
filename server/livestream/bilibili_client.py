"""Bilibili live danmaku client: the WebSocket loop (connect, auth, heartbeat, reconnect) around the codec in
`bilibili.py`, yielding typed chat events with the same shape as `TwitchChat`.
"""
from __future__ import annotations

import asyncio
import logging
import random
from contextlib import aclosing
from typing import AsyncIterator, Mapping

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from .bilibili import MAX_PACKET, OP_AUTH_REPLY, DanmakuStream, PacketError, auth_packet, decode, heartbeat_packet
from .events import ChatEvent

log = logging.getLogger(__name__)

DEFAULT_URL = "wss://broadcastlv.chat.bilibili.com/sub"


class AuthRefused(ConnectionError):
    """The server answered the auth packet with a non-zero code (e.g. -101: bad or expired `key` token)."""


class BilibiliChat:
    """One live room's danmaku. `async for event in chat.events()` runs until `close()`, reconnecting with backoff.

    `room` must be the real (long) room id; short ids from the room URL resolve through Bilibili's HTTP API.
    Bilibili now expects a `key` token (from its getDanmuInfo HTTP API) and the browser's `buvid` cookie: without
    them the server may still accept the connection but send reduced data (user names masked, uids 0, some
    commands missing). Both are supplied by the user; this client makes no network calls besides the WebSocket.
    `popularity` is the room's heat number from the latest heartbeat reply.
    """

    def __init__(self, room: int | str, *, url: str = DEFAULT_URL, uid: int = 0, key: str | None = None,
                 buvid: str | None = None, heartbeat_s: float = 30.0, reconnect_max_s: float = 30.0,
                 backoff_initial_s: float = 0.5, idle_timeout_s: float | None = None,
                 headers: Mapping[str, str] | None = None):
        try:
            self.room_id = int(room)
        except (TypeError, ValueError):
            raise ValueError(f"bilibili room must be a numeric room id, got {room!r}") from None
        self.url, self.uid, self.key, self.buvid = url, uid, key, buvid
        self.heartbeat_s, self.reconnect_max_s = heartbeat_s, reconnect_max_s
        self.backoff_initial_s = backoff_initial_s
        # the server answers every heartbeat, so two missed replies mean a dead link (half-open TCP never errors)
        self.idle_timeout_s = idle_timeout_s if idle_timeout_s is not None else 2 * heartbeat_s + 10
        self.headers = dict(headers or {})
        self.stream = DanmakuStream(self.room_id)  # one for the client's life: its error count spans reconnects
        self.authenticated = asyncio.Event()      # set while authenticated; tests and health checks wait on it
        self.connects = 0                         # successful authentications, for metrics and tests
        self._closed = asyncio.Event()
        self._ws: ClientConnection | None = None
        self._heartbeat: asyncio.Task | None = None

    @property
    def popularity(self) -> int:
        return self.stream.popularity

    async def close(self) -> None:
        """Stop `events()`: the open connection is closed and the heartbeat task is cancelled and awaited."""
        self._closed.set()
        await self._stop_heartbeat()
        if self._ws is not None:
            await self._ws.close()

    async def events(self) -> AsyncIterator[ChatEvent]:
        delay = self.backoff_initial_s
        while not self._closed.is_set():
            try:
                async with connect(self.url, additional_headers=self.headers or None, max_size=MAX_PACKET,
                                   ping_interval=None,  # liveness comes from Bilibili's own heartbeat replies
                                   ) as ws:
                    self._ws = ws
                    if self._closed.is_set():  # close() came while connecting
                        return
                    await self._authenticate(ws)
                    delay = self.backoff_initial_s  # authenticated: the backoff starts afresh
                    self._heartbeat = asyncio.create_task(self._beat(ws), name=f"bilibili-heartbeat-{self.room_id}")
                    async with aclosing(self._receive(ws)) as received:  # closed at once if the caller stops
                        async for event in received:
                            yield event
            except AuthRefused as e:
                log.error("%s", e)
            except (OSError, asyncio.TimeoutError, ConnectionClosed, InvalidHandshake, PacketError) as e:
                if not self._closed.is_set():
                    log.warning("bilibili room %s: connection lost (%s: %s)", self.room_id, type(e).__name__, e)
            finally:
                self.authenticated.clear()
                await self._stop_heartbeat()
                self._ws = None
            if self._closed.is_set():
                break
            wait = delay * random.uniform(0.8, 1.2)  # jitter: many clients must not reconnect in step
            log.info("bilibili room %s: reconnecting in %.1f s", self.room_id, wait)
            try:  # close() during the wait ends it at once
                await asyncio.wait_for(self._closed.wait(), wait)
            except asyncio.TimeoutError:
                pass
            delay = min(delay * 2, self.reconnect_max_s)

    async def _authenticate(self, ws: ClientConnection) -> None:
        await ws.send(auth_packet(self.room_id, self.uid, self.key, self.buvid))
        try:
            frame = await asyncio.wait_for(ws.recv(), self.idle_timeout_s)  # asyncio.timeout needs 3.11
        except asyncio.TimeoutError:
            raise ConnectionError(f"no auth reply within {self.idle_timeout_s:g} s") from None
        if isinstance(frame, str):
            raise PacketError("auth reply came as a text frame, expected binary")
        packets = decode(frame)
        reply = next((p for p in packets if p.op == OP_AUTH_REPLY), None)
        if reply is None:
            raise PacketError(f"expected the auth reply (op 8), got ops {[p.op for p in packets]}")
        body = reply.json()
        code = body.get("code", 0) if isinstance(body, dict) else body
        if code != 0:
            raise AuthRefused(f"bilibili refused the auth for room {self.room_id}: code {code}"
                              + ("" if self.key else " (no key token given: fetch one from getDanmuInfo)"))
        self.connects += 1
        self.authenticated.set()
        log.info("bilibili room %s: connected to %s", self.room_id, self.url)

    async def _receive(self, ws: ClientConnection) -> AsyncIterator[ChatEvent]:
        while not self._closed.is_set():
            try:
                frame = await asyncio.wait_for(ws.recv(), self.idle_timeout_s)  # recv() is cancellation-safe
            except asyncio.TimeoutError:
                raise ConnectionError(f"no data for {self.idle_timeout_s:g} s (heartbeat replies stopped)") from None
            except ConnectionClosed:
                if self._closed.is_set():
                    return
                raise
            if isinstance(frame, str):  # Bilibili only sends binary frames; skip rather than drop the link
                log.warning("bilibili room %s: skipped a text frame (%d chars)", self.room_id, len(frame))
                continue
            for event in self.stream.feed(frame):  # malformed packets are logged and counted there
                yield event

    async def _beat(self, ws: ClientConnection) -> None:
        try:
            while True:
                await ws.send(heartbeat_packet())
                await asyncio.sleep(self.heartbeat_s)
        except ConnectionClosed:
            pass  # the receive loop sees the same close and reconnects

    async def _stop_heartbeat(self) -> None:
        task, self._heartbeat = self._heartbeat, None
        if task is None:
            return
        task.cancel()
        await asyncio.wait({task})  # wait, not await: never swallow a cancellation aimed at the caller
        if not task.cancelled() and task.exception() is not None:
            log.warning("bilibili room %s: heartbeat failed: %r", self.room_id, task.exception())
