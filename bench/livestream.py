"""Livestream host under a steady chat: ingest rate, chat-to-speech latency, the stream's health, memory over time.

Starts `livehost stream --rtmp <temp>.flv` (the same encoder path as a live RTMP push, without a network server),
posts a burst of 200 messages through the ingest endpoint (ingest rate), then keeps a chat going at --rate messages
per second from 60 viewers (questions, mentions, repeats, and a super chat every 30 s) for --minutes. From the
host's event stream it times, for every answered message, post -> its turn starting -> its first audio leaving, and
for the super chats the same (they jump the queue). At the end it checks the recording with ffprobe: duration
against the wall clock and video frames against the frame rate.

    python bench/livestream.py --minutes 3 --write
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import websockets

from common import load_avg, machine, ms, rss_mib, stats, table, wait_for_quiet, write_section
from rt import CpuMeter, Server

WORDS = "music game snack rain song cat coffee night stream art movie book".split()


def message(i: int, viewer: int) -> dict:
    kind = random.random()
    topic = random.choice(WORDS)
    if kind < 0.15:
        text = f"@lumi what is your favourite {topic}?"
    elif kind < 0.5:
        text = f"what do you think about {topic} number {i}?"
    elif kind < 0.6:
        text = "hello lumi!!"  # a repeat many viewers send: collapsed into one
    else:
        text = f"I like {topic} a lot, message {i}"
    return {"platform": "bench", "type": "message", "user": {"id": f"v{viewer}", "name": f"Viewer{viewer}"},
            "text": text, "mention": text.startswith("@")}


async def drive(server: Server, args) -> dict:
    posted: dict[str, float] = {}  # viewer name of a paid message / text -> when posted
    by_text: dict[str, float] = {}
    answers: list[dict] = []
    rss: list[float] = []
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http, \
            websockets.connect(server.url.replace("http", "ws") + "/v1/stream/events", max_size=None) as events:
        async def listen():
            turn = None
            async for raw in events:
                e, now = json.loads(raw), time.perf_counter()
                if e["type"] == "livehost.stream.turn":
                    turn = {"kind": e["kind"], "viewer": e.get("viewer"), "text": e.get("text_in", ""),
                            "priority": e.get("priority"), "turn_at": now}
                elif e["type"] == "response.output_audio.delta" and turn and "audio_at" not in turn:
                    turn["audio_at"] = now
                    answers.append(turn)
        listener = asyncio.create_task(listen())

        burst = [message(i, i % 60) for i in range(200)]
        t = time.perf_counter()
        result = (await http.post("/v1/stream/chat", json=burst)).json()["results"]
        ingest_s = time.perf_counter() - t
        for p in burst:
            by_text.setdefault(p["text"], t)
        started, i = time.perf_counter(), 200
        next_paid = started + 30
        while time.perf_counter() - started < args.minutes * 60:
            await asyncio.sleep(random.expovariate(args.rate))
            now = time.perf_counter()
            if now >= next_paid:
                next_paid += 30
                name = f"Patron{i}"
                payload = {"platform": "bench", "type": "superchat", "user": {"id": name, "name": name},
                           "amount": 5, "currency": "USD", "text": "keep it up!"}
                posted[name] = now
            else:
                payload = message(i, random.randrange(60))
                by_text.setdefault(payload["text"], now)
            await http.post("/v1/stream/chat", json=payload)
            i += 1
            if i % 50 == 0:
                rss.append(rss_mib(server.pid)["VmRSS"])
        state = (await http.get("/v1/stream")).json()
        listener.cancel()
    return {"ingest_s": ingest_s, "burst_outcomes": [r.get("outcome") for r in result], "answers": answers,
            "posted": posted, "by_text": by_text, "rss": rss, "state": state, "posted_n": i}


def report(out: dict, args, server: Server, recording: Path, cpu: str, before: str) -> str:
    chat = [a for a in out["answers"] if a["kind"] == "chat"]
    paid = [a for a in chat if a["priority"] == "paid" and a["viewer"] in out["posted"]]
    waits = [a["audio_at"] - out["by_text"][a["text"]] for a in chat
             if a["priority"] != "paid" and a["text"] in out["by_text"]]
    starts = [a["audio_at"] - a["turn_at"] for a in chat]
    paid_waits = [a["audio_at"] - out["posted"][a["viewer"]] for a in paid]
    probe = json.loads(subprocess.run(["ffprobe", "-v", "error", "-count_packets", "-show_streams", "-show_format",
                                       "-of", "json", str(recording)], capture_output=True, text=True).stdout or "{}")
    video = next((s for s in probe.get("streams", []) if s["codec_type"] == "video"), {})
    duration = float(probe.get("format", {}).get("duration", "nan"))
    frames = int(video.get("nb_read_packets", 0))
    q = out["state"]["queue"]
    rows = [["turn start -> first audio (LLM + TTS)", ms(stats(starts)["p50"]), ms(stats(starts)["p95"]), len(starts)],
            ["super chat posted -> its first audio", ms(stats(paid_waits)["p50"]), ms(stats(paid_waits)["p95"]),
             len(paid_waits)],
            ["any answered message posted -> its first audio (queue wait included)", ms(stats(waits)["p50"]),
             ms(stats(waits)["p95"]), len(waits)]]
    rss = out["rss"]
    return "\n".join([
        "### livestream — `livehost stream`, steady chat",
        "",
        f"{machine()}. Load average before: {before}; after: {load_avg()}. During the run: {cpu}.",
        f"Stream: lumi, {args.size} px at 25 fps to a local .flv (the RTMP encoder path), captions on; chat from 60 "
        f"viewers at {args.rate}/s for {args.minutes} min after a burst of 200, a super chat every 30 s; "
        f"max_tokens {args.max_tokens}.",
        "",
        f"**Ingest:** the burst of 200 in one POST took {ms(out['ingest_s'])} ms "
        f"({200 / out['ingest_s']:.0f} events/s through HTTP + validation + queue).",
        "",
        table(["latency", "p50 ms", "p95 ms", "n"], rows),
        "",
        f"Answers spoken: {out['state']['spoken']}; queue at the end: depth {q['depth']}, received {q['received']}, "
        f"answered {q['answered']}, collapsed {q['collapsed']}, dropped {q['dropped']}.",
        f"Recording: {duration:.1f} s of stream, {frames} video frames ({frames / duration if duration else 0:.2f} fps;"
        f" 25 expected). Server RSS over the run (MiB): first {rss[0] if rss else 0:.0f}, last "
        f"{rss[-1] if rss else 0:.0f}, max {max(rss) if rss else 0:.0f}.",
    ])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--rate", type=float, default=1.0, help="chat messages per second")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--max-tokens", type=int, default=60)
    ap.add_argument("--quiet", type=float, help="first wait until other jobs use fewer cores than this")
    ap.add_argument("--write", action="store_true", help="write the section 'livestream' of RESULTS.md")
    args = ap.parse_args()
    if args.quiet is not None:
        wait_for_quiet(args.quiet)
    random.seed(7)
    before = load_avg()
    recording = Path(tempfile.mkdtemp(prefix="livehost-stream-")) / "stream.flv"
    command = ["stream", "--rtmp", str(recording), "--size", str(args.size), "--idle-after", "20"]
    with Server(command=command, env={"LIVEHOST_LLM__MAX_TOKENS": str(args.max_tokens)}) as server:
        meter = CpuMeter([server.pid])
        out = asyncio.run(drive(server, args))
        cpu = meter.report()
    text = report(out, args, server, recording, cpu, before)
    print(text)
    if args.write:
        write_section("livestream", text)


if __name__ == "__main__":
    main()
