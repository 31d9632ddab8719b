"""The engines alone, in this process, no server: LLM, TTS, ASR and VAD speed on this machine.

- LLM (llama-cpp, bundled SmolLM2-135M): time to first token for the very first call, for a conversation that
  grows turn by turn (its prefix is in the KV cache: "warm"), and for the same prompts with the cache missed
  from the first token on ("cold"); decode tokens/s over the replies.
- TTS (piper, bundled voice): time to first chunk and real-time factor (synthesis time / audio length).
- ASR (faster-whisper tiny.en and base): real-time factor over the phrases of jfk.flac and multilingual.mp3.
- VAD (Silero): ms per 32 ms frame.

    python bench/engines.py [--write] [--replies 10]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

import numpy as np

from common import (RATE, all_phrases, load_avg, machine, ms, pause_until_quiet, stats, table, wait_for_quiet,
                    write_section)
from rt import CpuMeter

SYSTEM = ("You are Lumi, a warm and witty virtual host. You talk with people by voice, so answer in one or two "
          "short spoken sentences, with no lists, no markdown and no emoji.")  # the server's default instructions
QUESTIONS = ["Hello! Who are you?", "What is your favourite season, and why?", "Tell me something about the moon.",
             "Can you recommend a good book?", "How do bees make honey?", "What should I cook tonight?",
             "Why is the sky blue?", "Tell me a joke about computers.", "What is the capital of France?",
             "How can I sleep better?", "What do you think about music?", "Say goodbye in a fun way."]
SENTENCES = ["Hello there!", "I'm Lumi, your virtual host for this evening.",
             "The moon is about three hundred and eighty thousand kilometres away.",
             "Bees make honey from nectar. They store it in wax cells.",
             "Why not try a simple pasta with garlic, olive oil and a little chili?",
             "That's a great question.", "Sleep at the same time every night, and keep your room cool and dark.",
             "Music makes everything better. Even a rainy Monday morning.",
             "Here is a joke: why did the computer go to the doctor? It had a virus!",
             "Goodbye, and thanks for the lovely chat."]


async def first_token_and_rate(llm, messages: list[dict], max_tokens: int) -> tuple[float, float, str, int]:
    """(time to first token, decode tokens/s, text, tokens) of one streamed reply."""
    started, first, last, parts = time.perf_counter(), None, None, []
    async for piece in llm.stream(messages, max_tokens=max_tokens, temperature=0.6):
        last = time.perf_counter()
        first = first or last
        parts.append(piece)
    text = "".join(parts)
    tokens = len(llm._llama.tokenize(text.encode(), add_bos=False)) if text else 0
    rate = (tokens - 1) / (last - first) if tokens > 1 and last > first else float("nan")
    return (first or time.perf_counter()) - started, rate, text, tokens


def bench_llm(args) -> str:
    from livehost.persona.llm import LLM
    started = time.perf_counter()
    llm = LLM.create("llama-cpp", threads=args.llm_threads)
    load_s = time.perf_counter() - started
    history = [{"role": "system", "content": SYSTEM}]
    warm, rates, prompts, first_call = [], [], [], None
    for i in range(args.replies + 1):
        history.append({"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]})
        ttft, rate, text, _ = asyncio.run(first_token_and_rate(llm, history, 120))
        if i == 0:
            first_call = ttft  # process cold: weights paged in, buffers allocated, nothing cached
        else:
            warm.append(ttft)
            rates.append(rate)
            prompts.append([dict(m) for m in history])
        history.append({"role": "assistant", "content": text.strip()})
    cold, sizes = [], []
    for k, messages in enumerate(prompts):  # the same prompts, each with a cache miss from its first token
        messages[0]["content"] = f"({k}) " + messages[0]["content"]
        cold.append(asyncio.run(first_token_and_rate(llm, messages, 1))[0])
        sizes.append(llm._llama.n_tokens)
    w, c, r = stats(warm), stats(cold), stats(rates)
    return "\n".join([
        f"LLM `llama-cpp` (bundled SmolLM2-135M-Instruct Q4_1, threads={args.llm_threads or 'all'}): loaded in "
        f"{load_s:.2f} s; first call of the process {ms(first_call)} ms to first token. Over {args.replies} replies of "
        f"one growing conversation (prompt {min(sizes)}..{max(sizes)} tokens):",
        "",
        table(["LLM", "p50", "p95", "mean"], [
            ["time to first token, warm (conversation prefix cached), ms", ms(w["p50"]), ms(w["p95"]), ms(w["mean"])],
            ["time to first token, cold (same prompts, cache missed), ms", ms(c["p50"]), ms(c["p95"]), ms(c["mean"])],
            ["decode tokens/s (max_tokens 120)", f"{r['p50']:.1f}", f"{r['p95']:.1f}", f"{r['mean']:.1f}"]]),
    ])


def bench_tts() -> str:
    from livehost.speech.tts import TTS
    tts = TTS.create("piper")
    started = time.perf_counter()
    list(tts.synthesize("Hi."))
    cold = time.perf_counter() - started
    firsts, rtfs, lengths = [], [], []
    for text in SENTENCES:
        started, first, audio = time.perf_counter(), None, 0.0
        for chunk in tts.synthesize(text):
            first = first or time.perf_counter() - started
            audio += chunk.duration_s
        rtfs.append((time.perf_counter() - started) / audio)
        firsts.append(first)
        lengths.append(audio)
    f, r = stats(firsts), stats(rtfs)
    return "\n".join([
        f"TTS `piper` (bundled voice, {tts.sample_rate} Hz): first call {ms(cold)} ms; {len(SENTENCES)} replies of "
        f"1-2 sentences, {min(lengths):.1f}..{max(lengths):.1f} s of audio each:",
        "",
        table(["TTS", "p50", "p95", "mean"], [
            ["time to first chunk (first sentence), ms", ms(f["p50"]), ms(f["p95"]), ms(f["mean"])],
            ["real-time factor (synthesis time / audio time)", f"{r['p50']:.3f}", f"{r['p95']:.3f}",
             f"{r['mean']:.3f}"]]),
    ])


def bench_asr(phrases) -> str:
    import soxr
    from livehost.speech.asr import ASR
    clips = [soxr.resample(p.pcm.astype(np.float32) / 32768, RATE, 16000).astype(np.float32) for p in phrases]
    rows = []
    for name in ("tiny.en", "base"):
        asr = ASR.create("faster-whisper", model=name)
        started = time.perf_counter()
        asr.warmup()
        cold = time.perf_counter() - started
        times, rtfs = [], []
        for clip in clips:
            started = time.perf_counter()
            asr.transcribe(clip, "en")
            times.append(time.perf_counter() - started)
            rtfs.append(times[-1] / (len(clip) / 16000))
        t, r = stats(times), stats(rtfs)
        rows.append([name, f"{r['p50']:.3f}", f"{r['p95']:.3f}", f"{sum(times) / sum(len(c) for c in clips) * 16000:.3f}",
                     ms(t["p50"]), ms(t["max"]), ms(cold)])
        del asr
    lengths = [len(c) / 16000 for c in clips]
    return "\n".join([
        f"ASR `faster-whisper` (int8, beam 1, all cores) over {len(clips)} phrases of "
        f"{min(lengths):.1f}..{max(lengths):.1f} s:",
        "",
        table(["ASR model", "RTF p50", "RTF p95", "RTF overall", "latency p50 ms", "latency max ms",
               "warm-up call ms"], rows),
    ])


def bench_vad(phrases) -> str:
    import soxr
    from livehost.speech.vad import VAD
    x = soxr.resample(np.concatenate([p.pcm for p in phrases]).astype(np.float32) / 32768, RATE, 16000)
    stream, times = VAD.create("silero").stream(), []
    for i in range(0, len(x) // 512 * 512, 512):
        started = time.perf_counter()
        stream.probability(x[i:i + 512])
        times.append(time.perf_counter() - started)
    t = stats(times)
    return (f"VAD `silero` (onnxruntime, 1 thread): {t['n']} frames of 32 ms, p50 {1000 * t['p50']:.3f} ms, "
            f"p95 {1000 * t['p95']:.3f} ms, mean {1000 * t['mean']:.3f} ms per frame "
            f"({t['mean'] / 0.032:.1%} of one core in real time).")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--replies", type=int, default=10, help="LLM replies in the growing conversation (default 10)")
    ap.add_argument("--llm-threads", type=int, default=0, help="llama.cpp threads (0: all cores, the default)")
    ap.add_argument("--only", choices=["llm", "tts", "asr", "vad"], action="append", help="run only these")
    ap.add_argument("--quiet", type=float, metavar="CORES",
                    help="first wait (up to 15 min) until the machine uses fewer than CORES cores, e.g. 0.3")
    ap.add_argument("--pause-busy", type=float, default=0.3, metavar="CORES",
                    help="before each engine, wait (up to 90 s) until other jobs use fewer cores than this (0: never)")
    ap.add_argument("--write", action="store_true", help="replace this script's section in bench/RESULTS.md")
    args = ap.parse_args()
    if args.quiet:
        wait_for_quiet(args.quiet)
    load_before, facts = load_avg(), machine()
    phrases = all_phrases()
    parts = []
    for name in args.only or ["llm", "tts", "asr", "vad"]:
        waited = pause_until_quiet(args.pause_busy) if args.pause_busy else 0.0
        cpu = CpuMeter([os.getpid()])
        part = {"llm": lambda: bench_llm(args), "tts": bench_tts, "asr": lambda: bench_asr(phrases),
                "vad": lambda: bench_vad(phrases)}[name]()
        part += f"\n\n_{name}: other jobs used {cpu.lap():.2f} cores while it ran (after waiting {waited:.0f} s for quiet)._"
        print(part + "\n", flush=True)
        parts.append(part)
    text = "\n\n".join(["### engines (in process, no server)",
                        f"{facts}. Load average before: {load_before}; after: {load_avg()}.", *parts])
    print(text)
    if args.write:
        write_section("engines", text)


if __name__ == "__main__":
    sys.exit(main())
