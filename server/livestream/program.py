"""The livestream's "program out": one real-time clock that plays the host's voice and draws its face.

It is a media clock (server/voice_out.py), like `Speaker` in server/webrtc.py: the audio played so far IS the
clock, `clock_ms()` counts every sample handed to the sinks (speech and the silence between), so an `AvatarStage` built on it moves its lips exactly where the
viewer hears the sound. Sinks (an RTMP publisher, a file recorder) receive timestamped raw frames and must not
block: they do their encoding on their own thread.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Optional, Protocol, Sequence

import numpy as np
from PIL import Image, ImageDraw

from livehost.server.voice_out import MediaClock
from livehost.server.livestream.fonts import caption_font

log = logging.getLogger(__name__)

AUDIO_FRAME_MS = 20  # one audio frame per 20 ms, as on the WebRTC voice
MAX_LAG_S = 1.0  # further behind than this (a suspended process), the clock restarts instead of bursting
BACKGROUND = (18, 18, 24)  # the dark frame shown without a stage, and behind transparent avatars


class Sink(Protocol):
    """Where program frames go. Both calls come from the event loop and must return at once."""

    def audio(self, pcm: np.ndarray, pts_samples: int) -> None: ...  # int16 mono, pts in samples at `rate`

    def video(self, rgb: np.ndarray, pts_frames: int) -> None: ...  # (H, W, 3) uint8, pts in frames at `fps`


class ProgramOut(MediaClock):
    """The stream's single clock: queued voice plays out at real time, silence in between, the face at `fps`.

    `stage` (an AvatarStage or None) is set by the caller, built on `clock_ms`; without one a plain dark frame shows.
    """

    def __init__(self, rate: int = 48000, fps: int = 25, size: int | tuple[int, int] = 256, caption: bool = False):
        super().__init__(rate, rate * AUDIO_FRAME_MS // 1000)
        self.fps = fps
        self.size: tuple[int, int] = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        self.caption = caption
        self.stage: Optional[Any] = None
        self._caption_text: Optional[str] = None
        self._band: tuple[Optional[str], Any] = (None, None)  # a caption and its drawing: (top row, colour, alpha)
        self.render_s = 0.0  # time spent drawing frames (the stage and the caption), for the cost report
        self.video_frames = 0
        self.skipped_video = 0  # video frames not drawn because the loop was late (audio never skips)
        self._render_failed = False

    # --- the voice: write(pcm), clear(), queued_ms and speaking come from MediaClock ---------------------------
    def clock_ms(self) -> float:
        """Program audio played so far (speech and silence): the clock the avatar renders by. A method because
        `AvatarStage` takes a callable clock."""
        return 1000.0 * self.pts / self.rate

    # --- the picture -----------------------------------------------------------------------------------------
    def set_caption(self, text: Optional[str]) -> None:
        """The caption burned into the bottom of the picture (when `caption` is on); None or "" removes it."""
        self._caption_text = " ".join(text.split()) if text else None  # drawn by the next frame, off the loop

    def render(self) -> np.ndarray:
        """One RGB frame at the current clock: the stage's face (or a dark frame) with the caption."""
        w, h = self.size
        stage = self.stage
        frame = _fit(_to_rgb(stage.frame()), (w, h)) if stage is not None else _blank((w, h))
        text = self._caption_text
        if self.caption and text:
            if self._band[0] != text:  # drawn once per caption
                self._band = (text, _caption_band(text, self.size))
            top, colour, alpha = self._band[1]  # blended over the band's rows only
            rows = frame[top:].astype(np.float32)
            frame[top:] = (rows * (1 - alpha) + colour).astype(np.uint8)
        return frame

    def _render_safely(self) -> np.ndarray:
        """A broken avatar must not take the stream down: it shows the dark frame (logged once)."""
        try:
            return self.render()
        except Exception:
            if not self._render_failed:
                log.exception("program out: drawing the avatar failed; showing a blank frame")
                self._render_failed = True
            return _blank(self.size)

    # --- the real-time loop ----------------------------------------------------------------------------------
    async def run(self, sinks: Sequence[Sink]) -> None:
        """Plays the program at real time until cancelled: an audio frame every 20 ms, a video frame every 1/fps s.

        Frames are due at absolute times (start + pts), so one late frame is caught up at once instead of
        delaying the rest; video frames that are already overdue are skipped (the viewer holds the last one),
        audio never is. The video frame for time t is drawn after all audio before t, so the clock reads t.
        """
        await asyncio.to_thread(self._render_safely)  # the first frame fills the renderer's caches: not on time
        start = time.perf_counter()
        audio_k = video_n = 0
        a_step, v_step = AUDIO_FRAME_MS / 1000, 1.0 / self.fps
        base_pts = self.pts  # the clock keeps counting across runs; pts handed to sinks start at 0 each run
        while True:
            t_audio, t_video = audio_k * a_step, video_n * v_step
            due = min(t_audio, t_video)
            behind = time.perf_counter() - start - due
            if behind < 0:
                await asyncio.sleep(-behind)
            elif behind > MAX_LAG_S:  # e.g. the process was suspended: jump ahead rather than replay it all
                log.warning("program out fell %.1f s behind real time; resuming from now", behind)
                start += behind
            if t_video <= t_audio:  # ties: the picture first, drawn at exactly its own time on the clock
                now = time.perf_counter() - start
                late_frames = int((now - t_video) / v_step)
                if late_frames >= 1:  # the next one is overdue too: go straight to the latest due frame
                    self.skipped_video += late_frames
                    video_n += late_frames
                    continue
                t0 = time.perf_counter()
                rgb = await asyncio.to_thread(self._render_safely)  # CPU work off the event loop
                self.render_s += time.perf_counter() - t0
                self.video_frames += 1
                for sink in sinks:
                    sink.video(rgb, video_n)
                video_n += 1
            else:
                pts = self.pts - base_pts
                chunk = self.next_frame()
                for sink in sinks:
                    sink.audio(chunk, pts)
                audio_k += 1


def _to_rgb(rgba: np.ndarray) -> np.ndarray:
    """The stage's RGBA as RGB; a transparent avatar is laid over the dark background."""
    if rgba.shape[2] == 3:
        return rgba.copy()  # the caption is drawn in place: never on the renderer's own buffer
    alpha = rgba[..., 3:]
    if alpha.min() == 255:
        return np.ascontiguousarray(rgba[..., :3])
    a = alpha.astype(np.float32) / 255
    return (rgba[..., :3] * a + np.array(BACKGROUND, np.float32) * (1 - a)).astype(np.uint8)


def _blank(size: tuple[int, int]) -> np.ndarray:
    w, h = size
    frame = np.empty((h, w, 3), np.uint8)
    frame[:] = BACKGROUND
    return frame


def _fit(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The face centred on a frame of `size` (scaled down to fit if larger): a square avatar on a wide stream."""
    w, h = size
    if rgb.shape[:2] == (h, w):
        return rgb
    img = Image.fromarray(rgb)
    if img.width > w or img.height > h:
        img.thumbnail((w, h))
    frame = _blank(size)
    x, y = (w - img.width) // 2, (h - img.height) // 2
    frame[y:y + img.height, x:x + img.width] = np.asarray(img)
    return frame


def _caption_band(text: str, size: tuple[int, int]) -> tuple[int, np.ndarray, np.ndarray]:
    """Drawn once per caption: white text on a translucent dark band across the bottom, wrapped to the width,
    showing the last 3 lines (a growing live caption keeps what is being said now in view)."""
    w, h = size
    font = caption_font(max(12, h // 16), text)  # CJK glyphs when the system has a CJK font
    margin = max(4, w // 40)
    lines = _wrap(text, font, w - 2 * margin)[-3:]
    line_h = int(font.size * 1.25)
    band_h = min(h, line_h * len(lines) + 2 * margin)
    band = Image.new("RGBA", (w, band_h), (0, 0, 0, 150))
    draw = ImageDraw.Draw(band)
    for i, line in enumerate(lines):
        x = (w - draw.textlength(line, font=font)) / 2
        draw.text((x, margin + i * line_h), line, font=font, fill=(255, 255, 255, 255))
    rgba = np.asarray(band).astype(np.float32) / 255
    alpha = rgba[..., 3:]
    return h - band_h, rgba[..., :3] * alpha * 255, alpha  # colour premultiplied: frame * (1 - a) + colour


def _wrap(text: str, font: Any, width: float) -> list[str]:
    """Greedy word wrap by measured pixel width; a word wider than the line is cut by characters."""
    lines: list[str] = []
    line = ""
    for word in text.split():
        while font.getlength(word) > width and len(word) > 1:
            cut = max(1, next((i for i in range(len(word), 0, -1) if font.getlength(word[:i]) <= width), 1))
            if line:
                lines.append(line)
                line = ""
            lines.append(word[:cut])
            word = word[cut:]
        candidate = f"{line} {word}" if line else word
        if font.getlength(candidate) <= width:
            line = candidate
        else:
            lines.append(line)
            line = word
    if line:
        lines.append(line)
    return lines
