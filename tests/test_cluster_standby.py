"""A `livehost stream` node that does not hold the stream's lease (issue 17 item 3): it stands by, says who hosts,
relays chat to the holder through Postgres (checked first: bad events get the same 400 as on the host), refuses
what only the host can do, and answers 503 (taking nothing) when the relay is full. Engine doubles: a standby
builds no stream."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

import httpx
import psycopg
import pytest
import websockets

from conftest import RunningServer, _free_port
from hardening_doubles import double_engines
from livehost.server.cluster_lease import Lease

KEY = "sk-standby"
AUTH = {"Authorization": f"Bearer {KEY}"}


def chat(text: str) -> dict:
    return {"platform": "twitch", "type": "message", "user": {"name": "ann"}, "text": text}


@pytest.fixture
async def standby(settings, fresh_postgres_url):
    from livehost.server.app import create_app
    holder = Lease(fresh_postgres_url, "stream:show", "node-elsewhere", lease_s=120, heartbeat_s=1)
    assert await holder.acquire()
    s = settings.model_copy(update={
        "server": settings.server.model_copy(update={"api_keys": [KEY]}),
        "cluster": settings.cluster.model_copy(update={"stream_id": "show", "heartbeat_s": 0.5, "ingest_backlog": 4,
                                                       "node_id": "node-b"}),
        "storage": SimpleNamespace(url=fresh_postgres_url)})  # storage.url: the cluster's Postgres
    with RunningServer(create_app(s, double_engines(), stream=True), _free_port()) as srv:
        srv.db = fresh_postgres_url
        yield srv
    await holder.release()


async def test_a_standby_relays_chat_says_who_hosts_and_refuses_host_calls(standby):
    async with httpx.AsyncClient(base_url=standby.url, headers=AUTH) as http:
        await asyncio.sleep(1.0)  # a few heartbeats: it tried the lease and stayed a standby
        state = (await http.get("/v1/stream")).json()
        assert state["role"] == "standby" and state["node"] == "node-b" and state["holder"] == "node-elsewhere"
        assert state["expires_in_s"] > 60
        one = await http.post("/v1/stream/chat", json=chat("hello from node b"))
        assert one.status_code == 200 and one.json() == {"outcome": "relayed"}
        mixed = await http.post("/v1/stream/chat", json=[chat("two"), {"platform": "twitch", "type": "message"}])
        results = mixed.json()["results"]
        assert results[0] == {"outcome": "relayed"} and "user" in results[1]["error"]
        bad = await http.post("/v1/stream/chat", json={"type": "message"})
        assert bad.status_code == 400 and "platform" in bad.json()["detail"]
        assert (await http.post("/v1/stream/skip")).status_code == 409
        full = await http.post("/v1/stream/chat", json=[chat("3"), chat("4"), chat("5")])  # backlog 4, 2 wait
        assert full.status_code == 503 and "backlog" in full.json()["detail"]
    async with await psycopg.AsyncConnection.connect(standby.db) as conn:
        rows = await (await conn.execute("SELECT payload->>'text' FROM livehost_stream_ingest ORDER BY id")).fetchall()
    assert [r[0] for r in rows] == ["hello from node b", "two"], "the full batch was taken in part"
    with pytest.raises(websockets.ConnectionClosed) as closed:
        async with websockets.connect(standby.url.replace("http", "ws") + "/v1/stream/events",
                                      additional_headers=AUTH) as ws:
            await ws.recv()
    assert closed.value.rcvd.code == 1013


async def test_the_chat_websocket_of_a_standby_relays_too(standby):
    await asyncio.sleep(1.0)
    async with websockets.connect(standby.url.replace("http", "ws") + "/v1/stream/chat",
                                  additional_headers=AUTH) as ws:
        await ws.send('{"platform": "twitch", "type": "message", "user": {"name": "ann"}, "text": "over the socket"}')
        assert await ws.recv() == '{"outcome":"relayed"}'
        await ws.send('{"platform": "twitch"}')
        assert "error" in await ws.recv()
    async with await psycopg.AsyncConnection.connect(standby.db) as conn:
        rows = await (await conn.execute("SELECT payload->>'text' FROM livehost_stream_ingest")).fetchall()
    assert [r[0] for r in rows] == ["over the socket"]
