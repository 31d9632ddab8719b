"""Bilibili danmaku client against a real local WebSocket server that speaks the packet format (built with the codec's
own encoders): auth, batches, heartbeats, popularity, malformed data, drops, auth refusal, timeouts and close()."""
from __future__ import annotations

import asyncio
import logging
import socket

import pytest
from websockets.asyncio.server import ServerConnection, serve

from livehost.server.livestream import bilibili as bl
from livehost.server.livestream.bilibili_client import BilibiliChat
from livehost.server.livestream.events import Gift, Message, SuperChat

from test_livestream_bilibili import DANMU, FOLLOW, GIFT, ROOM, SC, cmd

DANMU2 = {"cmd": "DANMU_MSG", "info": [[0, 1, 25, 0, 1700000009000], "第二条", [77, "小红", 0]]}


class FakeRoom:
    """A local danmaku server that hands every connection to the test, which scripts both sides of it."""

    def __init__(self):
        self.conns: asyncio.Queue[ServerConnection] = asyncio.Queue()

    async def _handler(self, ws: ServerConnection) -> None:
        await self.conns.put(ws)
        await ws.wait_closed()  # the connection lives until the test or the client closes it

    async def start(self) -> str:
        self.server = await serve(self._handler, "127.0.0.1", 0)
        return f"ws://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/sub"

    async def next_conn(self) -> ServerConnection:
        return await asyncio.wait_for(self.conns.get(), 5)


@pytest.fixture
async def room():
    fake = FakeRoom()
    fake.url = await fake.start()
    yield fake
    fake.server.close()
    await fake.server.wait_closed()


async def recv_packets(ws: ServerConnection) -> list[bl.Packet]:
    return bl.decode(await asyncio.wait_for(ws.recv(), 5))


async def accept(ws: ServerConnection, code: int = 0) -> dict:
    """Check the client's first frame is one auth packet, answer it, and return its JSON."""
    [auth] = await recv_packets(ws)
    assert auth.op == bl.OP_AUTH
    await ws.send(bl.encode_packet(bl.OP_AUTH_REPLY, {"code": code}))
    return auth.json()


class Consumer:
    """Runs `chat.events()` in a task, queueing what it yields."""

    def __init__(self, chat: BilibiliChat):
        self.chat, self.queue = chat, asyncio.Queue()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for event in self.chat.events():
            await self.queue.put(event)

    async def take(self, n: int) -> list:
        return [await asyncio.wait_for(self.queue.get(), 5) for _ in range(n)]

    async def stop(self) -> None:
        await self.chat.close()
        await asyncio.wait_for(self.task, 5)  # close() ends the loop: the task finishes, not cancelled


async def until(cond, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def other_tasks(before: set) -> set:
    return asyncio.all_tasks() - before - {asyncio.current_task()}


async def test_auth_events_heartbeats_drops_and_close(room, caplog):
    caplog.set_level(logging.INFO)
    before = asyncio.all_tasks()
    chat = BilibiliChat(ROOM, url=room.url, uid=7, key="tok", buvid="BUVID-1", heartbeat_s=0.2,
                        backoff_initial_s=0.05)
    consumer = Consumer(chat)
    ws = await room.next_conn()
    auth = await accept(ws)
    assert auth["roomid"] == int(ROOM) and auth["uid"] == 7 and auth["key"] == "tok" and auth["buvid"] == "BUVID-1"
    assert auth["protover"] == (3 if bl.brotli else 2)
    await until(chat.authenticated.is_set)

    # a zlib batch with one broken command inside, a malformed frame, a text frame, then more chat
    await ws.send(bl.encode_batch([cmd(DANMU), cmd(GIFT), bl.encode_packet(bl.OP_COMMAND, b"{not json"), cmd(SC)]))
    await ws.send(b"\x00\x00\x00\x10garbage")
    await ws.send("a text frame")
    expected = 3
    if bl.brotli is not None:
        await ws.send(bl.encode_batch([cmd(FOLLOW)], ver=bl.VER_BROTLI))
        expected += 1
    await ws.send(cmd(DANMU2))
    events = await consumer.take(expected + 1)
    msg, gift, sc = events[:3]
    assert isinstance(msg, Message) and (msg.user_id, msg.user_name, msg.text) == ("123456", "小明", "主播好！今天玩什么？")
    assert msg.platform == "bilibili" and msg.channel == ROOM and msg.ts == 1700000000.123
    assert isinstance(gift, Gift) and (gift.amount, gift.currency, gift.gift_name, gift.count) == (0.5, "CNY", "小花花", 5)
    assert isinstance(sc, SuperChat) and (sc.amount, sc.text, sc.user_name) == (30, "能唱首歌吗", "SC老板")
    assert isinstance(events[-1], Message) and events[-1].text == "第二条" and events[-1].user_name == "小红"
    assert chat.stream.errors == 2  # the bad command and the malformed frame: counted, the loop goes on

    # heartbeats (op 2) every heartbeat_s; the reply (op 3) carries the popularity
    beats = 0
    while beats < 3:
        beats += sum(p.op == bl.OP_HEARTBEAT for p in await recv_packets(ws))
    await ws.send(bl.encode_packet(bl.OP_HEARTBEAT_REPLY, 4242))
    await until(lambda: chat.popularity == 4242)

    # the server closes the connection cleanly, then one drops without a close frame: the client comes back each time
    await ws.close()
    ws = await room.next_conn()
    assert (await accept(ws))["roomid"] == int(ROOM)
    await ws.send(cmd(DANMU2))
    assert (await consumer.take(1))[0].text == "第二条"
    ws.transport.abort()
    ws = await room.next_conn()
    await accept(ws)
    await ws.send(bl.encode_batch([cmd(DANMU)]))
    assert (await consumer.take(1))[0].user_name == "小明"
    assert chat.connects == 3
    assert sum("connection lost" in r.getMessage() for r in caplog.records) == 2

    await consumer.stop()
    await asyncio.wait_for(ws.wait_closed(), 5)  # the client closed its side too
    assert not chat.authenticated.is_set() and chat._heartbeat is None
    await until(lambda: not other_tasks(before))  # no heartbeat, consumer or connection task left behind


async def test_auth_refusal_is_logged_and_retried(room, caplog):
    caplog.set_level(logging.INFO)
    chat = BilibiliChat(int(ROOM), url=room.url, heartbeat_s=0.2, backoff_initial_s=0.05)
    consumer = Consumer(chat)
    ws = await room.next_conn()
    assert "key" not in await accept(ws, code=-101)
    await asyncio.wait_for(ws.wait_closed(), 5)  # refused: the client hangs up...
    refusals = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage().split(" (")[0] for r in refusals] == [f"bilibili refused the auth for room {ROOM}: code -101"]
    ws = await room.next_conn()  # ...and tries again after the backoff
    await accept(ws)
    await ws.send(cmd(DANMU))
    assert (await consumer.take(1))[0].text == "主播好！今天玩什么？"
    assert chat.connects == 1
    await consumer.stop()


async def test_silent_server_times_out_and_reconnects(room, caplog):
    caplog.set_level(logging.INFO)
    chat = BilibiliChat(ROOM, url=room.url, heartbeat_s=0.1, idle_timeout_s=0.4, backoff_initial_s=0.05)
    consumer = Consumer(chat)
    ws = await room.next_conn()
    await recv_packets(ws)  # the auth packet, never answered
    ws = await room.next_conn()
    await accept(ws)  # answered, but no heartbeat replies follow
    ws = await room.next_conn()
    messages = [r.getMessage() for r in caplog.records]
    assert any("no auth reply within" in m for m in messages)
    assert any("heartbeat replies stopped" in m for m in messages)
    await consumer.stop()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_unreachable_server_backs_off_and_close_ends_the_wait(caplog):
    caplog.set_level(logging.INFO)
    chat = BilibiliChat(ROOM, url=f"ws://127.0.0.1:{_closed_port()}/sub", backoff_initial_s=10)
    consumer = Consumer(chat)
    await until(lambda: any("reconnecting in" in r.getMessage() for r in caplog.records))
    assert any("connection lost" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    t0 = asyncio.get_running_loop().time()
    await consumer.stop()  # wakes the 10 s backoff at once
    assert asyncio.get_running_loop().time() - t0 < 1
    # a closed client yields nothing; a bad room id is refused up front
    assert [e async for e in chat.events()] == []
    with pytest.raises(ValueError, match="numeric room id"):
        BilibiliChat("not-a-room")


async def test_abandoning_the_iterator_cleans_up(room):
    before = asyncio.all_tasks()
    chat = BilibiliChat(ROOM, url=room.url, heartbeat_s=0.05)
    events = chat.events()
    first = asyncio.ensure_future(anext(events))
    ws = await room.next_conn()
    await accept(ws)
    await ws.send(cmd(DANMU))
    assert (await asyncio.wait_for(first, 5)).user_name == "小明"
    assert chat._heartbeat is not None and not chat._heartbeat.done()
    await events.aclose()  # a caller that breaks out of `async for` early
    assert chat._heartbeat is None and not chat.authenticated.is_set()
    await asyncio.wait_for(ws.wait_closed(), 5)
    await until(lambda: not other_tasks(before))
