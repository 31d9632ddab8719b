"""The drawn avatar on this CPU: render time per frame, video encode time per frame, and how many sessions fit.

- Render: ms per frame (p50/p95) for each built-in avatar at 256x256 and 512x512, 25 fps through real Piper
  speech (phoneme tracks, blinks, an emotion change), head cache cold at the start as in a new session.
- Encode at 256x256: RGBA -> yuv420p conversion plus H.264 (libx264, ultrafast, zerolatency, 1 thread) and VP8
  (libvpx, realtime, cpu-used 8, 1 thread), ms per frame.
- Sessions: the estimate cores x 40 ms / (render + encode), then measured: N workers (threads in one process,
  as the server would run them, or processes) each render and encode 25 fps for --seconds; the largest N where
  every worker kept 25 fps is reported: >= 98% of its frames made in time, and 95% of them no later than 100 ms
  after their due time (what a WebRTC receiver's jitter buffer absorbs); a count that fails is run once more
  (--tries), since other work on a shared machine can spoil one run.

    python bench/avatar.py [--write] [--seconds 10] [--sessions 1,2,3,4,5,6,8,12] [--quiet 0.3]
"""
from __future__ import annotations

import argparse
import os
from fractions import Fraction
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from common import load_avg, machine, stats, table, wait_for_quiet, write_section

FPS = 25
TEXT = ("Hello there, and welcome to the show! I'm your host for this evening. Tonight we have a great "
        "lineup: music, a little science, and a very surprising guest. Please stay with us.")
CODECS = {"h264": ("libx264", {"preset": "ultrafast", "tune": "zerolatency"}),
          "vp8": ("libvpx", {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"})}


def speech_tracks():
    """Real Piper phoneme tracks on one timeline (ms), and its length."""
    from livehost.avatar.visemes import VisemeTrack
    from livehost.speech.tts import TTS
    tracks, offset = [], 0.0
    for chunk in TTS.create("piper").synthesize(TEXT):
        tracks.append(VisemeTrack.from_chunk(chunk, offset_ms=offset))
        offset += chunk.duration_s * 1000
    return tracks, offset


def make_avatar(name: str, side: int, tracks):
    from livehost.avatar.renderer import AVATARS
    av = AVATARS.create(name, size=(side, side))
    av.set_mode("speaking", at_ms=0)
    for tr in tracks:
        av.push(tr)
    av.set_emotion("happy", at_ms=3000)
    return av


def make_encoder(codec: str, side: int):
    import av
    name, options = CODECS[codec]
    ctx = av.CodecContext.create(name, "w")
    ctx.width = ctx.height = side
    ctx.pix_fmt = "yuv420p"
    ctx.time_base = Fraction(1, FPS)
    ctx.framerate = FPS
    ctx.bit_rate = 400_000
    ctx.thread_count = 1  # one core per session at most; sessions share the machine
    ctx.options = dict(options)
    ctx.open()
    return ctx


def encode(ctx, rgba: np.ndarray, pts: int) -> int:
    import av
    frame = av.VideoFrame.from_ndarray(rgba, format="rgba").reformat(format="yuv420p")
    frame.pts = pts
    return sum(p.size for p in ctx.encode(frame))


def bench_render(tracks, length_ms: float) -> tuple[str, dict]:
    rows, mean = [], {}
    for name in ("lumi", "pip"):
        for side in (256, 512):
            t0 = time.perf_counter()
            av = make_avatar(name, side, tracks)
            load = time.perf_counter() - t0
            took = []
            for i in range(int(length_ms / 1000 * FPS)):
                t0 = time.perf_counter()
                av.render(i * 1000 / FPS)
                took.append(time.perf_counter() - t0)
            s = stats(took)
            mean[(name, side)] = s["mean"]
            rows.append([name, f"{side}x{side}", s["n"], f"{1000 * s['p50']:.2f}", f"{1000 * s['p95']:.2f}",
                         f"{1000 * s['max']:.1f}", f"{load:.2f}"])
    return table(["avatar", "size", "frames", "p50 ms", "p95 ms", "max ms", "first load s"], rows), mean


def bench_encode(tracks, length_ms: float) -> tuple[str, dict]:
    av = make_avatar("lumi", 256, tracks)
    frames = [av.render(i * 1000 / FPS) for i in range(int(length_ms / 1000 * FPS))]
    rows, mean = [], {}
    conv = []
    import av as pyav
    for f in frames:
        t0 = time.perf_counter()
        pyav.VideoFrame.from_ndarray(f, format="rgba").reformat(format="yuv420p")
        conv.append(time.perf_counter() - t0)
    s = stats(conv)
    rows.append(["RGBA -> yuv420p (swscale)", s["n"], f"{1000 * s['p50']:.2f}", f"{1000 * s['p95']:.2f}", ""])
    for codec in CODECS:
        ctx, took, size = make_encoder(codec, 256), [], 0
        for i, f in enumerate(frames):
            t0 = time.perf_counter()
            size += encode(ctx, f, i)
            took.append(time.perf_counter() - t0)
        s = stats(took)
        mean[codec] = s["mean"]
        kbps = size * 8 / (len(frames) / FPS) / 1000
        rows.append([f"{codec} ({CODECS[codec][0]}) incl. conversion", s["n"], f"{1000 * s['p50']:.2f}",
                     f"{1000 * s['p95']:.2f}", f"{kbps:.0f}"])
    return table(["256x256 lumi, 25 fps", "frames", "p50 ms", "p95 ms", "kbit/s"], rows), mean


def session(codec: str, seconds: float, start_at: float, tracks, length_ms: float) -> dict:
    """One session: render + encode each frame at its due time; returns frames made and lateness."""
    av = make_avatar("lumi", 256, tracks)
    ctx = make_encoder(codec, 256)
    n = int(seconds * FPS)
    late = []
    while time.time() < start_at:
        time.sleep(0.001)
    t_start = time.perf_counter()
    done = 0
    for i in range(n):
        due = t_start + i / FPS
        wait = due - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        encode(ctx, av.render((i * 1000 / FPS) % length_ms), i)
        done += 1
        late.append(time.perf_counter() - due)
        if time.perf_counter() - t_start > seconds + 1.0:  # hopelessly behind: stop
            break
    return {"frames": done, "of": n, "late_p95": float(np.percentile(late, 95))}


def _session_proc(args):
    return session(*args)


def run_sessions(n: int, codec: str, seconds: float, mode: str, tracks, length_ms: float) -> list[dict]:
    start_at = time.time() + (2.0 + n if mode == "processes" else 1.0)  # everyone set up before the clock starts
    if mode == "threads":
        results: list[dict] = [None] * n
        def run(k):
            results[k] = session(codec, seconds, start_at, tracks, length_ms)
        threads = [threading.Thread(target=run, args=(k,)) for k in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return results
    with ProcessPoolExecutor(n) as pool:
        return list(pool.map(_session_proc, [(codec, seconds, start_at, tracks, length_ms)] * n))


def bench_sessions(args, tracks, length_ms: float) -> tuple[str, dict]:
    rows, best = [], {}
    for mode, codec in [("threads", "h264"), ("threads", "vp8"), ("processes", "h264")]:
        best[(mode, codec)] = 0
        for n in args.sessions:
            for attempt in range(args.tries):  # other work on a shared machine can spoil one run
                res = run_sessions(n, codec, args.seconds, mode, tracks, length_ms)
                fps = min(r["frames"] for r in res) / args.seconds
                late = max(r["late_p95"] for r in res)
                held = all(r["frames"] >= 0.98 * r["of"] for r in res) and late <= 0.1
                if held:
                    break
            rows.append([mode, codec, n, f"{fps:.1f}", f"{1000 * late:.0f}", "yes" if held else "no"])
            print(rows[-1], flush=True)
            if held:
                best[(mode, codec)] = n
            else:
                break  # more sessions only fall further behind
    return table(["workers", "codec", "sessions", "worst fps", "worst p95 lateness ms", "held 25 fps"], rows), best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each concurrency run (default 10)")
    ap.add_argument("--sessions", type=lambda v: [int(x) for x in v.split(",")],
                    default=[1, 2, 3, 4, 5, 6, 8, 12, 16, 24, 32],
                    help="session counts to try, in order, until one fails (default 1-6, then 8 12 16 24 32)")
    ap.add_argument("--tries", type=int, default=2, help="runs of one session count before it counts as failed")
    ap.add_argument("--skip-sessions", action="store_true", help="only the per-frame timings")
    ap.add_argument("--quiet", type=float, metavar="CORES",
                    help="first wait (up to 15 min) until the machine uses fewer than CORES cores, e.g. 0.3")
    ap.add_argument("--write", action="store_true", help="replace this script's section in bench/RESULTS.md")
    args = ap.parse_args()
    if args.quiet:
        wait_for_quiet(args.quiet)
    load_before = load_avg()
    tracks, length_ms = speech_tracks()
    render_table, render_mean = bench_render(tracks, length_ms)
    print(render_table, flush=True)
    encode_table, encode_mean = bench_encode(tracks, length_ms)
    print(encode_table, flush=True)
    cores = os.cpu_count() or 1
    est = {c: cores * (1000 / FPS) / (1000 * (render_mean[("lumi", 256)] + encode_mean[c])) for c in CODECS}
    parts = ["### avatar (2D sprite renderer + video encode)", "",
             f"{machine()}. Load average before: {load_before}.", "",
             f"Render, {length_ms / 1000:.1f} s of Piper speech at {FPS} fps (head cache cold at the start):", "",
             render_table, "", "Encode:", "", encode_table, "",
             "Estimate at 256x256 (cores x 40 ms / (lumi render mean + encode mean), nothing else running): "
             + ", ".join(f"{c}: {v:.0f} sessions" for c, v in est.items()) + "."]
    if not args.skip_sessions:
        sessions_table, best = bench_sessions(args, tracks, length_ms)
        parts += ["", f"Measured: N sessions, each rendering lumi 256x256 and encoding at {FPS} fps for "
                      f"{args.seconds:.0f} s:", "", sessions_table, "",
                  "Largest N that held 25 fps: " + ", ".join(f"{m} {c}: {n}" for (m, c), n in best.items()) + "."]
    parts.append(f"\nLoad average after: {load_avg()}.")
    text = "\n".join(parts)
    print(text)
    if args.write:
        write_section("avatar", text)


if __name__ == "__main__":
    sys.exit(main())
