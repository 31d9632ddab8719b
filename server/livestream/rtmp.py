"""Pushes the program out to a live platform over RTMP (or records it to any file or URL FFmpeg can write).

FFmpeg does the work through PyAV: H.264 (libx264, zerolatency) and AAC in FLV, the format every RTMP ingest
takes. The encoder runs in a process of its own (server/livestream/encoder.py says why); one thread here feeds it
from a queue so the real-time loop never waits. If the encoder or the network falls behind, video frames are
dropped (the viewer holds the last picture), audio never is. A dead or silent server is logged and reported in
`error`: the host goes on, only the stream stops.
"""
from __future__ import annotations

import logging
import os
import queue
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection
from typing import Optional
from urllib.parse import urlsplit

import numpy as np

log = logging.getLogger(__name__)

MAX_VIDEO_BACKLOG = 5  # frames waiting for the encoder; beyond this new video frames are dropped (200 ms at 25 fps)
MAX_AUDIO_BACKLOG_S = 30.0  # audio is never dropped; a backlog this long means the connection is dead


class RtmpPublisher:
    """A ProgramOut sink: `audio()` and `video()` only queue (they never block or raise); `close()` finishes the
    stream. `failed`/`error` tell whether publishing stopped, and why."""

    def __init__(self, url: str, rate: int = 48000, fps: int = 25, size: tuple[int, int] = (256, 256),
                 video_bitrate: int = 800_000, audio_bitrate: int = 96_000, preset: str = "veryfast",
                 format: Optional[str] = None, connect_timeout: float = 10.0):
        """url: rtmp(s)://host/app/key, or a file or URL FFmpeg writes (out.flv, out.mp4, srt://...).
        format: the container; FLV for RTMP and .flv, else FFmpeg guesses it from the name."""
        w, h = size
        if w % 2 or h % 2:
            raise ValueError(f"H.264 in yuv420p needs even frame sizes, got {w}x{h}")
        self.url, self.rate, self.fps, self.size = url, rate, fps, (w, h)
        self.connect_timeout = connect_timeout
        self.error: Optional[str] = None
        self._connected = threading.Event()
        self.dropped_video = 0
        self.video_frames = self.audio_frames = 0  # encoded, as the encoder last reported
        self.encode_cpu_s = 0.0  # the encoder process's CPU time since it connected
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._video_backlog = self._audio_backlog = 0  # frames / samples queued here
        self._lock = threading.Lock()
        self._closing = False
        self._finished = False  # the encoder said "done": the stream was flushed and closed
        fmt = format or ("flv" if url.startswith("rtmp") or url.endswith(".flv") else None)
        self._process, self._to_encoder, self._from_encoder = _start_encoder()
        self._to_encoder.send(dict(url=url, fmt=fmt, rate=rate, fps=fps, size=(w, h), video_bitrate=video_bitrate,
                                   audio_bitrate=audio_bitrate, preset=preset))  # a pipe's 64 KB: never blocks
        self._thread = threading.Thread(target=self._feed, name="rtmp-publisher", daemon=True)
        self._thread.start()

    @property
    def failed(self) -> bool:
        return self.error is not None

    @property
    def connected(self) -> bool:
        return self._connected.is_set() and not self.failed

    def wait_connected(self, timeout: Optional[float] = None) -> bool:
        """Blocks until the server took the stream (or it failed): start the program after this, so the first
        second is not spent filling the queue while the encoder starts (blocking: use `asyncio.to_thread`)."""
        deadline = time.monotonic() + (self.connect_timeout + 5 if timeout is None else timeout)
        while not self._connected.wait(0.05) and not self.failed and self._thread.is_alive():
            if time.monotonic() > deadline:
                break
        return self.connected

    @property
    def where(self) -> str:
        """The URL for logs, without the stream key (a secret that would let anyone stream to the channel)."""
        return _redact(self.url)

    @property
    def encode_ms_per_frame(self) -> float:
        """Encoder CPU per video frame, the audio of that frame's duration included."""
        return 1000 * self.encode_cpu_s / max(1, self.video_frames)

    # --- the sink (called from the event loop: queue and return) ---------------------------------------------
    def audio(self, pcm: np.ndarray, pts_samples: int) -> None:
        if self.error or self._closing:
            return
        with self._lock:
            stalled = self._audio_backlog > MAX_AUDIO_BACKLOG_S * self.rate
            self._audio_backlog += len(pcm)
        if stalled:
            self._fail(f"nothing sent for {MAX_AUDIO_BACKLOG_S:.0f} s (connection stalled)")
            self._process.kill()  # unblocks the feeding thread
            return
        self._queue.put(("a", pts_samples, pcm.copy()))

    def video(self, rgb: np.ndarray, pts_frames: int) -> None:
        if self.error or self._closing:
            return
        with self._lock:
            if self._video_backlog >= MAX_VIDEO_BACKLOG:
                self.dropped_video += 1
                return
            self._video_backlog += 1
        self._queue.put(("v", pts_frames, rgb))

    def close(self, timeout: float = 10.0) -> None:
        """Flushes the encoder and ends the stream (blocking: from async code use `asyncio.to_thread`)."""
        if not self._closing:
            self._closing = True
            self._queue.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("stream to %s did not finish within %.0f s; stopping its encoder", self.where, timeout)
            self._process.kill()
            self._thread.join(1.0)

    # --- the feeding thread ---------------------------------------------------------------------------------
    def _feed(self) -> None:
        try:
            if not self._from_encoder.poll(self.connect_timeout):
                self._fail(f"no answer from the server within {self.connect_timeout:.0f} s")
                return
            if self._receive() != "ready":
                self._fail(f"the encoder process stopped (exit code {self._process.poll()})")
                return
            self._connected.set()
            log.info("streaming to %s (%dx%d @ %d fps)", self.where, *self.size, self.fps)
            while (item := self._queue.get()) is not None and not self.error:
                with self._lock:
                    if item[0] == "v":
                        self._video_backlog -= 1
                    else:
                        self._audio_backlog -= len(item[2])
                self._to_encoder.send(item)
                self._receive()
            if not self.error:
                self._to_encoder.send(None)
                kind = None
                while not self._finished and kind != "eof" and not self.error and self._from_encoder.poll(30):
                    kind = self._receive()
                if self._finished:
                    log.info("stream to %s ended: %d video frames (%d dropped), %d audio frames", self.where,
                             self.video_frames, self.dropped_video, self.audio_frames)
                else:
                    self._fail("the encoder did not finish the stream")
        except (EOFError, OSError):  # the encoder died without a word
            self._receive()
            self._fail(f"the encoder process stopped (exit code {self._process.poll()})")
        finally:
            self._to_encoder.close()  # end of input: an encoder still reading stops by itself
            try:
                self._process.wait(0 if self.error else 5)
            except subprocess.TimeoutExpired:  # failed, or hung on a dead connection: it has nothing left to do
                self._process.kill()
                self._process.wait()
            self._from_encoder.close()

    def _receive(self) -> Optional[str]:
        """Takes in whatever the encoder said; returns the last message's kind ("eof": the encoder is gone)."""
        kind = None
        try:
            while self._from_encoder.poll():
                kind, *rest = self._from_encoder.recv()
                if kind == "error":
                    self._fail(rest[0].replace(self.url, self.where))  # FFmpeg's message repeats the URL
                elif kind in ("stats", "done"):
                    self.video_frames, self.audio_frames, self.encode_cpu_s = rest
                    self._finished = self._finished or kind == "done"
        except (EOFError, OSError):  # also right after "done", when the encoder exits at once: _finished says so
            return "eof"
        return kind

    def _fail(self, why: str) -> None:
        if self.error is None:
            self.error = f"streaming to {self.where} failed: {why}"
            log.error(self.error)


def _start_encoder() -> tuple[subprocess.Popen, Connection, Connection]:
    """The encoder process, its stdin and stdout carrying multiprocessing's framed, pickled messages."""
    to_child, to_child_w = os.pipe()
    from_child_r, from_child = os.pipe()
    try:
        process = subprocess.Popen([sys.executable, "-m", "livehost.server.livestream.encoder"],
                                   stdin=to_child, stdout=from_child)
    finally:
        os.close(to_child)
        os.close(from_child)
    return process, Connection(to_child_w, readable=False), Connection(from_child_r, writable=False)


def _redact(url: str) -> str:
    """rtmp://host/app/STREAM-KEY -> rtmp://host/app/***; files and other URLs as they are."""
    parts = urlsplit(url)
    if not parts.scheme.startswith("rtmp") or parts.path.count("/") < 2:
        return url
    app = parts.path.rsplit("/", 1)[0]
    return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}{app}/***"
