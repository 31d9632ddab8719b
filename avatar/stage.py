"""One session's avatar on one clock. Replies speak on their own timeline (ms of reply audio); the stage maps it
onto the media clock that the voice plays on, so lips follow the exact phoneme timings of what is heard.
"""
from __future__ import annotations

import asyncio
import base64
import io
from typing import Any, Callable, Optional

import numpy as np

from livehost.avatar.renderer import AVATARS
from livehost.avatar.visemes import VisemeTrack


ANTICIPATION_MS = 35  # lips shape a sound before it is heard; measured in tests/test_av_sync.py


class AvatarStage:
    def __init__(self, renderer: Any, clock: Callable[[], float]):
        self.renderer, self.clock = renderer, clock  # clock(): ms of audio played so far on this session's voice
        self._offset = 0.0

    @classmethod
    def for_character(cls, character: Any, clock: Callable[[], float], size: int = 256, **options: Any) -> "AvatarStage":
        """options: SpriteAvatar's (transparent, background, idle_motion, blink, seed)."""
        a = character.avatar
        if a.kind == "sprites":
            renderer = AVATARS.create("sprites", folder=str(character.resolve(a.asset)), size=(size, size), **options)
        else:
            renderer = AVATARS.create(a.asset, size=(size, size), **options)
        return cls(renderer, clock)

    @classmethod
    def for_settings(cls, character: Any, clock: Callable[[], float], avatar: Any) -> "AvatarStage":
        """With the server's `avatar` settings (size, idle_motion)."""
        return cls.for_character(character, clock, size=avatar.size, idle_motion=avatar.idle_motion)

    def recast(self, character: Any, avatar: Any) -> None:
        """Another character's face on the same clock (session.update changed the character)."""
        self.renderer = self.for_settings(character, self.clock, avatar).renderer

    def begin(self, starts_in_ms: float = 0.0) -> None:
        """A reply's first audio is about to be queued: its ms 0 plays starts_in_ms from now on the clock."""
        self._offset = self.clock() + starts_in_ms
        self.renderer.set_mode("speaking", at_ms=self._offset)

    def push(self, track: VisemeTrack) -> None:
        self.renderer.push(track.shifted(self._offset - ANTICIPATION_MS))

    def emotion(self, expression: str, at_reply_ms: float) -> None:
        self.renderer.set_emotion(expression, self._offset + at_reply_ms)

    def mode(self, mode: str) -> None:
        self.renderer.set_mode(mode, at_ms=self.clock())

    def clear(self) -> None:
        """Barge-in: every queued mouth shape goes, the face listens at once."""
        self.renderer.clear()

    def frame(self) -> np.ndarray:
        return self.renderer.render(self.clock())


async def stream_frames(current: Callable[[], Optional[AvatarStage]], emit: Callable[..., None], fps: int,
                        fmt: str) -> None:
    """Extension event `livehost.avatar.frame`: {t_ms, format, data (base64 image)} at `fps`, on the session clock
    the reply audio starts on (a client plays audio as it arrives, so frame t_ms lines up with what it hears)."""
    from PIL import Image
    period = 1.0 / fps
    while (stage := current()) is not None:
        t_ms = stage.clock()
        rgba = await asyncio.to_thread(stage.frame)
        buf = io.BytesIO()
        Image.fromarray(rgba).convert("RGB" if fmt == "jpeg" else "RGBA").save(buf, format=fmt.upper(), quality=80)
        emit("livehost.avatar.frame", t_ms=round(t_ms), format=fmt, data=base64.b64encode(buf.getvalue()).decode())
        await asyncio.sleep(max(0.0, period - (stage.clock() - t_ms) / 1000))
