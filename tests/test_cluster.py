"""Two real nodes behind nginx on one real PostgreSQL (issue 17 item 4): the `livehost stream` CLI twice (different
ports and data dirs, the same storage.url, token secret and stream), nginx as the load balancer, the LLM tier as an
OpenAI-compatible double that records what each node asked (tests/cluster_nodes.py).

    a fact told to one node is in the prompt of a new session on the other (memory lives in Postgres)
    a token minted on one node opens a session on the other, as the same user
    chat POSTed to the standby reaches the stream's host
    kill -9 of the node holding the stream and a conversation, mid-reply: the client's reconnect through nginx lands
    on the other node, the committed fact is still there, and the stream's lease moves within lease_s + heartbeat_s

The tests share one cluster and run in this order (the last one kills a node)."""
from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
import websockets

from cluster_nodes import NGINX, LLMTier, LoadBalancer, Node, upstream_port

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(NGINX is None, reason="nginx is not installed")]
KEY = "sk-cluster-test"
AUTH = {"Authorization": f"Bearer {KEY}"}
SECRET = "cluster-test-secret-0123456789abcdef"
LEASE_S, HEARTBEAT_S = 4.0, 1.0


class Cluster:
    def __init__(self, tier: LLMTier, nodes: list[Node], lb: LoadBalancer):
        self.tier, self.nodes, self.lb = tier, nodes, lb

    def by_port(self, port: int) -> Node:
        return next(n for n in self.nodes if n.port == port)

    async def roles(self) -> dict[str, str]:
        async with httpx.AsyncClient(headers=AUTH, timeout=5) as http:
            found = {}
            for node in self.nodes:
                if node.proc.poll() is None:
                    found[node.name] = (await http.get(node.url + "/v1/stream")).json().get("role")
            return found

    async def holder(self, timeout: float = 30) -> Node:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            roles = await self.roles()
            hosts = [name for name, role in roles.items() if role == "host"]
            assert len(hosts) <= 1, f"two nodes host the stream: {roles}"
            if hosts:
                return next(n for n in self.nodes if n.name == hosts[0])
            await asyncio.sleep(0.2)
        raise AssertionError(f"no node hosts the stream after {timeout} s: {await self.roles()}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, postgres_server):
    folder = tmp_path_factory.mktemp("cluster")
    url = postgres_server.create_database("cluster")
    tier = LLMTier()
    tier.server.__enter__()
    env = {"LIVEHOST_STORAGE__URL": url, "LIVEHOST_SERVER__TOKEN_SECRET": SECRET,
           "LIVEHOST_SERVER__API_KEYS": json.dumps([KEY]), "LIVEHOST_SERVER__LOG_LEVEL": "warning",
           "LIVEHOST_LLM__ENGINE": "openai", "LIVEHOST_LLM__BASE_URL": tier.url, "LIVEHOST_LLM__MODEL": "tier-double",
           "LIVEHOST_CLUSTER__STREAM_ID": "show", "LIVEHOST_CLUSTER__LEASE_S": str(LEASE_S),
           "LIVEHOST_CLUSTER__HEARTBEAT_S": str(HEARTBEAT_S), "LIVEHOST_STREAM__SIZE": "64",
           "LIVEHOST_STREAM__FPS": "5", "LIVEHOST_STREAM__IDLE_AFTER_S": "3600", "LIVEHOST_ASR__CPU_THREADS": "1",
           "LIVEHOST_LLM__TIMEOUT_S": "10"}
    nodes = [Node("node-a", folder, env), Node("node-b", folder, env)]
    lb = None
    try:
        for node in nodes:
            node.wait_ready(KEY)
        lb = LoadBalancer(folder / "nginx", [n.port for n in nodes])
        yield Cluster(tier, nodes, lb)
    finally:
        if lb is not None:
            lb.stop()
        for node in nodes:
            node.stop()
        tier.server.__exit__()


async def mint(node_url: str, user: str) -> str:
    async with httpx.AsyncClient(headers=AUTH) as http:
        r = await http.post(node_url + "/v1/realtime/client_secrets",
                            json={"session": {"livehost": {"user_id": user, "character": "sol"}}})
    assert r.status_code == 200, r.text
    return r.json()["value"]


class Client:
    def __init__(self, ws):
        self.ws = ws
        self.port = upstream_port(ws.response.headers)

    @classmethod
    async def open(cls, url: str, token: str) -> tuple["Client", dict]:
        ws = await websockets.connect(url.replace("http", "ws") + "/v1/realtime", max_size=None,
                                      additional_headers={"Authorization": f"Bearer {token}"})
        client = cls(ws)
        created = (await client.until("session.created"))[-1]["session"]
        return client, created

    async def until(self, kind: str, timeout: float = 60) -> list[dict]:
        events: list[dict] = []

        async def run():
            while True:
                events.append(json.loads(await self.ws.recv()))
                if events[-1]["type"] == kind:
                    return
                if events[-1]["type"] == "error":
                    raise AssertionError(f"server error: {events[-1]}")
        await asyncio.wait_for(run(), timeout)
        return events

    async def say(self, text: str, wait: bool = True) -> list[dict]:
        await self.ws.send(json.dumps({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}}))
        await self.ws.send(json.dumps({"type": "response.create", "response": {"max_output_tokens": 40}}))
        return await self.until("response.done") if wait else []


async def memories(node: Node, user: str) -> str:
    async with httpx.AsyncClient(headers=AUTH) as http:
        r = await http.get(f"{node.url}/v1/users/{user}/memories")
    assert r.status_code == 200, r.text
    return " ".join(m["text"] for m in r.json()["data"]).lower()


async def wait_memory(node: Node, user: str, word: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if word in (found := await memories(node, user)):
            return found
        await asyncio.sleep(0.2)
    raise AssertionError(f"{node.name} does not know {user}'s {word!r} after {timeout} s: {found!r}")


async def test_a_token_minted_on_one_node_opens_a_session_on_the_other(cluster):
    a, b = cluster.nodes
    token = await mint(a.url, "u_tok")
    client, created = await Client.open(b.url, token)
    try:
        assert created["livehost"]["user_id"] == "u_tok" and created["livehost"]["character"] == "sol"
        await client.say("Hi there!")
        assert cluster.tier.prompts_from(b.name), "node B did not answer the session"
    finally:
        await client.ws.close()


async def test_a_fact_told_to_one_node_is_recalled_by_a_new_session_on_the_other(cluster):
    a, b = cluster.nodes
    client, _ = await Client.open(a.url, await mint(a.url, "u_ada"))
    await client.say("My name is Ada. I am allergic to peanuts.")
    await client.ws.close()
    assert "peanut" in await wait_memory(b, "u_ada", "peanut")  # B reads it from Postgres
    client, _ = await Client.open(b.url, await mint(b.url, "u_ada"))
    try:
        before = len(cluster.tier.prompts_from(b.name))
        await client.say("What snack would you pick for me?")
        prompt = cluster.tier.prompts_from(b.name)[before:][-1].lower()
        assert "peanut" in prompt, f"node B's prompt does not recall the fact told to node A: {prompt[:800]}"
    finally:
        await client.ws.close()


async def test_chat_posted_to_the_standby_reaches_the_stream_host(cluster):
    holder = await cluster.holder()
    standby = next(n for n in cluster.nodes if n is not holder)
    async with httpx.AsyncClient(headers=AUTH, timeout=5) as http:
        received = (await http.get(holder.url + "/v1/stream")).json()["queue"]["received"]
        r = await http.post(standby.url + "/v1/stream/chat", json={
            "platform": "twitch", "type": "message", "user": {"name": "zed"}, "text": "hello from the other node"})
        assert r.json() == {"outcome": "relayed"}, r.text
        deadline = time.monotonic() + 10
        while (await http.get(holder.url + "/v1/stream")).json()["queue"]["received"] <= received:
            assert time.monotonic() < deadline, "the host never got the chat relayed by the standby"
            await asyncio.sleep(0.1)


async def test_kill_9_mid_reply_the_client_reconnects_to_the_other_node_and_the_stream_moves(cluster):
    holder = await cluster.holder()
    survivor = next(n for n in cluster.nodes if n is not holder)
    token = await mint(holder.url, "u_kim")
    for _ in range(6):  # round robin: open sessions through nginx until one lands on the stream's host
        client, _ = await Client.open(cluster.lb.url, token)
        if client.port == holder.port:
            break
        await client.ws.close()
    assert client.port == holder.port, "nginx never sent a session to the stream's host"
    await client.say("I am Kim and my favourite colour is teal.")
    await wait_memory(survivor, "u_kim", "teal")  # committed: in Postgres, seen by the other node
    cluster.tier.pace_s = 0.3  # a long reply, 0.3 s a word
    await client.say("Tell me a long story.", wait=False)
    await client.until("response.output_audio_transcript.delta", timeout=30)
    holder.kill9()
    killed = time.monotonic()
    took_over = asyncio.create_task(cluster.holder(timeout=LEASE_S + HEARTBEAT_S + 30))
    cluster.tier.pace_s = 0.0
    with pytest.raises(websockets.ConnectionClosed):
        await client.until("response.done", timeout=20)

    again, created = await Client.open(cluster.lb.url, token)  # the same token: still valid, on any node
    try:
        assert again.port == survivor.port, f"the reconnect went to {again.port}, not the surviving node"
        assert created["livehost"]["user_id"] == "u_kim"
        assert "teal" in await memories(survivor, "u_kim"), "a committed fact was lost with the node"
        before = len(cluster.tier.prompts_from(survivor.name))
        await again.say("What colour should my new bike be?")
        prompt = cluster.tier.prompts_from(survivor.name)[before:][-1].lower()
        assert "teal" in prompt, prompt[:800]
    finally:
        await again.ws.close()

    new_host = await took_over
    moved = time.monotonic() - killed  # when it was seen, to within the 0.2 s poll (or later, after the above)
    assert new_host is survivor
    print(f"stream lease moved to {survivor.name} {moved:.1f} s after kill -9 (lease {LEASE_S} s, heartbeat "
          f"{HEARTBEAT_S} s)")
    async with httpx.AsyncClient(headers=AUTH, timeout=5) as http:  # chat through nginx reaches the new host
        r = await http.post(cluster.lb.url + "/v1/stream/chat", json={
            "platform": "twitch", "type": "message", "user": {"name": "zed"}, "text": "are you still there?"})
        assert r.status_code == 200 and "outcome" in r.json(), r.text
