"""Tool calling with the bundled models: does `auto` pick the right tool (or none), are forced calls valid, and
how long the router pass takes, and what it costs a turn: the reply's first token after it (the reply's prompt is a
character's, so the router must not throw away the prompt cache the reply would reuse) against a plain turn's.

The question set is our own (written before any prompt was tried on it): a shop assistant with three tools, and
questions that need one of them, need none, or need one but lack its argument (no call is the right answer).

    python bench/tools.py [--models smollm2-135m qwen2.5-0.5b] [--write]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, stats, table, wait_for_quiet, write_section  # noqa: E402

from livehost.persona.llm import LlamaCppLLM  # noqa: E402
from livehost.persona.tool_calls import decide  # noqa: E402
from livehost.persona.tools import check_arguments, parse_tools  # noqa: E402

TOOLS = parse_tools([
    {"type": "function", "name": "order_status", "description": "Look up where a customer's order is, by its number.",
     "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]}},
    {"type": "function", "name": "product_stock", "description": "Check whether a product is in stock.",
     "parameters": {"type": "object", "properties": {"product": {"type": "string"}}, "required": ["product"]}},
    {"type": "function", "name": "get_weather", "description": "The weather today in a city.",
     "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
])
QUESTIONS = [  # (question, the right tool or None)
    ("Where is my order 5521?", "order_status"), ("Has order 80412 shipped yet?", "order_status"),
    ("Can you check on order number 3307 for me?", "order_status"), ("Any news about my parcel, order 9120?", "order_status"),
    ("Is the oak serving board in stock?", "product_stock"), ("Do you still have the linen apron?", "product_stock"),
    ("Are there any ceramic mugs left?", "product_stock"), ("Can I still buy the walnut spoon set?", "product_stock"),
    ("What's the weather like in Paris today?", "get_weather"), ("Is it raining in Berlin?", "get_weather"),
    ("Do I need an umbrella in London today?", "get_weather"), ("How hot is it in Madrid?", "get_weather"),
    ("Hi, how are you?", None), ("Tell me a joke.", None), ("Thanks, bye!", None),
    ("What's your name?", None), ("Can you help me?", None), ("I love your shop!", None),
    ("Where is my order?", None), ("Is it in stock?", None),  # a tool is meant, but its argument was never said
]


LOAD_AT_START = 0.0


async def first_token(llm, messages: list[dict]) -> float:
    """Seconds to the reply's first raw token (max_tokens 1: the prompt evaluated, one token written)."""
    started = time.perf_counter()
    async for _ in llm.stream(messages, max_tokens=1, temperature=0.0):
        break
    return time.perf_counter() - started


async def turns(llm, name: str) -> dict:
    """A conversation with Mika's prompt: each question's first token without tools, then with the router pass
    first, its pass on the reply's own llama context (as it was: the two prompts evict each other from the cache)
    and on a context of its own (as it is)."""
    from livehost.persona.character import BUILTIN_DIR, CharacterLibrary

    persona = CharacterLibrary([BUILTIN_DIR]).get("mika").persona_prompt()
    prompt = lambda q: [{"role": "system", "content": persona}, {"role": "user", "content": q}]  # noqa: E731
    out = {"plain": stats([await first_token(llm, prompt(q)) for q, _ in QUESTIONS])}
    for variant, context in (("shared", llm._llama), ("own", None)):
        llm._router = context  # None: made on first use, here in the warm-up call below
        await decide(llm, [{"role": "user", "content": "Hello"}], TOOLS, "auto")
        router, after, turn = [], [], []
        for question, _ in QUESTIONS:
            started = time.perf_counter()
            await decide(llm, [{"role": "user", "content": question}], TOOLS, "auto")
            router.append(time.perf_counter() - started)
            after.append(await first_token(llm, prompt(question)))
            turn.append(time.perf_counter() - started)
        out[variant] = {"router": stats(router), "after": stats(after), "turn": stats(turn)}
        print(f"{name} router on {variant} context: router {stats(router)['p50']:.2f} s, first token after it "
              f"{stats(after)['p50']:.2f} s (plain {out['plain']['p50']:.2f} s)", flush=True)
    return out


async def run_model(name: str) -> dict:
    llm = LlamaCppLLM(name)
    llm.warmup()
    cost = await turns(llm, name)
    right = wrong_tool = needless = missed = 0
    router_s, forced_valid, forced_n = [], 0, 0
    for question, want in QUESTIONS:
        said = [{"role": "user", "content": question}]
        started = time.perf_counter()
        decision = await decide(llm, said, TOOLS, "auto")
        router_s.append(time.perf_counter() - started)
        got = decision.calls[0].name if decision.calls else None
        right += got == want
        wrong_tool += bool(got and want and got != want)
        needless += bool(got and not want)
        missed += bool(want and not got)
        if want:  # forced: the call must come, valid for its schema
            forced = await decide(llm, said, TOOLS, want)
            forced_n += 1
            tool = next(t for t in TOOLS if t.name == want)
            try:
                forced_valid += bool(forced.calls) and check_arguments(tool, forced.calls[0].arguments) is not None
            except ValueError:
                pass
        print(f"{name}: {question!r} -> {got} (want {want})", flush=True)
    s = stats(router_s)
    return {"model": name, "right": right, "n": len(QUESTIONS), "wrong_tool": wrong_tool, "needless": needless,
            "missed": missed, "forced_valid": forced_valid, "forced_n": forced_n, "p50": s["p50"], "p95": s["p95"],
            **cost}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["smollm2-135m", "qwen2.5-0.5b"])
    parser.add_argument("--write", action="store_true", help="write the results to bench/RESULTS.md")
    args = parser.parse_args()
    wait_for_quiet(0.6, timeout_s=180)
    global LOAD_AT_START
    LOAD_AT_START = os.getloadavg()[0]
    results = [asyncio.run(run_model(m)) for m in args.models]
    rows = [[r["model"], f"{r['right']}/{r['n']}", r["wrong_tool"], r["needless"], r["missed"],
             f"{r['forced_valid']}/{r['forced_n']}", f"{1000 * r['p50']:.0f} / {1000 * r['p95']:.0f}"]
            for r in results]
    body = (f"## Tool calling (bench/tools.py)\n\n{machine()}\n\n"
            f"{len(QUESTIONS)} questions of our own for a shop assistant with 3 tools (12 need a tool, 8 need none, "
            "2 of those name a tool's subject without its argument). `auto`: the router pass decides; a call "
            "whose text arguments the user never said is not made. Forced: `tool_choice` names the right tool.\n\n"
            + table(["model", "auto right", "wrong tool", "call not needed", "call missed", "forced valid",
                     "router ms p50 / p95"], rows))
    ms = lambda st: f"{1000 * st['p50']:.0f} / {1000 * st['p95']:.0f}"  # noqa: E731
    body += ("\n\nWhat a tool-enabled turn costs, ms p50 / p95 (Mika's system prompt and each question as the "
             "reply's prompt, the 20 questions in a row: a plain turn's first token; then the router pass and the "
             "reply's first token after it, with the router on the reply's own llama context, as before, and on a "
             f"context of its own, as now; load average {LOAD_AT_START:.2f} at the start, {os.getloadavg()[0]:.2f} at "
             "the end):\n\n"
             + table(["model", "plain: first token", "router (shared context)", "first token after it",
                      "router (own context)", "first token after it"],
                     [[r["model"], ms(r["plain"]), ms(r["shared"]["router"]), ms(r["shared"]["after"]),
                       ms(r["own"]["router"]), ms(r["own"]["after"])] for r in results]))
    print(body)
    if args.write:
        write_section("tools", body)


if __name__ == "__main__":
    main()
