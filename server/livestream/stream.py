"""One running stream, wired together: chat sources -> host -> program out (voice + avatar) -> RTMP.

`livehost stream` builds one with the app (server/app.py starts it in the app's lifespan and closes it on shutdown).
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from livehost.avatar.stage import AvatarStage

from .host import StreamHost
from .program import ProgramOut

log = logging.getLogger("livehost.stream")


def _server(spec: str, default_port: int) -> tuple[str, int]:
    host, _, port = spec.rpartition(":")
    return (host, int(port)) if host and port.isdigit() else (spec, default_port)


class Stream:
    def __init__(self, engines: Any, settings: Any):
        s = settings.stream
        self.engines, self.settings = engines, settings
        self.program = ProgramOut(rate=48000, fps=s.fps, size=s.size, caption=s.captions)
        self.host = StreamHost(engines, settings, self.program)
        self.program.stage = AvatarStage.for_character(self.host.character, self.program.clock_ms, size=s.size,
                                                       idle_motion=settings.avatar.idle_motion)
        self.sinks: list[Any] = []
        self.sources: list[Any] = []
        self._tasks: list[asyncio.Task] = []

    def _make_sinks(self) -> None:
        s = self.settings.stream
        if s.rtmp:
            from .rtmp import RtmpPublisher
            self.sinks.append(RtmpPublisher(s.rtmp, rate=self.program.rate, fps=s.fps, size=(s.size, s.size)))
            log.info("streaming to %s (%d px, %d fps)", s.rtmp, s.size, s.fps)

    def _make_sources(self) -> None:
        s = self.settings.stream
        if s.twitch:
            from .twitch import TwitchChat
            host, port = _server(s.twitch_server, 6697)
            names = (self.host.character.name, self.host.character.id) + ((s.twitch_nick,) if s.twitch_nick else ())
            self.sources.append(TwitchChat(s.twitch, host=host, port=port, tls=port in (443, 6697),
                                           nick=s.twitch_nick, token=s.twitch_token, mention_names=names))
            log.info("reading Twitch chat of #%s on %s:%d", s.twitch, host, port)
        if s.bilibili:
            from .bilibili_client import BilibiliChat
            self.sources.append(BilibiliChat(s.bilibili, key=s.bilibili_key))
            log.info("reading Bilibili danmaku of room %s", s.bilibili)

    async def start(self) -> None:
        self._make_sinks()
        self._make_sources()
        for sink in self.sinks:  # the encoder process connects first, or the stream's first frames are lost
            if not await asyncio.to_thread(sink.wait_connected, 15.0):
                log.error("the stream output %s is not connected: %s", sink.where, sink.error or "no answer yet")
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self.program.run(self.sinks), name="program out"),
                       loop.create_task(self.host.run(), name="stream host")]
        self._tasks += [loop.create_task(self._pump(src), name=f"chat {type(src).__name__}") for src in self.sources]
        if not self.sources:
            log.info("no chat platform configured: feed chat through POST /v1/stream/chat")

    async def _pump(self, source: Any) -> None:
        try:
            await self.host.pump(source)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - one broken chat source must not end the stream
            log.exception("chat source %s stopped", type(source).__name__)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for source in self.sources:
            await source.close()
        for sink in self.sinks:
            await asyncio.to_thread(sink.close)
        await self.host.dialogue.close()

