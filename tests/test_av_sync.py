"""Lips and voice on one clock: a recorded WebRTC session's tracks (the real Speaker and AvatarVideo, paced in
real time) show mouth-open frames where the audio is voiced, within 40 ms."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest

from livehost.avatar.renderer import AVATARS
from livehost.avatar.stage import AvatarStage
from livehost.avatar.visemes import VisemeTrack
from livehost.server.webrtc import RATE, AvatarVideo, Speaker
from livehost.speech.audio import resample
from livehost.speech.tts import TTS

pytestmark = pytest.mark.e2e


async def test_mouth_follows_voice_within_40_ms():
    speaker = Speaker()
    stage = AvatarStage(AVATARS.create("lumi", idle_motion=False, blink=False), lambda: speaker.clock_ms)
    video = AvatarVideo(stage)
    chunks = list(TTS.shared("piper").synthesize("Hello there. Papa made a big map of the bay."))
    audio_at: list[tuple[float, np.ndarray]] = []
    mouth_at: list[tuple[float, bool]] = []

    async def record_audio():
        while len(audio_at) < 250:  # 5 s of 20 ms frames
            frame = await speaker.recv()
            audio_at.append((1000 * frame.pts / RATE, frame.to_ndarray().reshape(-1)))

    async def record_video():
        while len(mouth_at) < 150:  # 5 s at 30 fps
            frame = await video.recv()
            mouth_at.append((1000 * float(frame.pts * frame.time_base), stage.renderer.last_layers["viseme"]
                             not in ("sil", "PP")))

    async def speak():  # what Reply does: begin, then for each chunk its track and its audio
        await asyncio.sleep(0.5)
        stage.begin()
        position = 0.0
        for chunk in chunks:
            stage.push(VisemeTrack.from_chunk(chunk).shifted(position))
            pcm = resample(chunk.audio, chunk.sample_rate, RATE)
            speaker.write(pcm)
            position += 1000 * len(pcm) / RATE

    await asyncio.gather(record_audio(), record_video(), speak())
    speaker.stop()
    video.stop()
    # both tracks on a 10 ms grid over the same media timeline; the video clock starts with the audio clock
    grid = np.arange(0, 4800, 10.0)
    rms = np.array([np.sqrt(np.mean(a.astype(np.float32) ** 2)) for _, a in audio_at])
    loudness = np.interp(grid, [t + 10 for t, _ in audio_at], rms)  # a 20 ms frame's loudness at its middle
    video_t = np.array([t for t, _ in mouth_at]) - mouth_at[0][0] + audio_at[0][0]
    mouth = np.interp(grid, video_t, [float(m) for _, m in mouth_at])
    assert (loudness > loudness.max() * 0.15).sum() > 100 and (mouth > 0.5).sum() > 50
    lags = range(-20, 21)  # -200..200 ms
    fit = [np.corrcoef(np.roll(mouth, lag), loudness)[0, 1] for lag in lags]
    best = list(lags)[int(np.argmax(fit))] * 10
    print(f"A/V offset {best} ms (correlation {max(fit):.2f})")
    assert abs(best) <= 40, f"mouth and voice are {best} ms apart"
    assert max(fit) > 0.5
