"""/v1/realtime/calls: OpenAI's WebRTC flow on aiortc. The page POSTs an SDP offer and gets the answer; microphone
audio (Opus) feeds the same RealtimeSession as the WebSocket path, the voice goes back as an audio track (and the
avatar as a video track, when one is configured), and Realtime JSON events travel on the data channel `oai-events`.
"""
from __future__ import annotations

import asyncio
import fractions
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Optional

import av
from aiortc import (MediaStreamTrack, RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription,
                    VideoStreamTrack)
from aiortc.mediastreams import MediaStreamError
from fastapi import HTTPException, Request, Response

from livehost.avatar.stage import AvatarStage
from livehost.server import metrics
from livehost.server.limits import Refused
from livehost.server.protocol import new_id
from livehost.server.realtime_ws import encode_event
from livehost.server.session import RealtimeSession
from livehost.server.voice_out import MediaClock
from livehost.speech.audio import AudioFormat

log = logging.getLogger("livehost.webrtc")
RATE = 48000  # WebRTC audio (Opus) runs at 48 kHz
FRAME = RATE // 50  # 20 ms
MEDIA_FORMAT = AudioFormat("audio/pcm", RATE)


class Speaker(MediaClock, MediaStreamTrack):
    """The outbound voice: a media clock (voice_out.py) pulled by aiortc a 20 ms frame at a time, at real time.

    It is also the clock that audio and video share: `clock_ms` is how much audio (voice and silence) has played.
    """
    kind = "audio"

    def __init__(self) -> None:
        MediaStreamTrack.__init__(self)
        MediaClock.__init__(self, RATE, FRAME)
        self._start: Optional[float] = None

    @property
    def clock_ms(self) -> float:
        """Audio played so far on this track: the clock the avatar video renders by."""
        return 1000 * self.pts / RATE

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.perf_counter()
        wait = self._start + self.pts / RATE - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        pts = self.pts
        frame = av.AudioFrame.from_ndarray(self.next_frame().reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = RATE, pts, fractions.Fraction(1, RATE)
        return frame


class AvatarVideo(VideoStreamTrack):
    """The face, drawn for each video frame at the voice's own clock: lips follow what is heard."""

    def __init__(self, stage: AvatarStage):
        super().__init__()
        self.stage = stage

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = av.VideoFrame.from_ndarray(self.stage.frame(), format="rgba")
        frame.pts, frame.time_base = pts, time_base
        return frame


@dataclass
class Call:
    id: str
    pc: RTCPeerConnection
    session: RealtimeSession
    speaker: Speaker
    registry: dict
    tasks: set = field(default_factory=set)
    closed: bool = False
    fingerprint: str = ""  # of the credential that made the call: only it (or an API key) hangs up

    def spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def close(self, why: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.registry.pop(self.id, None)
        log.info("call %s closed: %s", self.id, why)
        others = [t for t in self.tasks if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        await self.session.close()
        self.speaker.stop()
        await self.pc.close()


def _configure_ice(settings: Any) -> RTCConfiguration:
    w = settings.webrtc
    if w.host_addresses:  # aioice has no option for this; livehost's setting replaces its host-address lookup
        import aioice.ice
        aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: list(w.host_addresses)
    servers = [RTCIceServer(urls=url, username=w.ice_username, credential=w.ice_credential) for url in w.ice_servers]
    return RTCConfiguration(iceServers=servers)  # an explicit list: aiortc's default would ask a public STUN server


async def create_call(request: Request) -> Response:
    app = request.app
    settings, engines, calls = app.state.settings, app.state.engines, app.state.calls
    identity = app.state.gate.identify(request.headers)
    if len(calls) >= settings.webrtc.max_calls:
        raise HTTPException(503, f"too many calls ({settings.webrtc.max_calls}); try again later")
    call_id = new_id("rtc")
    calls[call_id] = None  # the slot is taken before the first await: concurrent offers cannot overshoot max_calls
    try:
        guard = app.state.limits.open(identity, request.client.host if request.client else "")
    except Refused as exc:
        calls.pop(call_id, None)
        raise HTTPException(503 if exc.code == "session_limit_reached" else 429, exc.message) from None
    try:
        body = (await _read_offer(request)).decode("utf-8", "replace")
        if not body.lstrip().startswith("v=0"):
            raise HTTPException(400, "the body must be an SDP offer (Content-Type: application/sdp) starting with 'v=0'")
        if "m=audio" not in body or "opus" not in body.lower():
            raise HTTPException(400, "the offer must have an audio section with the Opus codec")
        pc = RTCPeerConnection(_configure_ice(settings))
        speaker = Speaker()
        session = RealtimeSession(engines, settings, "webrtc", model=request.query_params.get("model", "livehost"),
                                  audio_out=speaker, media_format=MEDIA_FORMAT, guard=guard)
    except BaseException:
        calls.pop(call_id, None)
        guard.close()
        raise
    call = Call(call_id, pc, session, speaker, calls, fingerprint=identity.fingerprint)
    try:
        _wire(call)  # before the offer is applied: applying it fires the "track" event
        await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="offer"))
        pc.addTrack(speaker)
        if "m=video" in body:  # the page asked for video: the avatar, on the voice's clock
            session.avatar = AvatarStage.for_settings(session.dialogue.character, lambda: speaker.clock_ms,
                                                      settings.avatar)
            pc.addTrack(AvatarVideo(session.avatar))
        await pc.setLocalDescription(await pc.createAnswer())
    except HTTPException:
        await call.close("rejected")
        raise
    except Exception as exc:  # aiortc raises ValueError and friends on SDP it cannot use
        await call.close(f"bad offer: {exc}")
        raise HTTPException(400, f"cannot use this SDP offer: {exc}") from None
    calls[call.id] = call
    call.spawn(_ice_deadline(call, settings.webrtc.ice_timeout_s))
    session.start()
    log.info("call %s created", call.id)
    return Response(pc.localDescription.sdp, status_code=201, media_type="application/sdp",
                    headers={"Location": f"/v1/realtime/calls/{call.id}"})


def _wire(call: Call) -> None:
    pc, session = call.pc, call.session

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            call.spawn(_pump_microphone(track, session))

    @pc.on("datachannel")
    def on_datachannel(channel) -> None:
        if channel.label != "oai-events":
            return
        inbox: asyncio.Queue = asyncio.Queue(maxsize=256)  # bounded: a flood is dropped, not kept

        def on_message(message) -> None:
            if inbox.full():
                metrics.RATE_LIMITED.labels("events").inc()
            else:
                inbox.put_nowait(message)
        channel.on("message", on_message)
        call.spawn(_read_events(inbox, session))
        call.spawn(_write_events(channel, session))
        call.spawn(_close_when_slow(call))

    @pc.on("connectionstatechange")
    async def on_state() -> None:
        if pc.connectionState in ("failed", "closed"):
            await call.close(f"connection {pc.connectionState}")


async def _pump_microphone(track: MediaStreamTrack, session: RealtimeSession) -> None:
    resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
    try:
        while True:
            frame = await track.recv()
            for mono in resampler.resample(frame):
                await session.feed_audio(mono.to_ndarray().reshape(-1))
    except MediaStreamError:
        return


async def _read_events(inbox: asyncio.Queue, session: RealtimeSession) -> None:
    while True:  # one at a time, in order, like the WebSocket reader
        message = await inbox.get()
        await session.guard.pace()
        await session.handle(message)


async def _write_events(channel, session: RealtimeSession) -> None:
    while channel.readyState == "connecting":
        await asyncio.sleep(0.02)
    while channel.readyState == "open":
        while channel.bufferedAmount > 1 << 20:  # the peer is not reading: events wait in the bounded outbox
            await asyncio.sleep(0.05)
        channel.send(encode_event(await session.outbox.get()))


async def _close_when_slow(call: Call) -> None:
    await call.session.outbox.overflowed.wait()
    await call.close("slow consumer: events were not read in time")


async def _ice_deadline(call: Call, seconds: float) -> None:
    """A peer that never completes ICE must not hold a session forever."""
    await asyncio.sleep(seconds)
    if call.pc.connectionState != "connected":
        await call.close(f"ICE did not complete within {seconds:g} s")


async def _read_offer(request: Request, limit: int = 200_000) -> bytes:
    """The SDP offer, read no further than `limit` bytes (an offer is a few KB)."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(413, f"an SDP offer is at most {limit} bytes")
    return body


async def hangup_call(call_id: str, request: Request) -> dict:
    gate = request.app.state.gate
    call = request.app.state.calls.get(call_id)
    identity = gate.identify(request.headers)
    if call is None:
        raise HTTPException(404, f"no call {call_id!r}")
    if identity.kind != "key" and identity.fingerprint != call.fingerprint:
        raise HTTPException(403, "only the credential that made the call (or an API key) may hang it up")
    await call.close("hung up by the client")
    return {"id": call_id, "status": "closed"}
