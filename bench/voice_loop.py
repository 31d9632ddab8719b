"""End of user speech -> first reply audio, measured by a client that talks to the server like a live microphone.

Real speech (jfk.flac, the English half of multilingual.mp3) is cut into phrases at its pauses. Each turn streams
one phrase in real time (100 ms appends paced by the wall clock), then silence until the reply is done, with the
server's default VAD. Every stage is timed from the moment the chunk holding the last voiced sample was sent.

    python bench/voice_loop.py                      # starts `livehost serve` on a free port
    python bench/voice_loop.py --url http://127.0.0.1:8000 --pid 1234
    python bench/voice_loop.py --env LIVEHOST_VAD__SILENCE_MS=300 --label silence300 --write
    python bench/voice_loop.py --fresh --silence-ms 300   # a new session for every turn, as a web page opens one
    python bench/voice_loop.py --sessions 4               # four users talking at once, each in their own session

--silence-ms / --semantic set the session's turn detection the way a client does (session.update), not the server's
defaults. --fresh connects, sends that session.update, streams --lead seconds of silence, says one phrase, and hangs
up once the reply is done. --sessions N runs N such users at once, each starting a little later than the previous.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

import websockets

from common import wait_for_quiet, all_phrases, load_avg, machine, ms, rss_mib, stats, table, write_section
from rt import CpuMeter, Events, Mic, Server, audio_seconds, metric_means

STAGES = [  # (label, server event whose first arrival in the turn is timed)
    ("endpointing: speech_stopped", "input_audio_buffer.speech_stopped"),
    ("ASR: transcription.completed", "conversation.item.input_audio_transcription.completed"),
    ("response.created", "response.created"),
    ("first output_audio_transcript.delta", "response.output_audio_transcript.delta"),
    ("**first output_audio.delta (headline)**", "response.output_audio.delta"),
]
SERVER_METRICS = ["livehost_endpointing_seconds", "livehost_asr_final_seconds", "livehost_llm_first_token_seconds",
                  "livehost_tts_chunk_seconds", "livehost_tts_first_audio_seconds",
                  "livehost_speech_end_to_first_audio_seconds"]  # in this order, then any others


async def one_turn(mic: Mic, events: Events, phrase, timeout: float) -> dict:
    events.drain()
    marks = mic.say(phrase)
    first: dict[str, float] = {}
    turn = {"phrase": phrase.name, "started": 0, "status": None, "transcript": "", "reply": "", "audio_s": 0.0,
            "events": []}
    while True:
        t, ev = await events.next(timeout)
        kind = ev["type"]
        first.setdefault(kind, t)
        if kind != "response.output_audio.delta":
            turn["events"].append([round(t - marks["end"].result(), 3) if marks["end"].done() else None, kind])
        if kind == "input_audio_buffer.speech_started":
            turn["started"] += 1
        elif kind == "conversation.item.input_audio_transcription.completed":
            turn["transcript"] = ev["transcript"]
        elif kind == "response.output_audio_transcript.delta":
            turn["reply"] += ev["delta"]
        elif kind == "response.output_audio.delta":
            turn["audio_s"] += audio_seconds(ev["delta"])
        elif kind == "response.done":
            turn["status"] = ev["response"]["status"]
            break
        elif kind == "error" and ev["error"].get("code") == "server_busy":  # refused: no reply will come
            turn["status"] = "server_busy"
            break
    end = await marks["end"]
    turn["valid"] = turn["started"] == 1 and turn["status"] == "completed"
    turn["t"] = {kind: first[kind] - end if kind in first else None for _, kind in STAGES}
    return turn


def turn_detection(args) -> dict | None:
    if args.semantic:
        return {"type": "semantic_vad", "eagerness": args.semantic}
    if args.silence_ms:
        return {"type": "server_vad", "silence_duration_ms": args.silence_ms}
    return None


async def connect(server: Server, args):
    """A client's first steps: connect, wait for session.created, set its turn detection, open the microphone."""
    ws = await websockets.connect(server.ws_url, max_size=None, subprotocols=["realtime"])
    events, mic = Events(ws), Mic(ws, args.chunk_ms)
    await events.until("session.created", 30)
    if (td := turn_detection(args)) is not None:
        await ws.send(json.dumps({"type": "session.update", "session": {
            "type": "realtime", "audio": {"input": {"turn_detection": td}}}}))
        await events.until("session.updated", 30)
    mic.start()
    return ws, events, mic


async def user(server: Server, args, phrases, k: int, cpu: CpuMeter, out: dict) -> None:
    """One person talking: args.warmup + args.turns phrases, in one session or (--fresh) a new one per turn."""
    await asyncio.sleep(k * args.stagger)
    ws = events = mic = None
    try:
        for i in range(args.warmup + args.turns):
            phrase = phrases[(i + 5 * k) % len(phrases)]
            if ws is None or args.fresh:
                if ws is not None:
                    mic.task.cancel()
                    out["errors"] += [e.get("code") for e in events.errors]
                    await ws.close()
                ws, events, mic = await connect(server, args)
                await asyncio.sleep(args.lead)  # silence first, like a microphone just opened
            if args.pause_busy and args.sessions == 1:  # measure while the machine's other jobs are quiet
                await cpu.until_quiet(args.pause_busy, args.pause_max)
            if args.sessions == 1:
                cpu.lap()
            try:
                turn = await one_turn(mic, events, phrase, args.timeout)
            except asyncio.TimeoutError:
                turn = {"phrase": phrase.name, "valid": False, "status": "timeout", "t": {}, "transcript": "",
                        "reply": "", "audio_s": 0.0, "started": 0}
            turn["warmup"], turn["user"] = i < args.warmup, k
            turn["others"] = cpu.lap() if args.sessions == 1 else 0.0
            out["turns"].append(turn)
            head = turn["t"].get("response.output_audio.delta")
            print(f"user {k} turn {i:2d}{' (warm-up)' if turn['warmup'] else ''} {phrase.name:10} "
                  f"first audio {ms(head) if head is not None else '-':>5} ms  {turn['status']}  others {turn['others']:.2f} cores  "
                  f"heard {turn['transcript']!r} -> {turn['reply'][:70]!r}", flush=True)
            if not turn["valid"]:
                await asyncio.sleep(3)  # let a split turn or a stray reply settle before the next phrase
            await asyncio.sleep(args.gap)
    finally:
        if ws is not None:
            mic.task.cancel()
            out["errors"] += [e.get("code") for e in events.errors]
            await ws.close()


async def drive(server: Server, args) -> dict:
    phrases = all_phrases()
    out = {"turns": [], "errors": [], "rss_loaded": rss_mib(server.pid) if server.pid else None}
    metrics_before = server.metrics()
    cpu = CpuMeter([server.pid, __import__("os").getpid()])
    await asyncio.gather(*(user(server, args, phrases, k, cpu, out) for k in range(args.sessions)))
    out["cpu"] = cpu.report()
    out["rss_end"] = rss_mib(server.pid) if server.pid else None
    out["metrics"] = metric_means(metrics_before, server.metrics())
    return out


def report(out: dict, args, server: Server, load_before: str, facts: str) -> str:
    turns = [t for t in out["turns"] if not t["warmup"]]
    good = [t for t in turns if t["valid"]]
    rows, previous = [], None
    for label, kind in STAGES:
        s = stats([t["t"][kind] for t in good])
        step = stats([t["t"][kind] - t["t"][previous] for t in good
                      if t["t"][kind] is not None and t["t"][previous] is not None]) if previous else s
        rows.append([label, ms(s["p50"]), ms(s["p95"]), ms(s["mean"]), ms(step["p50"]), s["n"]])
        previous = kind
    names = [n for n in SERVER_METRICS if n in out["metrics"]] + sorted(set(out["metrics"]) - set(SERVER_METRICS))
    server_rows = [[f"`{n}`: {out['metrics'][n][2]}", ms(out["metrics"][n][0]), out["metrics"][n][1]] for n in names
                   if "barge" not in n]
    rss = lambda r: f"{r['VmRSS']:.0f} MiB (peak {r['VmHWM']:.0f} MiB)" if r else "n/a (pass --pid)"
    head = stats([t["t"]["response.output_audio.delta"] for t in good])
    quiet = stats([t["t"]["response.output_audio.delta"] for t in good if t["others"] < args.quiet_turn])
    others = stats([t["others"] for t in turns])
    label = f" — {args.label}" if args.label else " — default settings"
    out["errors"] = [e for e in out["errors"] if e]
    lines = [
        f"### voice_loop{label}",
        "",
        f"{facts}. Load average before the run: {load_before}; after: {load_avg()}. "
        f"During the run: {out['cpu']}.",
        f"Server: {'started by the bench' if server.proc else server.url}"
        + (f", models loaded in {server.load_s:.1f} s" if server.load_s else "")
        + (f", extra environment `{' '.join(f'{k}={v}' for k, v in server.env.items())}`" if server.env else "")
        + f". {len(turns)} measured turns ({len(good)} valid) after {args.warmup} warm-up{' per user' if args.sessions > 1 else ''}, "
        + (f"{args.sessions} users talking at once (each {args.stagger:g} s after the previous), " if args.sessions > 1 else "")
        + ("a new session for every turn (connect, session.update, " f"{args.lead:g} s of silence, the phrase), " if args.fresh else "one session per user, ")
        + f"turn detection {json.dumps(turn_detection(args)) if turn_detection(args) else 'the server default'}, "
        f"phrases cycled from jfk.flac + multilingual.mp3 (English half), {args.chunk_ms} ms appends in real time.",
        "",
        f"**End of user speech -> first reply audio: p50 {ms(head['p50'])} ms, p95 {ms(head['p95'])} ms** "
        f"(target p50 <= 800 ms, p95 <= 1,100 ms). Other jobs used {others['p50']:.2f} cores in the median turn (max "
        f"{others['max']:.2f}); over the {quiet['n']} turns where they used < {args.quiet_turn:g} core: "
        f"p50 {ms(quiet['p50'])} ms, p95 {ms(quiet['p95'])} ms.",
        "",
        "Client side, ms from the send of the chunk holding the last voiced sample (step = p50 of the time since "
        "the row above):",
        "",
        table(["stage (first event of the turn)", "p50", "p95", "mean", "step p50", "n"], rows),
        "",
        "Server side, /metrics histogram means over the run (ms):",
        "",
        table(["histogram", "mean", "count"], server_rows),
        "",
        f"Server error events: {', '.join(out['errors']) or 'none'}. Server RSS after the models loaded: {rss(out['rss_loaded'])}; after all turns: {rss(out['rss_end'])}.",
        "",
        "Per turn, first audio (ms): " + ", ".join(
            (f"({t['status']})" if not t["valid"] else "(no audio)" if t["t"]["response.output_audio.delta"] is None
             else ms(t["t"]["response.output_audio.delta"])) for t in turns) + ".",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", help="use a running server (http://HOST:PORT) instead of starting one")
    ap.add_argument("--pid", type=int, help="with --url: the server's process id, for RSS and CPU")
    ap.add_argument("--turns", type=int, default=24, help="measured turns (default 24)")
    ap.add_argument("--warmup", type=int, default=1, help="turns first run and not counted (default 1)")
    ap.add_argument("--gap", type=float, default=0.5, help="seconds of silence after a reply before the next phrase")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for any event before giving up")
    ap.add_argument("--chunk-ms", type=int, default=100, help="audio per append, sent every as many ms (default 100)")
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                    help="extra environment for the started server, e.g. LIVEHOST_VAD__SILENCE_MS=300")
    ap.add_argument("--pause-busy", type=float, default=0.3, metavar="CORES",
                    help="before each turn, wait (up to --pause-max, the microphone streaming silence) until other jobs use "
                         "fewer cores than this (default 0.3; 0: never wait)")
    ap.add_argument("--pause-max", type=float, default=90.0, metavar="S", help="longest such wait (default 90 s)")
    ap.add_argument("--quiet-turn", type=float, default=0.25, metavar="CORES",
                    help="also report the turns during which other jobs used fewer cores than this (default 0.25)")
    ap.add_argument("--label", help="names this configuration (and its own RESULTS.md section)")
    ap.add_argument("--fresh", action="store_true", help="a new session (WebSocket) for every turn")
    ap.add_argument("--sessions", type=int, default=1, help="users talking at once, each in their own session")
    ap.add_argument("--stagger", type=float, default=0.7, help="seconds between the users' first turns")
    ap.add_argument("--lead", type=float, default=1.0, help="seconds of silence after connecting, before speaking")
    ap.add_argument("--silence-ms", type=int, help="session.update turn_detection server_vad silence_duration_ms")
    ap.add_argument("--semantic", choices=["low", "medium", "high", "auto"],
                    help="session.update turn_detection semantic_vad with this eagerness")
    ap.add_argument("--quiet", type=float, metavar="CORES",
                    help="first wait (up to 15 min) until the machine uses fewer than CORES cores, e.g. 0.3")
    ap.add_argument("--write", action="store_true", help="replace this script's section in bench/RESULTS.md")
    ap.add_argument("--json", help="also save every turn's timings to this file")
    args = ap.parse_args()
    if args.quiet:
        wait_for_quiet(args.quiet)
    env = dict(kv.split("=", 1) for kv in args.env)
    load_before, facts = load_avg(), machine()  # the code the server loads is the code of now
    with Server(args.url, env, args.pid) as server:
        out = asyncio.run(drive(server, args))
    text = report(out, args, server, load_before, facts)
    print("\n" + text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    if args.write:
        write_section("voice_loop" + (f"-{args.label}" if args.label else ""), text)


if __name__ == "__main__":
    sys.exit(main())
