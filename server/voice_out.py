"""The voice-out seam: where a reply's audio goes, what of it was dropped when it was cut, and how much of it was
actually played. "What the user heard" is computed from that, on one path for every transport (`text_until`).

Two implementations:
- `MediaClock`: audio played at real time from a queue, silence in between; the samples played are the clock the
  avatar draws by. WebRTC's speaker track and the livestream's program out are both one of these.
- `DeltaVoice`: Realtime audio deltas (WebSocket, or a data channel without a media track). The client plays
  them, so "not played yet" is the audio sent ahead of real time, within `server.output_lead_ms`; a client that
  knows better says so with `conversation.item.truncate`.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np

from livehost.speech.chunker import is_cjk


class VoiceOut(Protocol):
    rate: int

    def write(self, pcm: np.ndarray) -> None: ...  # int16 mono at `rate`, queued after what was written before

    def clear(self) -> int: ...  # drop what was not played yet; returns how many samples that was

    @property
    def queued_ms(self) -> float: ...  # written but not played yet


async def drained(voice: VoiceOut) -> None:
    """Until everything written has been played (the queue empties at real time)."""
    while (ms := voice.queued_ms) > 0.5:
        await asyncio.sleep(ms / 1000)


class MediaClock:
    """Queued voice, pulled a frame at a time by a real-time consumer (an audio track, the program loop)."""

    def __init__(self, rate: int, frame_samples: int):
        self.rate, self.frame_samples = rate, frame_samples
        self._buffer = np.zeros(0, np.int16)
        self.pts = 0  # samples handed out, voice and silence: the clock

    def write(self, pcm: np.ndarray) -> None:
        self._buffer = np.concatenate([self._buffer, np.asarray(pcm).astype(np.int16, copy=False).reshape(-1)])

    def clear(self) -> int:
        """Barge-in: drop what was not played yet; returns how many samples were dropped."""
        dropped, self._buffer = len(self._buffer), np.zeros(0, np.int16)
        return dropped

    def next_frame(self) -> np.ndarray:
        """The next frame to play: queued voice, padded with silence."""
        chunk, self._buffer = self._buffer[:self.frame_samples], self._buffer[self.frame_samples:]
        if len(chunk) < self.frame_samples:
            chunk = np.pad(chunk, (0, self.frame_samples - len(chunk)))
        self.pts += self.frame_samples
        return chunk

    @property
    def clock_ms(self) -> float:
        return 1000.0 * self.pts / self.rate

    @property
    def queued_ms(self) -> float:
        return 1000.0 * len(self._buffer) / self.rate

    @property
    def speaking(self) -> bool:
        return len(self._buffer) > 0


class DeltaVoice:
    """Audio handed to `send` as it is written; the client plays it at real time from when it arrives."""

    def __init__(self, rate: int, send: Callable[[np.ndarray], None]):
        self.rate, self.send = rate, send
        self._playout_end = 0.0  # perf_counter() at which the client will have played everything sent

    def write(self, pcm: np.ndarray) -> None:
        self.send(pcm)
        self._playout_end = max(self._playout_end, time.perf_counter()) + len(pcm) / self.rate

    def clear(self) -> int:
        """What was sent cannot be taken back: the part still ahead of real time counts as not heard (a client stops
        playing a reply when it interrupts or cancels it)."""
        dropped = int(self.queued_ms * self.rate / 1000)
        self._playout_end = 0.0
        return dropped

    @property
    def queued_ms(self) -> float:
        return max(0.0, 1000 * (self._playout_end - time.perf_counter()))


@dataclass
class Segment:
    """A span of a reply's audio and the words it speaks."""
    start_ms: float
    end_ms: float
    text: str


def spoken_join(before: str, text: str) -> str:
    """What goes between two spoken chunks: a space, but none where Chinese (or Japanese) meets either side,
    which is written without spaces (a clause of the Mandarin voice is a chunk of its own)."""
    return "" if not before or is_cjk(before[-1]) or is_cjk(text[:1]) else " "


def text_until(segments: list[Segment], audio_end_ms: float) -> str:
    """The words spoken up to audio_end_ms; a segment cut midway keeps the share of words (characters, in
    Chinese) that was heard."""
    out = ""
    for seg in segments:
        said = ""
        if audio_end_ms >= seg.end_ms - 0.5:  # sent_ms is a float sum of pieces: never lose a word to rounding
            said = seg.text
        elif audio_end_ms > seg.start_ms:
            share = (audio_end_ms - seg.start_ms) / max(1.0, seg.end_ms - seg.start_ms)
            parts = seg.text.split()
            said = seg.text[: int(len(seg.text) * share)] if any(is_cjk(c) for c in seg.text) else \
                " ".join(parts[: int(len(parts) * share)])
        said = said.strip()
        if said:
            out += spoken_join(out, said) + said
    return out
