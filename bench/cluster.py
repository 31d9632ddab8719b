"""Sessions per node with the LLM on its own tier: what one `livehost serve` node costs per talking user when the
LLM runs elsewhere (here: llama.cpp's OpenAI-compatible server with SmolLM2 on the same machine, its CPU counted
apart), for the capacity model in the README (Deployment).

For each --sessions level, that many users talk at once (voice_loop's users: real speech, 100 ms appends in real
time, one session each, the reply heard out before the next phrase). Measured per level: the node's CPU (cores,
and core-seconds per turn), the LLM tier's CPU and the tokens it produced (the spoken replies, counted with the
model's own tokenizer: a lower bound, since tags and filtered words are not spoken), and end of speech -> first
reply audio.

    python bench/cluster.py --sessions 1 2 4 --turns 6 --write
"""
from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from types import SimpleNamespace

import httpx

from common import all_phrases, load_avg, machine, ms, stats, table, wait_for_quiet, write_section
from rt import CpuMeter, Server
from voice_loop import user


def start_llm_tier(threads: int) -> tuple[subprocess.Popen, str]:
    from livehost.persona import model_files
    model = model_files.resolve(model_files.SMOLLM2)
    port = _free_port()
    log = tempfile.NamedTemporaryFile("wb", prefix="llm-tier-", suffix=".log", delete=False)
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1",
                             "--port", str(port), "--n_ctx", "2048", "--n_threads", str(threads),
                             "--verbose", "False"], stdout=log, stderr=subprocess.STDOUT)
    url, deadline = f"http://127.0.0.1:{port}/v1", time.monotonic() + 180
    while True:
        try:
            if httpx.get(f"{url}/models", timeout=1).is_success:
                return proc, url
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"llama_cpp.server did not start; see {log.name}")
        time.sleep(0.3)


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def count_tokens(texts: list[str]) -> int:
    from llama_cpp import Llama
    from livehost.persona import model_files
    vocab = Llama(str(model_files.resolve(model_files.SMOLLM2)), vocab_only=True, verbose=False)
    return sum(len(vocab.tokenize(t.encode(), add_bos=False)) for t in texts if t)


def user_args(args, sessions: int) -> SimpleNamespace:
    return SimpleNamespace(warmup=1, turns=args.turns, gap=0.5, timeout=60.0, chunk_ms=100, fresh=False, lead=1.0,
                           pause_busy=0.0, pause_max=0.0, sessions=sessions, stagger=0.7, silence_ms=None,
                           semantic=None)


async def level(server: Server, llm_pid: int, args, sessions: int) -> dict:
    phrases, out = all_phrases(), {"turns": [], "errors": []}
    node, tier, everything = CpuMeter([server.pid]), CpuMeter([llm_pid]), CpuMeter([server.pid, llm_pid, os.getpid()])
    started = time.perf_counter()
    await asyncio.gather(*(user(server, user_args(args, sessions), phrases, k, everything, out)
                           for k in range(sessions)))
    wall = time.perf_counter() - started
    node_total, node_cores = node._cores(node.start, node._read())
    _, tier_cores = tier._cores(tier.start, tier._read())
    all_total, ours = everything._cores(everything.start, everything._read())
    turns = [t for t in out["turns"]]  # warm-up turns included: the CPU was spent on them too
    good = [t for t in out["turns"] if t["valid"] and not t["warmup"]]
    tokens = count_tokens([t["reply"] for t in turns])
    head = stats([t["t"]["response.output_audio.delta"] for t in good])
    measured = sum(1 for t in turns if not t["warmup"])
    return {"sessions": sessions, "wall_s": wall, "turns": len(turns), "valid": f"{len(good)}/{measured}",
            "node_cores": node_cores, "tier_cores": tier_cores, "others": max(0.0, all_total - ours),
            "node_core_s_per_turn": node_cores * wall / max(1, len(turns)),
            "tier_core_s_per_turn": tier_cores * wall / max(1, len(turns)),
            "tokens": tokens, "tokens_per_s": tokens / wall, "tokens_per_tier_core_s": tokens / max(1e-9, tier_cores * wall),
            "p50": head["p50"], "p95": head["p95"], "busy": sum(1 for t in turns if t["status"] == "server_busy"),
            "audio_s": sum(t["audio_s"] for t in turns)}


def report(rows: list[dict], args, load_before: str, facts: str, load_s: float) -> str:
    body = [[r["sessions"], f"{r['wall_s']:.0f}", r["valid"], f"{r['node_cores']:.2f}",
             f"{r['node_core_s_per_turn']:.2f}", f"{r['tier_cores']:.2f}", f"{r['tier_core_s_per_turn']:.2f}",
             r["tokens"], f"{r['tokens_per_s']:.1f}", f"{r['tokens_per_tier_core_s']:.0f}",
             ms(r["p50"]), ms(r["p95"]), r["busy"], f"{r['others']:.2f}"] for r in rows]
    return "\n".join([
        "### cluster — sessions per node, the LLM on its own tier",
        "",
        f"{facts}. Load average before the run: {load_before}; after: {load_avg()}.",
        f"Node: `livehost serve` with `llm.engine: openai` (models loaded in {load_s:.1f} s); LLM tier: llama.cpp's "
        f"server (`python -m llama_cpp.server`, SmolLM2-135M Q4_1, {args.llm_threads} thread(s)) on the same machine, "
        f"its CPU counted apart. Each level: N users talking at once, 1 warm-up + {args.turns} turns each "
        "(voice_loop's users: real speech in real time, one session each, 0.5 s after each reply). Cores are "
        "averages over the level's wall time; core-s per turn counts warm-up turns too (they cost the same). "
        "LLM core-s per turn includes reading the prompt (the character card, memory, the conversation: most of "
        "the tier's work for a 60-token spoken reply), so tokens per LLM core-s is output tokens per core-second "
        "of the whole request.",
        "",
        table(["users", "wall s", "valid/measured turns", "node cores", "node core-s/turn", "LLM cores", "LLM core-s/turn",
               "tokens", "tokens/s", "tokens per LLM core-s", "first audio p50", "p95", "server_busy",
               "others' cores"], body),
    ])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, nargs="+", default=[1, 2, 4], help="users at once, one level each")
    ap.add_argument("--turns", type=int, default=6, help="measured turns per user per level (default 6)")
    ap.add_argument("--llm-threads", type=int, default=1, help="threads of the LLM tier's server (default 1)")
    ap.add_argument("--quiet", type=float, metavar="CORES", help="first wait until the machine uses < CORES cores")
    ap.add_argument("--write", action="store_true", help="replace this script's section in bench/RESULTS.md")
    args = ap.parse_args()
    if args.quiet:
        wait_for_quiet(args.quiet)
    load_before, facts = load_avg(), machine()
    llm, url = start_llm_tier(args.llm_threads)
    rows = []
    try:
        env = {"LIVEHOST_LLM__ENGINE": "openai", "LIVEHOST_LLM__BASE_URL": url, "LIVEHOST_LLM__MODEL": "smollm2",
               "LIVEHOST_SERVER__MAX_REPLIES": str(max(args.sessions) + 1)}
        with Server(env=env) as server:
            for n in args.sessions:
                rows.append(asyncio.run(level(server, llm.pid, args, n)))
                r = rows[-1]
                print(f"{n} users: node {r['node_cores']:.2f} cores ({r['node_core_s_per_turn']:.2f} core-s/turn), "
                      f"LLM {r['tier_cores']:.2f} cores, {r['tokens_per_s']:.1f} tokens/s, first audio p50 "
                      f"{ms(r['p50'])} ms", flush=True)
            load_s = server.load_s or 0.0
    finally:
        llm.terminate()
        llm.wait(10)
    text = report(rows, args, load_before, facts, load_s)
    print("\n" + text)
    if args.write:
        write_section("cluster", text)


if __name__ == "__main__":
    sys.exit(main())
