"""Limits (issue 13, items 10-15): a client must not be able to take the server from others. A slow reader is let
go, sessions and replies are capped with clear errors, rates are per client, conversations and memory work are
bounded, the WebRTC call cap holds under a burst, and chat ingest bodies are bounded. Engine doubles throughout."""
from __future__ import annotations

import asyncio
import json
import threading
from types import SimpleNamespace

import httpx
import pytest
import websockets

from hardening_doubles import NeverReads, connect, served
from livehost.server import metrics


def counter(metric, *labels) -> float:
    return (metric.labels(*labels) if labels else metric)._value.get()


def item(text: str) -> dict:
    return {"type": "conversation.item.create",
            "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}}


class HeldLLM:
    """Writes a few words once `release` (a threading.Event) is set: a reply that stays in progress meanwhile."""

    def __init__(self):
        self.release = threading.Event()

    async def stream(self, messages, *, max_tokens, temperature):
        while not self.release.is_set():
            await asyncio.sleep(0.01)
        for word in ("All ", "done."):
            yield word


async def sessions_now(srv) -> int:
    async with httpx.AsyncClient(base_url=srv.url) as http:
        return (await http.get("/healthz")).json()["sessions"]


async def settle(srv, want: int) -> int:
    for _ in range(100):
        if (now := await sessions_now(srv)) == want:
            return now
        await asyncio.sleep(0.05)
    return await sessions_now(srv)


# ---- 10. backpressure ----------------------------------------------------------------------------------------

async def test_a_client_that_never_reads_is_disconnected(settings):
    with served(settings, max_outbox_bytes=1 << 20) as srv:
        before, slow = await sessions_now(srv), counter(metrics.SLOW_CLIENTS, "websocket")
        text = "words " * 5000  # each item comes back twice (added, done): ~60 KB of events per message
        async with NeverReads(srv.port) as client:
            for _ in range(600):
                try:
                    await asyncio.wait_for(client.send(item(text)), 10)
                except (ConnectionResetError, BrokenPipeError, asyncio.TimeoutError):
                    break  # the server has let it go, or its buffers are full: the check below decides
                if counter(metrics.SLOW_CLIENTS, "websocket") > slow:
                    break
            for _ in range(300):  # up to 30 s: a busy machine (the whole suite on 2 cores) drains the loop slowly
                if counter(metrics.SLOW_CLIENTS, "websocket") > slow:
                    break
                await asyncio.sleep(0.1)
            assert counter(metrics.SLOW_CLIENTS, "websocket") == slow + 1
            assert await settle(srv, before) == before, "the slow client's session was left behind"
            async with asyncio.timeout(30):  # reading at last, it finds the server has let it go
                try:
                    while await client.reader.read(1 << 16):
                        pass
                except ConnectionResetError:
                    pass  # a reset is the server letting go too
        other = await connect(srv)  # everyone else is served
        await other.text_turn()
        await other.close()


def test_the_outbox_holds_a_bounded_number_of_bytes():
    from livehost.server.outbox import Outbox

    async def run():
        box = Outbox(1 << 16)
        for i in range(100):
            box.put_nowait({"type": "response.output_audio.delta", "delta": "A" * 4000, "n": i})
        assert box.overflowed.is_set() and box.bytes <= 1 << 16 and box.qsize() < 20
        while not box.empty():
            box.get_nowait()
        assert box.bytes == 0
    asyncio.run(run())


# ---- 13. sessions, replies, rates ----------------------------------------------------------------------------

async def test_max_sessions_is_a_clear_error(settings):
    with served(settings, max_sessions=2) as srv:
        first, second = await connect(srv), await connect(srv)
        refused = counter(metrics.SESSIONS_REFUSED, "session_limit_reached")
        ws = await websockets.connect(srv.ws_url)
        event = json.loads(await ws.recv())
        assert event["type"] == "error" and event["error"]["code"] == "session_limit_reached", event
        await asyncio.wait_for(ws.wait_closed(), 5)
        assert ws.close_code == 1013
        assert counter(metrics.SESSIONS_REFUSED, "session_limit_reached") == refused + 1
        await first.close()
        await settle(srv, 1)
        third = await connect(srv)  # a freed slot is taken again
        await third.text_turn()
        await third.close()
        await second.close()


async def test_replies_beyond_max_replies_get_server_busy(settings):
    llm = HeldLLM()
    with served(settings, llm=llm, max_replies=1) as srv:
        first, second = await connect(srv), await connect(srv)
        try:
            await first.send(item("Tell me something."))
            await first.send({"type": "response.create", "response": {"output_modalities": ["text"]}})
            await first.until("response.created")
            await second.send(item("And me?"))
            await second.send({"type": "response.create", "response": {"output_modalities": ["text"]}})
            error = await second.error()
            assert error["code"] == "server_busy" and "max_replies" in error["message"]
            async with httpx.AsyncClient(base_url=srv.url) as http:
                text = (await http.get("/metrics")).text
            assert "livehost_replies_active 1.0" in text and 'livehost_replies_refused_total{reason="server_busy"}' in text
            llm.release.set()
            assert (await first.until("response.done"))[-1]["response"]["status"] == "completed"
            await second.text_turn()  # room again
        finally:
            llm.release.set()
            await first.close()
            await second.close()


async def test_response_create_is_rate_limited_per_session(settings):
    with served(settings, responses_per_minute=2) as srv:
        client = await connect(srv)
        await client.text_turn()
        await client.text_turn()
        await client.send({"type": "response.create", "response": {"output_modalities": ["text"]}})
        assert (await client.error())["code"] == "rate_limit_exceeded"
        other = await connect(srv)  # per session: another client is not affected
        await other.text_turn()
        await client.close()
        await other.close()


async def test_a_flood_of_events_is_slowed_not_dropped(settings):
    with served(settings, events_per_second=20) as srv:
        client = await connect(srv)
        for i in range(60):
            await client.send({"type": "conversation.item.retrieve", "item_id": f"nope{i}", "event_id": f"e{i}"})
        seen, told = set(), 0
        while len(seen) < 60:
            error = await client.error(timeout=10)
            if error["code"] == "rate_limit_exceeded":
                told += 1
            else:
                assert error["code"] == "item_not_found"
                seen.add(error["event_id"])
        assert told == 1 and seen == {f"e{i}" for i in range(60)}
        await client.text_turn()
        await client.close()


async def test_new_sessions_per_address_are_rate_limited(settings):
    with served(settings, sessions_per_minute=3) as srv:
        for _ in range(3):
            await (await connect(srv)).close()
        ws = await websockets.connect(srv.ws_url)
        assert json.loads(await ws.recv())["error"]["code"] == "rate_limit_exceeded"
        await ws.close()


# ---- 11, 12. conversation and memory work -----------------------------------------------------------------

async def test_conversation_text_is_bounded(settings):
    with served(settings, max_item_chars=500, max_conversation_chars=1200) as srv:
        client = await connect(srv)
        await client.send(item("x" * 501))
        error = await client.error()
        assert error["code"] == "item_too_large" and "max_item_chars" in error["message"]
        ids = []
        for i in range(6):
            await client.send({**item(f"{i} " + "y" * 398), "event_id": f"e{i}"})
            ids.append((await client.until("conversation.item.done"))[-1]["item"]["id"])
        await client.send({"type": "conversation.item.retrieve", "item_id": ids[0]})
        assert (await client.error())["code"] == "item_not_found"  # the oldest left first
        await client.send({"type": "conversation.item.retrieve", "item_id": ids[-1]})
        assert (await client.until("conversation.item.retrieved"))[-1]["item"]["id"] == ids[-1]
        await client.text_turn()
        await client.close()


def test_fact_extraction_is_bounded():
    from livehost.persona.memory import MAX_FACTS, MAX_FACT_TEXT, extract_facts
    assert extract_facts("My name is Ada.") == [("The user's name is Ada", 0.9)]
    assert extract_facts("word " * (MAX_FACT_TEXT // 5) + " My name is Ada.") == []  # past the bound: not read
    many = " ".join(f"I love thing{i}." for i in range(30))
    assert len(extract_facts(many)) == MAX_FACTS


async def test_fact_extraction_runs_off_the_event_loop(monkeypatch):
    from engine_doubles import SlowMemory
    from livehost.persona import memory as memory_module
    from livehost.persona.character import BUILTIN_DIR, CharacterLibrary
    from livehost.persona.dialogue import Dialogue
    threads = []
    real = memory_module.extract_facts

    def spy(text):
        threads.append(threading.current_thread())
        return real(text)
    monkeypatch.setattr(memory_module, "extract_facts", spy)
    store = SlowMemory()
    dialogue = Dialogue(CharacterLibrary([BUILTIN_DIR]).get("sol"), None, user_id="ada", memory=store)
    dialogue.heard_user("My name is Ada. " + "and so on " * 10_000)
    await dialogue.flush()
    assert threads and threads[0] is not threading.main_thread()
    assert store.added == [("ada", "The user's name is Ada")]


# ---- 14. the WebRTC call cap under a burst --------------------------------------------------------------------

async def test_concurrent_offers_cannot_overshoot_max_calls(settings):
    aiortc = pytest.importorskip("aiortc")
    pc = aiortc.RTCPeerConnection()
    pc.addTransceiver("audio", direction="sendrecv")
    pc.createDataChannel("oai-events")
    await pc.setLocalDescription(await pc.createOffer())
    offer = pc.localDescription.sdp
    await pc.close()
    s = settings.model_copy(update={"webrtc": settings.webrtc.model_copy(update={
        "max_calls": 3, "host_addresses": ["127.0.0.1"]})})
    with served(s) as srv:
        async with httpx.AsyncClient(base_url=srv.url, timeout=30) as http:
            answers = await asyncio.gather(*[http.post("/v1/realtime/calls", content=offer,
                                                       headers={"Content-Type": "application/sdp"})
                                             for _ in range(10)])
            codes = sorted(r.status_code for r in answers)
            assert codes.count(201) == 3 and set(codes) == {201, 503}, codes
            for r in answers:
                if r.status_code == 201:
                    assert (await http.post(r.headers["Location"] + "/hangup")).status_code == 200
        assert srv.app.state.calls == {}


# ---- 15. chat ingest ---------------------------------------------------------------------------------------

@pytest.fixture
def ingest_app(settings):
    from fastapi import FastAPI
    from livehost.server.auth import Gate
    from livehost.server.livestream.routes import router
    app = FastAPI()
    app.include_router(router)
    taken = []
    app.state.gate, app.state.settings = Gate([]), settings
    app.state.stream = SimpleNamespace(host=SimpleNamespace(ingest=lambda e: taken.append(e) or "queued"))
    app.state.taken = taken
    return app


def chat(text: str = "hi") -> dict:
    return {"platform": "youtube", "type": "message", "user": {"id": "1", "name": "Ann"}, "text": text}


async def test_chat_ingest_bodies_are_bounded(ingest_app, settings):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=ingest_app), base_url="http://t") as http:
        assert (await http.post("/v1/stream/chat", json=chat())).json() == {"outcome": "queued"}
        huge = b'{"platform": "youtube", "text": "' + b"x" * (settings.server.max_message_bytes + 10) + b'"}'
        r = await http.post("/v1/stream/chat", content=huge)
        assert r.status_code == 413, r.text
        r = await http.post("/v1/stream/chat", content="[" * 5000 + "]" * 5000)
        assert r.status_code == 400 and "deeper" in r.text, r.text
        r = await http.post("/v1/stream/chat", json=[[chat()] * 400] * 3)  # lists in a list: 1200 events
        assert r.status_code == 200 and all("error" in x for x in r.json()["results"]), r.text[:200]
        assert len(ingest_app.state.taken) == 1


def test_chat_socket_survives_deep_nesting_and_binary(ingest_app):
    from starlette.testclient import TestClient
    with TestClient(ingest_app).websocket_connect("/v1/stream/chat") as ws:
        ws.send_text("[" * 5000 + "]" * 5000)
        assert "deeper" in ws.receive_json()["error"]
        ws.send_bytes(json.dumps(chat()).encode())
        assert ws.receive_json() == {"outcome": "queued"}
        ws.send_text(json.dumps(chat()))
        assert ws.receive_json() == {"outcome": "queued"}


async def test_stream_operator_routes_refuse_web_pages_on_a_keyless_server(ingest_app):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=ingest_app), base_url="http://t") as http:
        r = await http.post("/v1/stream/chat", json=chat(), headers={"Origin": "http://localhost:5173"})
        assert r.status_code == 403, r.text
        assert (await http.post("/v1/stream/chat", json=chat())).status_code == 200  # a bot (no Origin)


async def test_a_webrtc_peer_that_does_not_read_its_events_is_hung_up(settings):
    aiortc = pytest.importorskip("aiortc")
    s = settings.model_copy(update={"webrtc": settings.webrtc.model_copy(update={"host_addresses": ["127.0.0.1"]})})
    with served(s) as srv:
        pc = aiortc.RTCPeerConnection()
        pc.addTransceiver("audio", direction="sendrecv")
        pc.createDataChannel("oai-events")
        await pc.setLocalDescription(await pc.createOffer())
        async with httpx.AsyncClient(base_url=srv.url, timeout=30) as http:
            r = await http.post("/v1/realtime/calls", content=pc.localDescription.sdp,
                                headers={"Content-Type": "application/sdp"})
        assert r.status_code == 201, r.text
        await pc.setRemoteDescription(aiortc.RTCSessionDescription(r.text, "answer"))
        call = next(iter(srv.app.state.calls.values()))
        for _ in range(200):  # connected, with its events channel open
            if call.pc.connectionState == "connected" and len(call.tasks) >= 3:
                break
            await asyncio.sleep(0.05)
        before = counter(metrics.SLOW_CLIENTS, "webrtc")
        srv.run_in_loop(_flood(call.session))  # more events than the outbox holds, faster than anyone reads
        for _ in range(100):
            if srv.app.state.calls == {}:
                break
            await asyncio.sleep(0.05)
        assert srv.app.state.calls == {} and counter(metrics.SLOW_CLIENTS, "webrtc") == before + 1
        await pc.close()


async def _flood(session) -> None:
    for _ in range(2000):
        session.emit("livehost.test", data="x" * 10_000)


async def test_client_tokens_per_address_are_rate_limited(settings):
    with served(settings, sessions_per_minute=3) as srv:
        async with httpx.AsyncClient(base_url=srv.url) as http:
            codes = [(await http.post("/v1/realtime/client_secrets")).status_code for _ in range(5)]
        assert codes == [200, 200, 200, 429, 429], codes


async def test_a_voice_turn_on_a_busy_server_gets_server_busy_too(settings):
    from engine_doubles import drain, engines, events_until
    from livehost.server.auth import Identity
    from livehost.server.limits import ServerLimits
    from livehost.server.session import RealtimeSession
    from hardening_doubles import with_server
    s = with_server(settings, max_replies=1)
    limits, llm = ServerLimits(s.server), HeldLLM()
    busy = RealtimeSession(engines(llm=llm), s, guard=limits.open(Identity("local")))
    busy.start()
    await busy.handle(json.dumps(item("Tell me something.")))
    await busy.handle(json.dumps({"type": "response.create"}))
    await events_until(busy, "response.created")
    voice = RealtimeSession(engines(), s, guard=limits.open(Identity("local")))
    voice.start()
    for kind, data in (("speech_started", {"audio_start_ms": 0}),
                       ("speech_stopped", {"audio_end_ms": 900, "endpointing_s": 0.4}),
                       ("speculative", {"transcript": "hello there"}),
                       ("final", {"transcript": "hello there", "audio": [0] * 16000, "asr_wait_s": 0.0})):
        voice._on_listener(kind, {"item_id": "item_u1", **data})
        await asyncio.sleep(0.01)
    error = (await events_until(voice, "error"))[-1]["error"]
    assert error["code"] == "server_busy"
    await asyncio.sleep(0.1)
    assert not any(e["type"] == "response.created" for e in drain(voice)) and voice.reply is None
    llm.release.set()
    await events_until(busy, "response.done")
    await busy.close()
    await voice.close()
