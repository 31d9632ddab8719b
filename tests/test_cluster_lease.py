"""One host per stream (issue 17 item 3), on a real PostgreSQL server: the lease row (server/cluster_lease.py) and
the chat relay (server/livestream/relay.py). No models: the host here is a list that records what it was given."""
from __future__ import annotations

import asyncio
import time

import pytest

from livehost.server.cluster_lease import Lease, keep
from livehost.server.livestream.relay import ChatRelay, RelayFull


def chat(text: str, user: str = "ann") -> dict:
    return {"platform": "youtube", "type": "message", "user": {"id": user, "name": user.title()}, "text": text}


async def test_one_holder_at_a_time_and_takeover_after_expiry(fresh_postgres_url):
    a = Lease(fresh_postgres_url, "stream:s1", "node-a", lease_s=2, heartbeat_s=0.5)
    b = Lease(fresh_postgres_url, "stream:s1", "node-b", lease_s=2, heartbeat_s=0.5)
    other = Lease(fresh_postgres_url, "stream:s2", "node-b", lease_s=2, heartbeat_s=0.5)
    try:
        assert await a.acquire() and a.held
        assert not await b.acquire(), "two nodes held one stream"
        assert await other.acquire(), "another stream's lease is independent"
        assert await a.renew()
        assert (await b.who())["holder"] == "node-a"
        first = a.epoch
        started = time.monotonic()  # A dies here: it renews no more
        while not await b.acquire():
            await asyncio.sleep(0.1)
        took = time.monotonic() - started
        assert took <= 2 + 0.5, f"took {took:.1f} s"  # the lease ran out; B was trying every 0.1 s here
        assert b.epoch == first + 1
        assert not await a.renew() and not a.held, "a holder whose lease was taken renewed it"
        assert (await a.who())["holder"] == "node-b"
    finally:
        for lease in (a, b, other):
            await lease.release()


async def test_a_released_lease_is_taken_at_once(fresh_postgres_url):
    a = Lease(fresh_postgres_url, "stream:s1", "node-a", lease_s=30, heartbeat_s=1)
    b = Lease(fresh_postgres_url, "stream:s1", "node-b", lease_s=30, heartbeat_s=1)
    assert await a.acquire()
    await a.release()
    assert await b.acquire(), "a released lease still blocked another node"
    await b.release()


async def test_keep_hands_the_stream_over_when_the_holder_dies(fresh_postgres_url):
    events: list[tuple[str, str]] = []

    def keeper(node: str) -> tuple[Lease, asyncio.Task]:
        lease = Lease(fresh_postgres_url, "stream:s1", node, lease_s=2, heartbeat_s=0.3)

        async def gain():
            events.append(("gain", node))

        async def loss():
            events.append(("loss", node))
        return lease, asyncio.create_task(keep(lease, gain, loss))

    (la, ta), (lb, tb) = keeper("a"), keeper("b")
    try:
        for _ in range(50):
            if events:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.5)  # past a few heartbeats: still exactly one holder
        assert len(events) == 1 and events[0][0] == "gain", events
        first = events[0][1]
        (dead, alive) = (ta, tb) if first == "a" else (tb, ta)
        dead.cancel()  # like kill -9: no release, the row just stops being renewed
        died = time.monotonic()
        while len(events) < 2 and time.monotonic() - died < 10:
            await asyncio.sleep(0.05)
        assert events[1] == ("gain", "b" if first == "a" else "a"), events
        assert time.monotonic() - died <= 2 + 0.3 + 0.5
    finally:
        ta.cancel(), tb.cancel()
        await asyncio.gather(ta, tb, return_exceptions=True)
        await la.release(), await lb.release()


async def test_a_holder_that_loses_the_database_stops_before_its_lease_runs_out():
    from pg_server import start_or_skip
    pg = start_or_skip().__enter__()  # a server of its own: this test stops it
    try:
        url = pg.url
        events: list[tuple[str, float]] = []
        lease = Lease(url, "stream:s1", "a", lease_s=3, heartbeat_s=0.5)

        async def gain():
            events.append(("gain", time.monotonic()))

        async def loss():
            events.append(("loss", time.monotonic()))
        task = asyncio.create_task(keep(lease, gain, loss))
        while not events:
            await asyncio.sleep(0.05)
        renewed = lease.valid_until - (3 - lease.margin_s)  # when the last renewal went out
        await asyncio.to_thread(pg.stop, "immediate")
        while len(events) < 2:
            await asyncio.sleep(0.05)
            assert time.monotonic() - renewed < 10, "the holder never stopped"
        assert events[1][0] == "loss"
        # stopped hosting before the row expired for the others (lease_s after the last renewal was sent)
        assert events[1][1] - renewed < 3, events[1][1] - renewed
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    finally:
        pg.close()


async def test_chat_posted_to_any_node_reaches_the_holder_in_order(fresh_postgres_url):
    standby = ChatRelay(fresh_postgres_url, "s1", backlog=100, poll_s=5)  # NOTIFY must wake it, not the poll
    holder = ChatRelay(fresh_postgres_url, "s1", poll_s=5)
    got: list = []
    serving = asyncio.create_task(holder.serve(lambda event: got.append(event) or "queued"))
    try:
        await asyncio.sleep(0.5)  # LISTEN is in place
        sent = time.monotonic()
        await standby.send([chat("first"), chat("second", "bob")])
        await standby.send([chat("third")])
        while len(got) < 3 and time.monotonic() - sent < 4:
            await asyncio.sleep(0.02)
        assert [e.text for e in got] == ["first", "second", "third"]
        assert got[1].user_name == "Bob" and got[0].platform == "youtube"
        assert time.monotonic() - sent < 4, "woken by the 5 s poll, not by NOTIFY"
    finally:
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)
        await standby.close(), await holder.close()


async def test_relayed_chat_waits_for_a_holder_is_bounded_and_old_chat_is_skipped(fresh_postgres_url):
    relay = ChatRelay(fresh_postgres_url, "s1", backlog=3, max_age_s=1.0, poll_s=0.2)
    await relay.send([chat("old one")])  # no holder yet: it waits in Postgres
    await relay.send([chat("kept"), chat("kept too")])
    with pytest.raises(RelayFull):
        await relay.send([chat("one too many")])  # all or none: the batch is refused whole
    await asyncio.sleep(1.2)
    await relay.close()
    late = ChatRelay(fresh_postgres_url, "s1", backlog=3, max_age_s=1.0, poll_s=0.2)
    got: list = []
    serving = asyncio.create_task(late.serve(lambda event: got.append(event.text) or "queued"))
    try:
        deadline = time.monotonic() + 3
        while not got and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        assert got == [], f"chat older than max_age_s was answered: {got}"
        await late.send([chat("fresh")])
        while "fresh" not in got and time.monotonic() < deadline + 3:
            await asyncio.sleep(0.05)
        assert got == ["fresh"]
    finally:
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)
        await late.close()


async def test_chat_for_a_standby_with_no_database_is_refused_whole_not_lost():
    from fastapi import HTTPException

    from livehost.server.livestream.relay import relay_payload
    from livehost.server.livestream.routes import ingest_payload
    from pg_server import _free_port
    relay = ChatRelay(f"postgresql://livehost@127.0.0.1:{_free_port()}/livehost", "s1")  # nothing listens
    bad = await relay_payload(relay, {"platform": "x", "type": "message"}, ingest_payload)
    assert "user" in bad["error"], "a bad event is refused before the database is asked"
    with pytest.raises(HTTPException) as refused:
        await relay_payload(relay, [chat("one"), chat("two")], ingest_payload)
    assert refused.value.status_code == 503 and "send it again" in refused.value.detail
    await relay.close()
