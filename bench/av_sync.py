"""Avatar on WebRTC's own tracks: A/V offset (mouth vs voice) and barge-in to the last speaking video frame.

Drives the real Speaker (audio track) and AvatarVideo (video track) in real time, as aiortc would pull them, with
Piper speech and its viseme tracks pushed the way a reply does. Per trial: the lag that best lines up the drawn
mouth with the voice's loudness, and, after a cancel halfway through, how long until a frame shows the closed,
listening face.

    python bench/av_sync.py [--trials 10] [--write]
"""
from __future__ import annotations

import argparse
import asyncio
import time

import numpy as np

from common import load_avg, machine, ms, stats, table, write_section
from livehost.avatar.renderer import AVATARS
from livehost.avatar.stage import AvatarStage
from livehost.avatar.visemes import VisemeTrack
from livehost.server.webrtc import RATE, AvatarVideo, Speaker
from livehost.speech.audio import resample
from livehost.speech.tts import TTS

TEXT = "Hello there. Papa made a big map of the bay, and we sailed all morning."


async def trial(chunks, cancel_after_s: float) -> tuple[float, float]:
    speaker = Speaker()
    stage = AvatarStage(AVATARS.create("lumi", idle_motion=False, blink=False), lambda: speaker.clock_ms)
    video = AvatarVideo(stage)
    audio_at, frames, cancelled = [], [], {}

    async def pull_audio():
        while len(audio_at) < 200:
            f = await speaker.recv()
            audio_at.append((1000 * f.pts / RATE, f.to_ndarray().reshape(-1)))

    async def pull_video():
        while len(frames) < 120:
            f = await video.recv()
            layers = stage.renderer.last_layers
            frames.append((time.perf_counter(), 1000 * float(f.pts * f.time_base),
                           layers["viseme"] not in ("sil", "PP")))

    async def speak():
        await asyncio.sleep(0.3)
        stage.begin()
        pos = 0.0
        for c in chunks:
            stage.push(VisemeTrack.from_chunk(c).shifted(pos))
            pcm = resample(c.audio, c.sample_rate, RATE)
            speaker.write(pcm)
            pos += 1000 * len(pcm) / RATE
        await asyncio.sleep(cancel_after_s)
        cancelled["at"] = time.perf_counter()
        speaker.clear()  # what Reply.cancel does: the voice and the face, together
        stage.clear()

    await asyncio.gather(pull_audio(), pull_video(), speak())
    speaker.stop(), video.stop()
    grid = np.arange(0, 3000, 10.0)  # before the cancel
    rms = np.array([np.sqrt(np.mean(a.astype(np.float32) ** 2)) for _, a in audio_at])
    loud = np.interp(grid, [t + 10 for t, _ in audio_at], rms)
    vt = np.array([t for _, t, _ in frames]) - frames[0][1] + audio_at[0][0]
    mouth = np.interp(grid, vt, [float(o) for _, _, o in frames])
    fit = [np.corrcoef(np.roll(mouth, lag), loud)[0, 1] for lag in range(-20, 21)]
    offset = (int(np.argmax(fit)) - 20) * 10
    speaking_after = [w for w, _, o in frames if w >= cancelled["at"] and o]
    last = (max(speaking_after) - cancelled["at"]) * 1000 if speaking_after else 0.0
    return offset, last


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--write", action="store_true", help="replace this script's section of bench/RESULTS.md")
    args = ap.parse_args()
    chunks = list(TTS.shared("piper").synthesize(TEXT))
    before = load_avg()
    offsets, lasts = [], []
    for i in range(args.trials):
        offset, last = await trial(chunks, cancel_after_s=2.0 + 0.1 * i)
        offsets.append(offset), lasts.append(last)
    o, b = stats([abs(x) / 1000 for x in offsets]), stats([x / 1000 for x in lasts])  # stats/ms() take seconds
    body = (f"### av_sync (WebRTC tracks: Speaker + AvatarVideo, lumi 256x256)\n\n{machine()}. Load average before: "
            f"{before}; after: {load_avg()}.\n\n" + table(
                ["measure", "p50", "p95", "max", "n"],
                [["A/V offset, mouth vs voice, absolute ms on a 10 ms grid (target <= 40)", ms(o["p50"]), ms(o["p95"]),
                  ms(o["max"]), len(offsets)],
                 ["barge-in -> last video frame with an open mouth, ms (0: the next frame is closed; target <= 150)", ms(b["p50"]), ms(b["p95"]),
                  ms(b["max"]), len(lasts)]]) + f"\n\nSigned offsets (negative: mouth late): {offsets}\n")
    print(body)
    if args.write:
        write_section("av_sync", body)


if __name__ == "__main__":
    asyncio.run(main())
