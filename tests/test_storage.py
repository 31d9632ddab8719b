"""Shared storage on a real PostgreSQL server (tests/pg_server.py): two store objects on one database stand for two
nodes; what one writes or erases the other sees on its next read. Faults: unreachable at start, lost mid-session."""
from __future__ import annotations

import hashlib
import logging
import socket
import time

import numpy as np
import pytest

from livehost.persona.knowledge import KnowledgeBase
from livehost.persona.memory import MemoryStore
from livehost.persona.store import StorageError, StorageUnavailable, open_database, redact
from livehost.persona.store_postgres import PostgresDatabase


class HashEmbedder:
    """Deterministic random unit vectors per text: these tests are about storage, not meaning."""
    name, dim, multilingual = "hash", 64, True

    def embed(self, texts, kind="passage"):
        out = [np.random.default_rng(int(hashlib.sha256(t.encode()).hexdigest()[:12], 16)).normal(size=self.dim)
               for t in texts]
        out = np.array(out, np.float32).reshape(len(texts), self.dim)
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    def warmup(self):
        pass


EMB = HashEmbedder()


def vec(text: str) -> np.ndarray:
    return EMB.embed([text])[0]


def texts(store: MemoryStore, user: str, query: str, k: int = 5) -> list[str]:
    return [m.text for m in store.search_vector(user, vec(query), k=k, min_score=0.99, touch=False)]


def node(url: str, **kw) -> MemoryStore:
    return MemoryStore(open_database(url, None, "memory"), EMB, **kw)


def test_a_fact_told_to_node_a_is_recalled_on_node_b(fresh_postgres_url):
    a, b = node(fresh_postgres_url), node(fresh_postgres_url)
    assert b.count("ada") == 0  # b has ada cached now (empty)
    first = a.add("ada", "The user's name is Ada", importance=0.9)
    assert first > 0
    assert texts(b, "ada", "The user's name is Ada") == ["The user's name is Ada"]
    a.add("ada", "The user lives in Leeds")
    assert texts(b, "ada", "The user lives in Leeds") == ["The user lives in Leeds"]  # b's cache was refreshed
    assert [m.text for m in b.core("ada")] == ["The user's name is Ada"]
    assert b.users() == [("ada", 2)] and [m.id for m in b.list("ada")][0] == first
    # a near-duplicate written on b updates the row a knows, and a sees the new words
    assert b.add("ada", "The user's name is Ada") == first
    assert a.count("ada") == 2
    a.close(), b.close()


def test_erase_on_one_node_is_seen_by_every_node(fresh_postgres_url):
    a, b = node(fresh_postgres_url), node(fresh_postgres_url)
    keep = a.add("bo", "The user loves jazz")
    gone = a.add("bo", "The user is allergic to peanuts")
    a.add("cy", "The user is from Oslo")
    assert texts(b, "bo", "The user is allergic to peanuts") == ["The user is allergic to peanuts"]  # cached on b
    assert a.erase("bo", gone) == 1
    assert texts(b, "bo", "The user is allergic to peanuts") == []  # b must not answer from its cache
    assert [m.id for m in b.list("bo")] == [keep]
    assert texts(b, "bo", "The user loves jazz") == ["The user loves jazz"]
    assert b.erase("bo") == 1  # all of bo's, erased through b this time
    assert a.count("bo") == 0 and texts(a, "bo", "The user loves jazz") == []
    assert texts(a, "cy", "The user is from Oslo") == ["The user is from Oslo"]  # another user is untouched
    with _raw(fresh_postgres_url) as conn:  # gone from the database itself
        assert conn.execute("SELECT count(*) FROM memory.memories WHERE user_id='bo'").fetchone()[0] == 0
    a.close(), b.close()


def _raw(url: str):
    import psycopg
    return psycopg.connect(url, autocommit=True)


def test_recency_written_on_one_node_reaches_the_other(fresh_postgres_url):
    a, b = node(fresh_postgres_url), node(fresh_postgres_url)
    old = time.time() - 30 * 86400
    a.add("di", "The user plays the cello", now=old)
    assert b.list("di")[0].last_used_at == pytest.approx(old)
    [found] = a.search_vector("di", vec("The user plays the cello"), min_score=0.99)  # touch: used now
    assert b.search_vector("di", vec("The user plays the cello"), min_score=0.99,
                           touch=False)[0].last_used_at > time.time() - 60
    assert found.last_used_at == pytest.approx(old)  # (returned as it was before this use)
    a.close(), b.close()


def test_knowledge_shared_between_nodes(fresh_postgres_url):
    a = KnowledgeBase(open_database(fresh_postgres_url, None, "knowledge-hash"), EMB)
    b = KnowledgeBase(open_database(fresh_postgres_url, None, "knowledge-hash"), EMB)
    text = "# Returns\nReturns are free within 30 days.\n\n# Shipping\nWe ship to Norway in 3 days."
    assert a.add_text("mika", "faq.md", text) == 2
    assert b.sources("mika") == ["faq.md"] and b.count("mika") == 2
    [best] = b.search_vector("mika", vec("Returns\nReturns are free within 30 days."), k=1)
    assert best.score == pytest.approx(1.0, abs=1e-5) and best.locator == "Returns" and best.source == "faq.md"
    assert a.add_text("mika", "faq.md", text) == 2  # unchanged: kept, not re-embedded
    a.add_text("mika", "faq.md", "# Returns\nReturns are free within 60 days.")
    [best] = b.search_vector("mika", vec("Returns\nReturns are free within 60 days."), k=1)
    assert best.text.endswith("60 days.") and b.count("mika") == 1  # b saw the new version
    assert a.remove("mika", "faq.md") == 1
    assert b.search_vector("mika", vec("Returns\nReturns are free within 60 days."), k=1) == []
    a.close(), b.close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_at_start_is_a_clear_error_without_the_password():
    url = f"postgresql://livehost:s3cret-pw@127.0.0.1:{_closed_port()}/livehost"
    with pytest.raises(StorageError) as caught:
        open_database(url, None, "memory")
    message = str(caught.value)
    assert "s3cret-pw" not in message and "postgresql://livehost:***@127.0.0.1" in message
    assert "storage.url" in message and "running" in message and "pg_hba.conf" in message
    assert redact("postgresql://u@h/db") == "postgresql://u@h/db"
    assert redact("postgresql://u@h/db?sslmode=require&password=pw2") == "postgresql://u@h/db?sslmode=require&password=***"
    assert redact("postgresql:///db?host=/run/pg") == "postgresql:///db?host=/run/pg"


def test_only_postgresql_urls_are_taken(tmp_path):
    with pytest.raises(StorageError, match="postgresql://"):
        open_database("mysql://u:pw@h/db", tmp_path, "memory")
    assert open_database(None, tmp_path, "memory").kind == "sqlite" and (tmp_path / "memory.db").exists()


def test_postgres_lost_mid_session_queues_writes_and_saves_them_when_back(caplog):
    from pg_server import PostgresServer, pg_bindir
    if pg_bindir() is None:
        pytest.skip("PostgreSQL server binaries not found: apt-get install postgresql")
    with PostgresServer() as pg:
        a = node(pg.url, max_queued_writes=3)
        a.queue.retry_s = 0.2
        a.add("ed", "The user's name is Ed", importance=0.9)
        assert texts(a, "ed", "The user's name is Ed") == ["The user's name is Ed"]
        pg.stop("immediate")  # the server dies mid-session
        with caplog.at_level(logging.WARNING, logger="livehost.storage"):
            # reads go on from the node's cache (a reply still knows Ed), an unknown user has no memories
            assert texts(a, "ed", "The user's name is Ed") == ["The user's name is Ed"]
            assert [m.text for m in a.core("ed")] == ["The user's name is Ed"]
            assert len(a.search_vector("ed", vec("The user's name is Ed"), min_score=0.99)) == 1  # touch: queued
            assert len(a.queue) == 1
            a.search_vector("ed", vec("The user's name is Ed"), min_score=0.99)  # half full: recency not kept
            assert len(a.queue) == 1 and any("recency updates not kept" in r.getMessage() for r in caplog.records)
            assert a.count("stranger") == 0
            assert a.add("ed", "The user lives in Oslo") == 0  # queued, not lost
            assert a.add("ed", "The user loves jazz") == 0
            assert len(a.queue) == 3  # two facts and the recency of the searched memory
            assert a.add("ed", "The user is a nurse") == 0  # the queue is full: dropped, loudly
            assert a.queue.dropped == 1
            assert any(r.levelno == logging.ERROR and "dropped" in r.getMessage() and "1 writes dropped" in
                       r.getMessage() for r in caplog.records)
            with pytest.raises(StorageUnavailable):
                a.erase("ed")  # an erasure is never queued: the caller hears it did not happen
            with pytest.raises(StorageUnavailable):
                a.list("ed")
            assert not a.db.ping()
            pg.start()  # the same port again
            deadline = time.time() + 30
            while len(a.queue) and time.time() < deadline:
                time.sleep(0.1)
        assert len(a.queue) == 0
        b = node(pg.url)  # a node that starts now sees what was queued
        assert sorted(m.text for m in b.list("ed")) == ["The user lives in Oslo", "The user loves jazz",
                                                        "The user's name is Ed"]
        assert texts(a, "ed", "The user loves jazz") == ["The user loves jazz"]
        assert a.db.ping()
        a.close(), b.close()


def test_erasure_voids_writes_still_queued(postgres_server):
    url = postgres_server.create_database("t_erase_queue")
    a = node(url)
    a.add("fi", "The user's name is Fi")
    a.queue._stop = True  # hold the retries, so the queued write is still waiting when the erasure comes
    a.queue._wake.set()
    a.db._lost(RuntimeError("simulated: connection reset"))  # the next write finds no connection
    assert a.add("fi", "The user is allergic to cats") == 0 and len(a.queue) == 1
    deadline = time.time() + 15
    while not a.db.reachable and time.time() < deadline:  # the reconnector finds the server (it never went away)
        time.sleep(0.1)
    assert a.erase("fi") == 1
    assert len(a.queue) == 0
    assert a.queue.flush() and a.list("fi") == []
    a.close()


def test_db_migrate_copies_a_sqlite_data_dir_idempotently(tmp_path, fresh_postgres_url):
    from click.testing import CliRunner

    from livehost.server.cli import main
    data = tmp_path / "data"
    local = MemoryStore(data / "memory.db", EMB)
    ids = [local.add("ada", f"fact {i}", importance=i / 10) for i in range(10)]
    local.add("bo", "The user loves jazz")
    local.erase("ada", ids[3])
    local.close()
    kb = KnowledgeBase(data / "knowledge-hash.db", EMB)
    kb.add_text("mika", "faq.md", "# Returns\nFree within 30 days.\n\n# Shipping\nThree days to Norway.")
    kb.close()

    def rows(url):
        import psycopg
        with psycopg.connect(url) as conn:
            return (conn.execute("SELECT * FROM memory.memories ORDER BY id").fetchall(),
                    conn.execute("SELECT * FROM knowledge_hash.chunks ORDER BY id").fetchall(),
                    conn.execute("SELECT character, source, digest, chunks FROM knowledge_hash.sources").fetchall())
    runner = CliRunner()
    first = runner.invoke(main, ["db", "migrate", "--to", fresh_postgres_url, "--data-dir", str(data)])
    assert first.exit_code == 0, first.output
    assert "10 memories" in first.output and "2 chunks, 1 sources" in first.output
    copied = rows(fresh_postgres_url)
    second = runner.invoke(main, ["db", "migrate", "--to", fresh_postgres_url, "--data-dir", str(data)])
    assert second.exit_code == 0, second.output
    assert rows(fresh_postgres_url) == copied and len(copied[0]) == 10  # the same rows, ids kept
    assert ids[3] not in [r[0] for r in copied[0]]  # what was erased stays erased
    shared = node(fresh_postgres_url)
    assert texts(shared, "ada", "fact 7") == ["fact 7"] and shared.count("bo") == 1
    new = shared.add("ada", "a fact written after the migration")
    assert new > max(r[0] for r in copied[0])  # the id sequence continues past the copied ids
    shared.close()
    shared_kb = KnowledgeBase(open_database(fresh_postgres_url, None, "knowledge-hash"), EMB)
    assert shared_kb.sources("mika") == ["faq.md"]
    assert shared_kb.add_text("mika", "faq.md", "# Returns\nFree within 30 days.\n\n# Shipping\nThree days to "
                              "Norway.") == 2  # the copied digest: an unchanged file is not embedded again
    shared_kb.close()


def test_db_migrate_errors_are_clear(tmp_path, fresh_postgres_url):
    from click.testing import CliRunner

    from livehost.server.cli import main
    runner = CliRunner()
    empty = tmp_path / "empty"
    empty.mkdir()
    out = runner.invoke(main, ["db", "migrate", "--to", fresh_postgres_url, "--data-dir", str(empty)])
    assert out.exit_code == 1 and "no memory.db or knowledge-*.db" in out.output
    out = runner.invoke(main, ["db", "migrate", "--to", "sqlite:///x", "--data-dir", str(empty)])
    assert out.exit_code == 1 and "postgresql://" in out.output
    out = runner.invoke(main, ["db", "migrate", "--to", f"postgresql://u:pw9@127.0.0.1:{_closed_port()}/x",
                               "--data-dir", str(tmp_path)])
    assert out.exit_code == 1 and "cannot reach PostgreSQL" in out.output and "pw9" not in out.output
    # a target that already holds other rows under the same ids: refused, nothing written
    other = node(fresh_postgres_url)
    other.add("zed", "someone else's fact")
    other.close()
    data = tmp_path / "data"
    local = MemoryStore(data / "memory.db", EMB)
    local.add("ada", "The user's name is Ada")
    local.close()
    out = runner.invoke(main, ["db", "migrate", "--to", fresh_postgres_url, "--data-dir", str(data)])
    assert out.exit_code == 1 and "already used" in out.output and "new database" in out.output
    check = node(fresh_postgres_url)
    assert check.users() == [("zed", 1)]
    check.close()


def test_serve_does_not_start_when_postgres_is_unreachable(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from livehost.server.cli import main
    monkeypatch.setenv("LIVEHOST_STORAGE__URL", f"postgresql://livehost:hunter22@127.0.0.1:{_closed_port()}/livehost")
    monkeypatch.setenv("LIVEHOST_DATA_DIR", str(tmp_path))
    started = time.monotonic()
    out = CliRunner().invoke(main, ["serve", "--port", str(_closed_port())])
    assert out.exit_code == 1, out.output
    assert "cannot reach PostgreSQL at postgresql://livehost:***@127.0.0.1" in out.output and "hunter22" not in out.output
    assert "listening" not in out.output
    assert time.monotonic() - started < 30  # refused before any model is loaded (they would be refused here anyway)


def test_kb_commands_name_an_unreachable_postgres(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from livehost.persona import retrieval
    from livehost.server.cli import main
    monkeypatch.setattr(retrieval.EMBEDDINGS, "shared", lambda name: EMB)  # no model: the storage is tested
    monkeypatch.setenv("LIVEHOST_STORAGE__URL", f"postgresql://livehost:pw-x1@127.0.0.1:{_closed_port()}/livehost")
    monkeypatch.setenv("LIVEHOST_DATA_DIR", str(tmp_path))
    out = CliRunner().invoke(main, ["kb", "list", "mika"])
    assert out.exit_code == 1 and "cannot reach PostgreSQL" in out.output and "pw-x1" not in out.output


def test_open_stores_sqlite_by_default_postgres_by_url(tmp_path, fresh_postgres_url, monkeypatch):
    from livehost.persona import retrieval
    monkeypatch.setattr(retrieval.EMBEDDINGS, "shared", lambda name: EMB)  # no model: where the rows go is tested
    memory, knowledge = retrieval.open_stores(tmp_path, "minilm", ["en"])
    assert memory.db.kind == knowledge.db.kind == "sqlite"
    assert (tmp_path / "memory.db").exists() and (tmp_path / "knowledge-minilm.db").exists()
    memory.close(), knowledge.close()
    memory, knowledge = retrieval.open_stores(tmp_path / "unused", "minilm", ["en"], fresh_postgres_url)
    assert memory.db.kind == knowledge.db.kind == "postgresql" and knowledge.db.schema == "knowledge_minilm"
    memory.add("ada", "The user's name is Ada")
    knowledge.add_text("mika", "faq.md", "# Returns\nFree within 30 days.")
    memory.close(), knowledge.close()
    with _raw(fresh_postgres_url) as conn:
        assert conn.execute("SELECT count(*) FROM memory.memories").fetchone()[0] == 1
        assert conn.execute("SELECT count(*) FROM knowledge_minilm.chunks").fetchone()[0] == 1
    assert not (tmp_path / "unused" / "memory.db").exists()


def test_two_nodes_syncing_the_same_source_at_once_keep_one_copy(fresh_postgres_url):
    import threading
    nodes = [KnowledgeBase(open_database(fresh_postgres_url, None, "knowledge-hash"), EMB) for _ in range(2)]
    for round_ in range(3):
        text = "\n\n".join(f"# Part {i}\nRound {round_}, paragraph {i}." for i in range(20))
        barrier = threading.Barrier(2)
        threads = [threading.Thread(target=lambda kb=kb: (barrier.wait(), kb.add_text("mika", "faq.md", text)))
                   for kb in nodes]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert nodes[0].count("mika") == 20 and nodes[1].sources("mika") == ["faq.md"]
    for kb in nodes:
        kb.close()
