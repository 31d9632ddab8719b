"""Memory recall on each storage: SQLite (embedded) vs PostgreSQL with the vectors searched in the node, and
pgvector's search on the server where a server with the extension is given (--pgvector-url).

No model runs here: vectors are random unit rows of MiniLM's size (384), so the numbers are the storage's and the
search's, not the embedding's (bench/retrieval.py measures that). Per user size N (100, 1000, 10000 memories):
  warm recall   search_vector on a cached user: the version read (one indexed SELECT) + the in-node matrix product
  cold load     the first recall after another node changed the user: version, all N rows, the matrix
  add           MemoryStore.add of one memory (duplicate check, INSERT + version bump, commit)
PostgreSQL runs here on loopback (Debian's postgresql 15, fsync on) unless --url names another server.

    .venv/bin/python bench/storage.py [--sizes 100,1000,10000] [--reps 200] [--url postgresql://...] [--write]
"""
from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import ROOT, busy_cores, load_avg, machine, stats, table, write_section

from livehost.persona.memory import MemoryStore
from livehost.persona.store import bump, open_database

DIM = 384


class RandomEmbedder:
    """A unit vector per text from its hash: the storage is measured, not the meaning."""
    name, dim, multilingual = "bench-random", DIM, True

    def embed(self, texts, kind="passage"):
        rows = [np.random.default_rng(int(hashlib.sha256(t.encode()).hexdigest()[:12], 16)).standard_normal(DIM)
                for t in texts]
        out = np.array(rows, np.float32).reshape(len(texts), DIM)
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    def warmup(self):
        pass


def fill(store: MemoryStore, user: str, n: int) -> None:
    """n memories for `user`, written in one transaction (the bench's setup, not what it measures)."""
    vectors = RandomEmbedder().embed([f"{user} memory {i}" for i in range(n)])
    now = time.time()
    with store.db.transaction() as tx:
        tx.executemany("INSERT INTO memories (user_id, text, kind, importance, created_at, last_used_at, embedding) "
                       "VALUES (?, ?, 'fact', 0.5, ?, ?, ?)",
                       [(user, f"{user} memory {i}", now - i, now - i, v.tobytes()) for i, v in enumerate(vectors)])
        bump(tx, user)


def timed(fn, reps: int) -> dict:
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return stats(out)


def measure(store: MemoryStore, sizes: list[int], reps: int, tag: str) -> list[list]:
    rows = []
    queries = RandomEmbedder().embed([f"query {i}" for i in range(reps)])
    for n in sizes:
        user = f"{tag}-u{n}"
        fill(store, user, n)
        store.search_vector(user, queries[0], k=5, min_score=-1, touch=False)  # cached
        it = iter(range(10**9))
        warm = timed(lambda: store.search_vector(user, queries[next(it) % reps], k=5, min_score=-1, touch=False), reps)

        def cold():
            store._users.pop(user, None)  # what a bump by another node makes a node do
            store.search_vector(user, queries[0], k=5, min_score=-1, touch=False)
        load = timed(cold, max(5, reps // 10))
        j = iter(range(10**9))
        add = timed(lambda: store.add(user, f"new fact {next(j)} for {user}"), max(5, reps // 4))
        rows.append([tag, n, ms3(warm["p50"]), ms3(warm["p95"]), ms3(load["p50"]), ms3(load["p95"]),
                     ms3(add["p50"]), ms3(add["p95"])])
        print(rows[-1], flush=True)
    return rows


def ms3(x: float) -> str:
    return "n/a" if x != x else f"{1000 * x:.2f}"


def pgvector_rows(url: str, sizes: list[int], reps: int) -> list[list]:
    """The same recall as SQL on a server with the vector extension: ORDER BY embedding <=> query LIMIT 5, one
    user's rows (no ANN index: exact, like the node's search; an HNSW index pays off across users, not inside one)."""
    import psycopg
    rows = []
    emb = RandomEmbedder()
    queries = emb.embed([f"query {i}" for i in range(reps)])
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        conn.execute("DROP TABLE IF EXISTS bench_pgvector")
        conn.execute(f"CREATE TABLE bench_pgvector (id BIGSERIAL PRIMARY KEY, user_id TEXT NOT NULL, text TEXT, "
                     f"embedding vector({DIM}) NOT NULL)")
        conn.execute("CREATE INDEX ON bench_pgvector (user_id)")
        for n in sizes:
            user = f"pgv-u{n}"
            vectors = emb.embed([f"{user} memory {i}" for i in range(n)])
            with conn.cursor() as cur, conn.transaction():
                cur.executemany("INSERT INTO bench_pgvector (user_id, text, embedding) VALUES (%s, %s, %s::vector)",
                                [(user, f"m{i}", "[" + ",".join(f"{x:.6f}" for x in v) + "]")
                                 for i, v in enumerate(vectors)])
            conn.execute("ANALYZE bench_pgvector")
            it = iter(range(10**9))

            def recall():
                q = "[" + ",".join(f"{x:.6f}" for x in queries[next(it) % reps]) + "]"
                conn.execute("SELECT id, text, 1 - (embedding <=> %s::vector) FROM bench_pgvector WHERE user_id=%s "
                             "ORDER BY embedding <=> %s::vector LIMIT 5", (q, user, q)).fetchall()
            recall()
            warm = timed(recall, reps)
            rows.append(["pgvector (search on the server)", n, ms3(warm["p50"]), ms3(warm["p95"]), "-", "-", "-",
                         "-"])
            print(rows[-1], flush=True)
        conn.execute("DROP TABLE bench_pgvector")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100,1000,10000")
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--url", help="a PostgreSQL server to use (default: a throwaway one started here)")
    ap.add_argument("--pgvector-url", help="a PostgreSQL server that has the vector extension")
    ap.add_argument("--pgvector-bindir", help="the bin/ of a PostgreSQL build with pgvector (Debian bookworm has "
                    "none; e.g. PyPI's pgserver, in a venv of its own): a throwaway server of it is started, and "
                    "both the in-node search and pgvector are measured on it")
    ap.add_argument("--write", action="store_true", help="write the results into bench/RESULTS.md")
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    load_before, busy = load_avg(), busy_cores(3.0)
    rows: list[list] = []
    with tempfile.TemporaryDirectory() as tmp:
        sqlite = MemoryStore(Path(tmp) / "memory.db", RandomEmbedder())
        rows += measure(sqlite, sizes, args.reps, "SQLite (in-node search)")
        sqlite.close()
    server = None
    url = args.url
    sys.path.insert(0, str(ROOT / "tests"))
    if url is None:
        from pg_server import PostgresServer
        server = PostgresServer(fsync=True).__enter__()
        url = server.url
    try:
        pg = MemoryStore(open_database(url, None, "bench_memory"), RandomEmbedder())
        pg.db.execute("TRUNCATE memories")
        rows += measure(pg, sizes, args.reps, "PostgreSQL (in-node search)")
        pg.db.execute("TRUNCATE memories")
        pg.close()
        if args.pgvector_url:
            rows += pgvector_rows(args.pgvector_url, sizes, args.reps)
    finally:
        if server is not None:
            server.close()
    if args.pgvector_bindir:
        from pg_server import PostgresServer
        with PostgresServer(Path(args.pgvector_bindir), fsync=True) as other:
            version = other._run("postgres", "--version").stdout.strip()
            pg = MemoryStore(open_database(other.url, None, "bench_memory"), RandomEmbedder())
            rows += measure(pg, sizes, args.reps, f"{version} (in-node search)")
            pg.close()
            rows += [[f"{version}, pgvector (search on the server)", *r[1:]]
                     for r in pgvector_rows(other.url, sizes, args.reps)]
    where = "a throwaway PostgreSQL 15 on loopback, fsync on" if args.url is None else "the server given by --url"
    body = (f"## Storage: memory recall on SQLite vs PostgreSQL (bench/storage.py)\n\n{machine()}; load average "
            f"before {load_before}, {busy:.1f} of the cores busy with other jobs. PostgreSQL: {where}. Vectors: "
            f"random unit rows of {DIM} dims (no model); k=5; {args.reps} recalls per size. Times in ms.\n\n"
            + table(["storage", "memories of the user", "warm recall p50", "p95", "cold load p50", "p95",
                     "add p50", "p95"], rows)
            + "\n\nWarm recall is what a turn waits on when the node has the user cached (PostgreSQL: one version "
              "read on the server + the matrix product here). Cold load is the first turn on a node after another "
              "node wrote to that user (or the user's first turn on this node).")
    print(body)
    if args.write:
        write_section("storage", body)


if __name__ == "__main__":
    main()
