"""Turn-taking: does the server wait while a person pauses mid-thought, and answer soon once they have finished?

Replays real and synthetic speech with pauses inside the thought (bench/turn_speech.py) through the server's own
turn rules, frame by frame: Silero VAD (32 ms frames, the server's hysteresis), then server_vad's Endpointer at
300/500/800 ms of silence, or semantic_vad's SemanticEndpointer at each eagerness, which asks Smart Turn v3.2 (a real
call, timed) after 128 ms of silence; a "complete" ends the turn once the silence has lasted the eagerness's
min_silence_ms. A decision counts from when the model's answer is ready, so its run time is
part of the wait; if speech resumes first, the answer is dropped, as in the server.

    python bench/turns.py            # prints the table
    python bench/turns.py --write    # and replaces its section of RESULTS.md
    python bench/turns.py --grid     # also P(complete) thresholds x max waits, for tuning EAGERNESS

Per setting: false cut-offs (a turn ended before the speaker finished: inside a pause, or at a shorter gap), the
wait from the end of the finished turn's speech (by energy) to the end-of-turn decision (p50/p95), and the model's
CPU time per decision.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load_avg, machine, ms, stats, table, write_section  # noqa: E402
from turn_speech import RATE, SENTENCES, Sample, all_samples  # noqa: E402

from livehost.speech.vad import EAGERNESS, SEMANTIC_GATE_MS, Eagerness, Endpointer, SemanticEndpointer, SileroVAD  # noqa: E402

FRAME, FRAME_S = 512, 0.032
PREFIX_S = 0.3  # the server's default prefix padding: the model hears the turn from 300 ms before its onset


SOURCES = ("jfk", "mit", "piper")


@dataclass
class Run:
    waits: list = None
    cpu: list = None
    cutoffs: dict = None  # per source
    decisions: int = 0
    by_model: int = 0  # finished turns the model ended (the rest waited the full silence)

    def __post_init__(self):
        self.waits, self.cpu, self.cutoffs = [], [], dict.fromkeys(SOURCES, 0)

    def cut(self) -> str:
        return " / ".join(str(self.cutoffs[k]) for k in SOURCES) + f" ({sum(self.cutoffs.values())})"


def vad_probs(audio: np.ndarray) -> list[float]:
    stream = SileroVAD().stream()
    return [stream.probability(audio[i:i + FRAME]) for i in range(0, len(audio) // FRAME * FRAME, FRAME)]


class Judge:
    """Smart Turn calls, cached per (sample, frame): every eagerness asks at the same frames."""

    def __init__(self):
        from livehost.speech.smart_turn import SmartTurn
        self.model = SmartTurn()
        self.model.warmup()
        self.cache: dict[tuple[str, int], tuple[float, float, float]] = {}

    def __call__(self, sample: Sample, start: int, frame: int) -> tuple[float, float, float]:
        key = (sample.name, frame)
        if key not in self.cache:
            audio = sample.audio[max(0, start, (frame + 1) * FRAME - 8 * RATE):(frame + 1) * FRAME]
            wall = time.perf_counter()
            p, cpu = self.model.timed_probability(audio)
            self.cache[key] = (p, time.perf_counter() - wall, cpu)
        return self.cache[key]


def replay(sample: Sample, probs: list[float], ep: Endpointer, judge: Judge | None, run: Run) -> None:
    pending = None  # (ready time, P(complete), pause number)
    pause, start, stops, by_model = 0, 0, [], set()
    for k, prob in enumerate(probs):
        t = (k + 1) * FRAME_S
        if pending and pending[0] <= t:
            ready, p, asked_in = pending
            pending = None
            if asked_in == pause and ep.in_speech and ep.judged(p):
                ep.end_now()
                stops.append(ready)
                by_model.add(ready)
        event = ep.update(prob)
        if event == "start":
            start = max(0, int((t - ep.start_lag_ms / 1000 - FRAME_S - PREFIX_S) * RATE))
        elif event == "stop":
            stops.append(t)
            if getattr(ep, "stopped_by_model", False):
                by_model.add(t)
        if ep.in_speech and ep.silence_run_ms == 0:
            pause += 1  # a voiced frame: any answer asked for before it is stale
        if judge and getattr(ep, "ask", False):
            p, wall, cpu = judge(sample, start, k)
            run.decisions += 1
            run.cpu.append(cpu)
            pending = (t + wall, p, pause)
    early = [s for s in stops if s < sample.end_s]
    late = [s for s in stops if s >= sample.end_s]
    run.cutoffs[sample.name.rstrip("0123456789")] += len(early)
    run.waits.append(late[0] - sample.end_s if late else None)
    run.by_model += bool(late) and late[0] in by_model


def settings() -> list[tuple[str, callable]]:
    out = [(f"server_vad {n} ms", lambda n=n: Endpointer(0.5, 96, n, 32.0)) for n in (300, 500, 800)]
    out += [(f"semantic_vad {e} (P >= {EAGERNESS[e].threshold} after {EAGERNESS[e].min_silence_ms} ms, "
             f"max {EAGERNESS[e].max_wait_ms} ms)",
             lambda e=e: SemanticEndpointer(0.5, 96, EAGERNESS[e], 32.0)) for e in ("low", "medium", "high")]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--grid", action="store_true")
    args = ap.parse_args()
    load_before = load_avg()
    samples = all_samples()
    probs = {s.name: vad_probs(s.audio) for s in samples}
    judge = Judge()
    pauses = {k: sum(len(s.pauses) for s in samples if s.name.rstrip("0123456789") == k) for k in SOURCES}
    n_pauses = " / ".join(str(pauses[k]) for k in SOURCES) + f" ({sum(pauses.values())})"
    rows, runs = [], {}
    for name, make in settings():
        run = runs[name] = Run()
        for s in samples:
            replay(s, probs[s.name], make(), judge if "semantic" in name else None, run)
        w, c = stats(run.waits), stats(run.cpu)
        missed = sum(1 for x in run.waits if x is None)
        rows.append([name, run.cut(), ms(w["p50"]), ms(w["p95"]), ms(w["max"]),
                     f"{run.by_model} / {len(run.waits)}" if run.decisions else "-",
                     f"{run.decisions}" if run.decisions else "-",
                     f"{1000 * c['p50']:.0f} / {1000 * c['p95']:.0f}" if run.decisions else "-"]
                    + ([f"{missed} never ended"] if missed else []))
    header = ["setting", f"false cut-offs: {' / '.join(SOURCES)} (of {n_pauses} pauses)", "wait p50 (ms)", "wait p95", "wait max",
              "finished turns the model ended", "model calls",
              "model CPU p50 / p95 (ms)"]
    body = [f"### turns: turn-taking on speech with pauses inside the thought",
            "",
            f"Machine: {machine()}. Load average before {load_before}, after {load_avg()}.",
            "",
            f"{len(samples)} turns (jfk.flac, 10.5 s with 3 pauses of 0.5-1.1 s; the MIT licence read aloud from "
            f"multilingual.mp3, 29 s with {pauses['mit']} pauses of 0.13-0.35 s; {len(samples) - 2} sentences spoken "
            f"by Piper ({len(SENTENCES)} at 0.9x, 1x and 1.1x its rate), "
            f"{sum(1 for s in samples if s.pauses and s.name.startswith('piper'))} of them cut at a word "
            f"gap with a pause of 0.5-2.0 s put in). A false cut-off is a turn ended before the speaker finished "
            f"(in a pause, or at a shorter gap). The model is "
            f"asked after {SEMANTIC_GATE_MS} ms of VAD silence; the wait counts from the end of the speech (by "
            f"energy) and includes the VAD's own lag and the model's run time.",
            "", table(header, rows)]
    if args.grid:
        body += ["", grid(samples, probs, judge, n_pauses)]
    text = "\n".join(body)
    print(text)
    if args.write:
        write_section("turns", text)


def grid(samples, probs, judge, n_pauses) -> str:
    rows = []
    for gate, least in ((96, 96), (128, 128), (128, 256), (192, 192), (192, 320)):
        for thr in (0.5, 0.7, 0.9, 0.95):
            for wait in (1000, 2000, 3000):
                run = Run()
                for s in samples:
                    ep = SemanticEndpointer(0.5, 96, Eagerness(thr, wait), 32.0, gate_ms=gate, min_silence_ms=least)
                    replay(s, probs[s.name], ep, judge, run)
                w = stats(run.waits)
                rows.append([gate, least, thr, wait, run.cut(), ms(w["p50"]), ms(w["p95"]), run.by_model])
    return f"Tuning grid (same speech, same model answers; pauses {n_pauses}):\n\n" + table(
        ["ask after (ms)", "end after (ms)", "P(complete) >=", "max wait (ms)", "false cut-offs", "wait p50", "wait p95",
         "ended by the model"], rows)


if __name__ == "__main__":
    main()
