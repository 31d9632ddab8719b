"""What memory and knowledge add to a reply's start: Dialogue.plan() with and without them.

plan() runs on the reply's path (after the turn is confirmed, or during the silence wait for a speculative reply),
so its extra time is what memory and knowledge add to end-of-speech -> first audio. Uses the real embedding
engines and stores: one user with 10,000 memories (synthetic texts, real embeddings of a few real facts), and
the shipped Pebble & Pine knowledge base.

    python bench/persona_overhead.py [--runs 30] [--write]
"""
from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import numpy as np

from common import load_avg, machine, ms, stats, table, write_section
from livehost.persona.character import BUILTIN_DIR, CharacterLibrary
from livehost.persona.dialogue import Dialogue
from livehost.persona.retrieval import open_stores, sync_character_knowledge

QUESTIONS = ["How long do I have to return an item?", "Do you sell gift cards?", "What snack would you pick for me?",
             "Where is your store?", "Can I pay with a credit card?", "What should I cook tonight?"]


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    chars = CharacterLibrary([BUILTIN_DIR])
    with tempfile.TemporaryDirectory() as tmp:
        memory, knowledge = open_stores(Path(tmp), "auto", ["en", "zh"])
        sync_character_knowledge(knowledge, chars.get("mika"))
        for fact in ("The user's name is Ada", "The user is allergic to peanuts", "The user likes hiking"):
            memory.add("ada", fact, importance=0.9)
        rng = np.random.default_rng(0)  # bulk: random unit vectors under synthetic texts, written in one transaction
        vecs = rng.normal(size=(10_000, memory.embedder.dim)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        now = time.time()
        with memory._db:
            memory._db.executemany(
                "INSERT INTO memories (user_id, text, kind, importance, created_at, last_used_at, embedding) "
                "VALUES (?, ?, 'fact', 0.5, ?, ?, ?)", [("ada", f"synthetic memory {i}", now, now, v.tobytes())
                                                        for i, v in enumerate(vecs)])
        memory._users.clear()
        rows = []
        for label, character, kw in (
                ("no memory, no knowledge (sol)", "sol", {}),
                ("memory: 10,003 memories of one user (sol)", "sol", {"user_id": "ada", "memory": memory}),
                ("knowledge: Pebble & Pine (mika)", "mika", {"knowledge": knowledge}),
                ("memory + knowledge (mika)", "mika", {"user_id": "ada", "memory": memory, "knowledge": knowledge})):
            d = Dialogue(chars.get(character), llm=None, **kw)
            times = []
            for i in range(args.runs + 2):
                convo = [{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)], "status": "completed"}]
                t = time.perf_counter()
                await d.plan(convo)
                if i >= 2:  # the first calls load matrices and warm the engines
                    times.append(time.perf_counter() - t)
            s = stats(times)
            rows.append([label, ms(s["p50"]), ms(s["p95"]), ms(s["max"]), len(times)])
        memory.close(), knowledge.close()
    body = (f"### persona_overhead (Dialogue.plan on the reply's path)\n\n{machine()}. Load average: {load_avg()}.\n\n"
            + table(["dialogue", "p50 ms", "p95 ms", "max ms", "n"], rows)
            + "\n\nThe difference to the first row is what memory and knowledge add to end-of-speech -> first audio "
              "(target <= 30 ms); most of it is one query embedding.\n")
    print(body)
    if args.write:
        write_section("persona_overhead", body)


if __name__ == "__main__":
    asyncio.run(main())
