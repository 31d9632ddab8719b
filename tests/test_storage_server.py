"""The server on shared PostgreSQL storage (engine doubles, a real PostgreSQL): /healthz reports storage; a fact told
in a session is recalled by another node's store; erasure over HTTP reaches every node; with PostgreSQL stopped
mid-session replies go on, facts queue, an erasure is 503, and the queue drains when the server is back."""
from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from hardening_doubles import HashEmbedder, connect, served
from livehost.persona.memory import MemoryStore
from livehost.persona.store import open_database


def node(url: str) -> MemoryStore:
    store = MemoryStore(open_database(url, None, "memory"), HashEmbedder())
    if store.queue is not None:
        store.queue.retry_s = 0.2
    return store


async def _storage(http: httpx.AsyncClient) -> dict:
    return (await http.get("/healthz")).json()["storage"]


async def test_healthz_reports_sqlite_by_default(settings, tmp_path):
    store = MemoryStore(tmp_path / "memory.db", HashEmbedder())
    with served(settings, memory=store) as srv:
        async with httpx.AsyncClient(base_url=srv.url) as http:
            assert await _storage(http) == {"kind": "sqlite", "where": str(tmp_path / "memory.db"), "reachable": True,
                                            "queued_writes": 0, "dropped_writes": 0}
    store.close()


async def test_two_nodes_share_memory_and_erasure_through_the_server(settings):
    from pg_server import PostgresServer, pg_bindir
    if pg_bindir() is None:
        pytest.skip("PostgreSQL server binaries not found: apt-get install postgresql")
    with PostgresServer() as pg:
        a, b = node(pg.url), node(pg.url)
        with served(settings, memory=a) as srv:
            async with httpx.AsyncClient(base_url=srv.url) as http:
                health = await _storage(http)
                assert health["kind"] == "postgresql" and health["reachable"] and health["queued_writes"] == 0
                assert health["where"] == pg.url  # (no password in this URL; redaction is tested elsewhere)
                client = await connect(srv)
                await client.send({"type": "session.update", "session": {"livehost": {"character": "sol",
                                                                                      "user_id": "ada"}}})
                await client.text_turn("My name is Ada. I am allergic to peanuts.")
                await _until(lambda: b.count("ada") >= 2)  # written by node A, read by node B
                assert {m.text for m in b.list("ada")} >= {"The user's name is Ada", "The user is allergic to peanuts"}

                pg.stop("immediate")  # PostgreSQL lost mid-session
                await client.text_turn("What is my name?")  # replies go on (memory from A's cache)
                await client.text_turn("I live in Leeds.")  # a fact while the database is down: queued
                await _until(lambda: len(a.queue) >= 1)
                health = await _storage(http)
                assert health["reachable"] is False and health["queued_writes"] >= 1
                r = await http.delete("/v1/users/ada/memories")
                assert r.status_code == 503 and "unreachable" in r.json()["detail"]  # never a silent no-op

                pg.start()
                await _until(lambda: len(a.queue) == 0, timeout=30)
                assert "The user lives in Leeds" in {m.text for m in b.list("ada")}  # the queued fact landed
                assert (await _storage(http))["reachable"] is True
                assert b.count("ada") == 3  # b has ada cached now
                r = await http.delete("/v1/users/ada/memories")  # erased through node A ...
                assert r.status_code == 200 and r.json()["deleted"] == 3
                assert b.count("ada") == 0 and b.search("ada", "my name Ada", min_score=0) == []  # ... gone on B
                await client.close()
        a.close(), b.close()


async def _until(check, timeout: float = 15) -> None:
    deadline = time.time() + timeout
    while not await asyncio.to_thread(check):
        if time.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.1)
