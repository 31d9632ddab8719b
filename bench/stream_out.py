"""Stream out cost: ProgramOut (avatar + captions) into RtmpPublisher, in real time, at 256 and 512 px.

Per size: the CPU the host process spends (drawing frames, feeding the encoder) and the encoder process's CPU,
per second of stream (a real-time factor: 0.10 = a tenth of one core), and frames dropped or skipped. The output
goes to a local FLV file by default (the same code as RTMP), or to the URL given; prints only.

    python bench/stream_out.py [--seconds 8] [--sizes 256 512] [--url rtmp://127.0.0.1:1935/live/bench]
"""
from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import numpy as np

from common import load_avg, machine, table, write_section
from livehost.avatar.stage import AvatarStage
from livehost.avatar.visemes import VisemeTrack
from livehost.persona.character import BUILTIN_DIR, CharacterLibrary
from livehost.server.livestream.program import ProgramOut
from livehost.server.livestream.rtmp import RtmpPublisher

RATE = 48000


def voice(seconds: float) -> np.ndarray:
    """A syllable-like tone (4 Hz loudness bursts) so the mouth keeps moving, as in speech."""
    t = np.arange(int(seconds * RATE)) / RATE
    return (np.sin(2 * np.pi * 180 * t) * np.clip(np.sin(2 * np.pi * 4 * t), 0, 1) * 9000).astype(np.int16)


async def run(size: int, seconds: float, url: str) -> dict:
    program = ProgramOut(rate=RATE, size=size, caption=True)
    program.stage = AvatarStage.for_character(CharacterLibrary([BUILTIN_DIR]).get("lumi"), program.clock_ms,
                                              size=size)
    publisher = RtmpPublisher(url, rate=RATE, size=program.size)
    if not await asyncio.to_thread(publisher.wait_connected, 15):
        raise SystemExit(publisher.error)
    speech = voice(seconds)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    task = asyncio.create_task(program.run([publisher]))
    program.stage.begin(program.queued_ms)
    program.stage.push(VisemeTrack.from_audio(speech, RATE))
    program.write(speech)
    for i in range(int(seconds)):  # a new caption each second, as a live caption grows
        program.set_caption(f"Caption line {i}: the host keeps talking while the chat scrolls by")
        await asyncio.sleep(1.0)
    await asyncio.sleep(seconds - int(seconds))
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    wall, host_cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    await asyncio.to_thread(publisher.close)
    stream_s = publisher.audio_frames * 0.020
    return {"size": size, "stream_s": stream_s, "wall_s": wall, "host_rtf": host_cpu / stream_s,
            "encoder_rtf": publisher.encode_cpu_s / stream_s,
            "render_ms": 1000 * program.render_s / max(1, program.video_frames),
            "encode_ms": publisher.encode_ms_per_frame, "dropped": publisher.dropped_video,
            "skipped": program.skipped_video, "error": publisher.error}


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--url", help="where to stream (default: a temporary .flv file)")
    ap.add_argument("--write", action="store_true", help="write the section 'stream_out' of RESULTS.md")
    args = ap.parse_args()
    before = load_avg()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            r = await run(size, args.seconds, args.url or str(Path(tmp) / f"bench{size}.flv"))
            rows.append([r["size"], f"{r['stream_s']:.1f}", f"{r['host_rtf']:.3f}", f"{r['encoder_rtf']:.3f}",
                         f"{r['host_rtf'] + r['encoder_rtf']:.3f}", f"{r['render_ms']:.1f}", f"{r['encode_ms']:.1f}",
                         r["dropped"], r["skipped"]] + ([f"ERROR {r['error']}"] if r["error"] else []))
    text = "\n".join([
        "### stream_out — program out into the RTMP encoder (avatar, captions, H.264 + AAC)", "",
        f"{machine()}. Load average before: {before}; after: {load_avg()}. Lumi at 25 fps, captions on, "
        f"{args.seconds:.0f} s per size into a local .flv (the same encoder path as RTMP).", "",
        table(["size px", "stream s", "host CPU per s", "encoder CPU per s", "total cores", "render ms/frame",
               "encode ms/frame", "video dropped", "video skipped"], rows)])
    print(text)
    if args.write:
        write_section("stream_out", text)


if __name__ == "__main__":
    asyncio.run(main())
