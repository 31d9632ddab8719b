"""Barge-in: how fast the reply stops once the user starts talking over it.

Each trial asks a text question that makes a long spoken answer, waits until ~1 s of reply audio has arrived, then
streams a real speech phrase in real time (the microphone streams silence the rest of the time). Timed from the
send of the chunk holding the phrase's first voiced sample: speech_started, the last reply audio delta, and
response.done (cancelled). The server needs vad.min_speech_ms (96 ms) of voiced audio before it calls it speech;
that wait is part of the numbers. The reply the user's phrase then starts is left to finish before the next trial.

    python bench/barge_in.py                        # starts `livehost serve` on a free port
    python bench/barge_in.py --url http://127.0.0.1:8000 --trials 20 --write
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

import websockets

from common import wait_for_quiet, all_phrases, load_avg, machine, ms, stats, table, write_section
from rt import CpuMeter, Events, Mic, Server, audio_seconds, metric_means

QUESTIONS = [
    "Tell me a long story about a dragon who learns to bake bread.",
    "Describe the ocean in many sentences.",
    "Tell me everything you know about the history of trains.",
    "Tell me a long story about a lighthouse keeper and a lost cat.",
    "Explain in detail how a garden changes through the four seasons.",
]
STORYTELLER = "You are a storyteller. Answer with long, detailed spoken stories of many sentences."


async def one_trial(ws, mic: Mic, events: Events, question: str, phrase, args) -> dict:
    events.drain()
    await ws.send(json.dumps({"type": "conversation.item.create", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": question}]}}))
    await ws.send(json.dumps({"type": "response.create", "response": {
        "instructions": STORYTELLER, "max_output_tokens": args.max_tokens}}))
    received, first_audio, marks = 0.0, None, None
    trial = {"phrase": phrase.name, "started": None, "last_audio": None, "done": None, "status": None,
             "reason": None, "unplayed": None, "audio_after_onset": 0.0}
    while True:  # until the barged-in reply is done
        t, ev = await events.next(args.timeout)
        kind = ev["type"]
        if kind == "response.output_audio.delta":
            first_audio = first_audio or t
            received += audio_seconds(ev["delta"])
            if marks and marks["onset"].done():
                trial["audio_after_onset"] += audio_seconds(ev["delta"])
            trial["last_audio"] = t
            if marks is None and received >= args.after:
                marks = mic.say(phrase)  # the user talks over the reply
        elif kind == "input_audio_buffer.speech_started" and marks and trial["started"] is None:
            trial["started"] = t
        elif kind == "response.done":
            trial["done"], trial["status"] = t, ev["response"]["status"]
            trial["reason"] = (ev["response"].get("status_details") or {}).get("reason")
            break
    if marks is None or trial["status"] == "completed":
        trial["status"] = "too short"  # the answer ended on its own, before the server heard the user: no barge-in
    if marks is None:
        return trial
    onset = await marks["onset"]
    trial["unplayed"] = received - (trial["last_audio"] - first_audio)  # a client that never flushes plays this
    for key in ("started", "last_audio", "done"):
        trial[key] = trial[key] - onset if trial[key] is not None else None
    # The user's phrase is a turn of its own: let the reply it starts finish, so the next trial begins quiet.
    await marks["done"]
    try:
        created = False
        while True:
            _, ev = await events.next(args.timeout if created else args.settle)
            if ev["type"] == "response.created":
                created = True
                if args.cancel_followup:
                    await ws.send(json.dumps({"type": "response.cancel"}))
            elif ev["type"] == "response.done":
                break
    except asyncio.TimeoutError:
        pass  # nothing more came: the phrase was heard as empty, or no reply was made
    return trial


async def drive(server: Server, args) -> dict:
    phrases = [p for p in all_phrases() if p.voiced_s >= 0.5]
    out = {"trials": []}
    before = server.metrics()
    async with websockets.connect(server.ws_url, max_size=None, subprotocols=["realtime"]) as ws:
        events, mic = Events(ws), Mic(ws, args.chunk_ms)
        await events.until("session.created", 30)
        await ws.send(json.dumps({"type": "session.update", "session": {
            "type": "realtime", "max_output_tokens": args.max_tokens}}))  # older servers ignored response.create's
        await events.until("session.updated", 30)
        mic.start()
        cpu = CpuMeter([server.pid, os.getpid()])
        await asyncio.sleep(1.0)
        i = 0
        while len([t for t in out["trials"] if t["status"] != "too short"]) < args.trials and i < 3 * args.trials:
            if args.pause_busy:  # measure while the machine's other jobs are quiet, when they are
                await cpu.until_quiet(args.pause_busy, args.pause_max)
            cpu.lap()
            trial = await one_trial(ws, mic, events, QUESTIONS[i % len(QUESTIONS)], phrases[i % len(phrases)], args)
            trial["others"] = cpu.lap()
            out["trials"].append(trial)
            print(f"trial {i:2d} {trial['phrase']:10} {trial['status']} ({trial['reason']}): speech_started "
                  f"{ms(trial['started'] or float('nan'))} ms, last audio {ms(trial['last_audio'] or float('nan'))} "
                  f"ms, response.done {ms(trial['done'] or float('nan'))} ms, others {trial['others']:.2f} cores", flush=True)
            i += 1
            await asyncio.sleep(args.gap)
            if len(out["trials"]) > 40 and len(out["trials"]) > 3 * args.trials:
                break
        out["cpu"], out["errors"] = cpu.report(), [e.get("code") for e in events.errors]
        mic.task.cancel()
    out["metrics"] = metric_means(before, server.metrics())
    return out


def report(out: dict, args, server: Server, load_before: str, facts: str) -> str:
    trials = [t for t in out["trials"] if t["status"] != "too short"]
    ok = [t for t in trials if t["status"] == "cancelled" and t["reason"] == "turn_detected"]
    rows = []
    for label, key in [("speech_started received", "started"), ("**last response.output_audio.delta received**",
                       "last_audio"), ("response.done (cancelled) received", "done")]:
        s = stats([t[key] for t in ok])
        rows.append([label, ms(s["p50"]), ms(s["p95"]), ms(s["max"]), s["n"]])
    after = stats([t["audio_after_onset"] for t in ok])
    unplayed = stats([t["unplayed"] for t in ok])
    rows.append(["reply audio received after the onset (audio ms)", ms(after["p50"]), ms(after["p95"]),
                 ms(after["max"]), after["n"]])
    rows.append(["reply audio still unplayed at the last delta (audio ms)", ms(unplayed["p50"]),
                 ms(unplayed["p95"]), ms(unplayed["max"]), unplayed["n"]])
    server_stop = out["metrics"].get("livehost_barge_in_seconds")
    head = stats([t["last_audio"] for t in ok])
    quiet = stats([t["last_audio"] for t in ok if t["others"] < args.quiet_turn])
    others = stats([t["others"] for t in trials])
    label = f" — {args.label}" if args.label else " — default settings"
    return "\n".join([
        f"### barge_in{label}",
        "",
        f"{facts}. Load average before the run: {load_before}; after: {load_avg()}. During the run: {out['cpu']}.",
        f"Server: {'started by the bench' if server.proc else server.url}"
        + (f", models loaded in {server.load_s:.1f} s" if server.load_s else "")
        + (f", extra environment `{' '.join(f'{k}={v}' for k, v in server.env.items())}`" if server.env else "")
        + f". {len(trials)} trials ({len(ok)} cancelled by turn_detected; "
        f"{len(out['trials']) - len(trials)} answers too short to interrupt), max_output_tokens {args.max_tokens}, "
        f"{args.chunk_ms} ms appends, the user starts after {args.after:g} s of reply audio has arrived.",
        "",
        f"**User speech onset -> last reply audio byte received: p50 {ms(head['p50'])} ms, p95 {ms(head['p95'])} ms, "
        f"max {ms(head['max'])} ms** (target <= 150 ms; includes the 96 ms of voiced audio the VAD needs). "
        f"Other jobs used {others['p50']:.2f} cores in the median trial (max {others['max']:.2f}); over the "
        f"{quiet['n']} trials where they used < {args.quiet_turn:g} core: p50 {ms(quiet['p50'])} ms, "
        f"p95 {ms(quiet['p95'])} ms, max {ms(quiet['max'])} ms.",
        "",
        "ms from the send of the chunk holding the phrase's first voiced sample:",
        "",
        table(["event", "p50", "p95", "max", "n"], rows),
        "",
        f"Server error events: {', '.join(out['errors']) or 'none'}. "
        f"Server's own livehost_barge_in_seconds (cancel -> reply fully stopped): "
        + (f"mean {ms(server_stop[0])} ms over {server_stop[1]} cancels." if server_stop else "n/a."),
    ])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", help="use a running server (http://HOST:PORT) instead of starting one")
    ap.add_argument("--pid", type=int, help="with --url: the server's process id, for CPU accounting")
    ap.add_argument("--trials", type=int, default=24, help="trials that reach the barge-in (default 24)")
    ap.add_argument("--after", type=float, default=1.0, help="seconds of reply audio received before the user talks")
    ap.add_argument("--max-tokens", type=int, default=200, help="max_output_tokens of the long answer")
    ap.add_argument("--gap", type=float, default=0.5, help="seconds of silence between trials")
    ap.add_argument("--settle", type=float, default=6.0,
                    help="seconds to wait for the reply the user's phrase triggers (it is cancelled)")
    ap.add_argument("--cancel-followup", action="store_true",
                    help="cancel the reply the user's phrase starts (response.cancel) instead of letting it finish")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for any event before giving up")
    ap.add_argument("--chunk-ms", type=int, default=100, help="audio per append, sent every as many ms (default 100)")
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                    help="extra environment for the started server, e.g. LIVEHOST_LLM__THREADS=1")
    ap.add_argument("--pause-busy", type=float, default=0.3, metavar="CORES",
                    help="before each trial, wait (up to --pause-max, the microphone streaming silence) until other jobs use "
                         "fewer cores than this (default 0.3; 0: never wait)")
    ap.add_argument("--pause-max", type=float, default=90.0, metavar="S", help="longest such wait (default 90 s)")
    ap.add_argument("--quiet-turn", type=float, default=0.25, metavar="CORES",
                    help="also report the trials during which other jobs used fewer cores than this (default 0.25)")
    ap.add_argument("--label", help="names this configuration (and its own RESULTS.md section)")
    ap.add_argument("--quiet", type=float, metavar="CORES",
                    help="first wait (up to 15 min) until the machine uses fewer than CORES cores, e.g. 0.3")
    ap.add_argument("--write", action="store_true", help="replace this script's section in bench/RESULTS.md")
    ap.add_argument("--json", help="also save every trial's timings to this file")
    args = ap.parse_args()
    if args.quiet:
        wait_for_quiet(args.quiet)
    load_before, facts = load_avg(), machine()  # the code the server loads is the code of now
    with Server(args.url, dict(kv.split("=", 1) for kv in args.env), args.pid) as server:
        out = asyncio.run(drive(server, args))
    text = report(out, args, server, load_before, facts)
    print("\n" + text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    if args.write:
        write_section("barge_in" + (f"-{args.label}" if args.label else ""), text)


if __name__ == "__main__":
    sys.exit(main())
