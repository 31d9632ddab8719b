"""Bad input: each mistake gets a clear `error` event, and the same session still answers the next valid turn."""
from __future__ import annotations

import asyncio
import dataclasses
import base64
import json

import numpy as np
import pytest
import websockets

pytestmark = pytest.mark.e2e


class Raw:
    """A bare WebSocket client, so tests can send what no SDK would."""

    def __init__(self, ws):
        self.ws = ws

    async def send(self, event) -> None:
        await self.ws.send(event if isinstance(event, (str, bytes)) else json.dumps(event))

    async def until(self, kind: str, timeout: float = 60) -> list[dict]:
        events = []
        async def run():
            while True:
                events.append(json.loads(await self.ws.recv()))
                if events[-1]["type"] == kind:
                    return
        await asyncio.wait_for(run(), timeout)
        return events


async def connect(server, **kw):
    ws = await websockets.connect(server.ws_url + "?model=livehost", max_size=None, **kw)
    raw = Raw(ws)
    await raw.until("session.created")
    return raw


async def text_turn_works(raw: Raw) -> None:
    await raw.send({"type": "conversation.item.create", "item": {"type": "message", "role": "user",
                                                                 "content": [{"type": "input_text", "text": "Hi!"}]}})
    await raw.send({"type": "response.create", "response": {"max_output_tokens": 24}})
    events = await raw.until("response.done")
    assert events[-1]["response"]["status"] in ("completed", "incomplete")
    assert any(e["type"] == "response.output_audio.delta" for e in events)


def pcm_b64(samples: int) -> str:
    return base64.b64encode(np.zeros(samples, np.int16).tobytes()).decode()


BAD = [
    ("not json", "{oops", "invalid_json"),
    ("not an object", "[1, 2]", "invalid_event"),
    ("no type", {"event_id": "e1"}, "missing_required_parameter"),
    ("unknown type", {"type": "session.explode"}, "invalid_event_type"),
    ("missing audio", {"type": "input_audio_buffer.append"}, "missing_required_parameter"),
    ("bad base64", {"type": "input_audio_buffer.append", "audio": "%%%not-base64%%%"}, "invalid_base64"),
    ("odd-length pcm", {"type": "input_audio_buffer.append", "audio": base64.b64encode(b"\x00\x01\x02").decode()},
     "invalid_audio"),
    ("unsupported format", {"type": "session.update", "session": {"type": "realtime", "audio": {
        "input": {"format": {"type": "audio/opus", "rate": 48000}}}}}, "invalid_value"),
    ("unsupported rate", {"type": "session.update", "session": {"audio": {
        "input": {"format": {"type": "audio/pcm", "rate": 12345}}}}}, "invalid_value"),
    ("bad threshold", {"type": "session.update", "session": {"audio": {
        "input": {"turn_detection": {"type": "server_vad", "threshold": 7}}}}}, "invalid_value"),
    ("wrong field type", {"type": "session.update", "session": {"instructions": 42}}, "invalid_value"),
    ("item without content", {"type": "conversation.item.create", "item": {"type": "message", "role": "user"}},
     "missing_required_parameter"),
    ("unknown item", {"type": "conversation.item.retrieve", "item_id": "nope"}, "item_not_found"),
    ("truncate unknown", {"type": "conversation.item.truncate", "item_id": "nope", "content_index": 0,
                          "audio_end_ms": 10}, "item_not_found"),
    ("negative truncate", {"type": "conversation.item.truncate", "item_id": "x", "content_index": 0,
                           "audio_end_ms": -5}, "invalid_value"),
    ("cancel with nothing active", {"type": "response.cancel"}, "response_cancel_not_active"),
    ("commit empty buffer", {"type": "input_audio_buffer.commit"}, "input_audio_buffer_commit_empty"),
]


@pytest.mark.parametrize("name,message,code", BAD, ids=[b[0] for b in BAD])
async def test_bad_input_gives_error_and_session_goes_on(server, name, message, code):
    raw = await connect(server)
    try:
        if isinstance(message, dict):
            message = {**message, "event_id": "evt_client_1"}
        await raw.send(message)
        events = await raw.until("error")
        error = events[-1]["error"]
        assert error["code"] == code, error
        assert error["message"] and error["type"] == "invalid_request_error"
        if isinstance(message, dict) and code != "invalid_json":
            assert error["event_id"] == "evt_client_1"
        await text_turn_works(raw)
    finally:
        await raw.ws.close()


async def test_oversized_message(server, settings):
    raw = await connect(server)
    try:
        big = {"type": "input_audio_buffer.append", "audio": pcm_b64(settings.server.max_message_bytes)}
        await raw.send(big)
        error = (await raw.until("error"))[-1]["error"]
        assert error["code"] == "message_too_large" and str(settings.server.max_message_bytes) in error["message"]
        await text_turn_works(raw)
    finally:
        await raw.ws.close()


async def test_audio_faster_than_real_time_is_slowed_not_dropped(server, settings):
    raw = await connect(server)
    try:
        ahead = settings.server.max_ahead_of_realtime_s
        for _ in range(int(ahead) + 3):  # one second of audio per message, all at once
            await raw.send({"type": "input_audio_buffer.append", "audio": pcm_b64(24000)})
        error = (await raw.until("error"))[-1]["error"]
        assert error["code"] == "input_audio_too_fast"
        await text_turn_works(raw)
    finally:
        await raw.ws.close()


async def test_g711_formats(server, jfk24k):
    import audioop  # noqa: the stdlib codec, to make G.711 input here independently of the server's code
    import soxr
    pcm8k = soxr.resample(jfk24k.astype(np.float32) / 32768, 24000, 8000)
    pcm8k = (np.clip(pcm8k, -1, 1) * 32767).astype(np.int16).tobytes()
    raw = await connect(server)
    try:
        await raw.send({"type": "session.update", "session": {"type": "realtime", "audio": {
            "input": {"format": {"type": "audio/pcmu"}, "turn_detection": None},
            "output": {"format": {"type": "audio/pcma"}}}}})
        updated = (await raw.until("session.updated"))[-1]["session"]
        assert updated["audio"]["input"]["format"]["type"] == "audio/pcmu"
        ulaw = audioop.lin2ulaw(pcm8k, 2)
        for i in range(0, len(ulaw), 8000):
            await raw.send({"type": "input_audio_buffer.append", "audio": base64.b64encode(ulaw[i:i + 8000]).decode()})
        await raw.send({"type": "input_audio_buffer.commit"})
        await raw.send({"type": "response.create"})
        events = await raw.until("response.done", timeout=120)
        done = next(e for e in events if e["type"] == "conversation.item.input_audio_transcription.completed")
        assert "ask not what your country" in done["transcript"].lower()
        alaw = b"".join(base64.b64decode(e["delta"]) for e in events if e["type"] == "response.output_audio.delta")
        audio = np.frombuffer(audioop.alaw2lin(alaw, 2), np.int16)
        seconds = len(audio) / 8000
        assert seconds > 0.3 and np.sqrt(np.mean(audio.astype(np.float32) ** 2)) > 300
    finally:
        await raw.ws.close()


async def test_client_vanishing_mid_reply_leaks_nothing(server):
    from livehost.server import metrics

    def active() -> float:
        return sum(s.value for f in metrics.SESSIONS_ACTIVE.collect() for s in f.samples)

    async def server_tasks() -> int:
        return len(asyncio.all_tasks())

    before = server.run_in_loop(server_tasks())
    for _ in range(3):
        raw = await connect(server)
        await raw.send({"type": "conversation.item.create", "item": {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "Tell me a long story about the sea."}]}})
        await raw.send({"type": "response.create"})
        await raw.until("response.output_audio.delta")
        await raw.ws.close()  # gone, mid-reply
    for _ in range(100):
        await asyncio.sleep(0.1)
        if active() == 0 and server.run_in_loop(server_tasks()) <= before:
            break
    assert active() == 0
    assert server.run_in_loop(server_tasks()) <= before, "tasks left running after the clients left"
    raw = await connect(server)  # and the server still serves
    try:
        await text_turn_works(raw)
    finally:
        await raw.ws.close()


async def test_api_keys_and_client_tokens(settings, engines):
    import httpx
    from conftest import RunningServer, _free_port
    from livehost.server.app import create_app
    server_cfg = settings.server.model_copy(update={"api_keys": ["s3cret"]})
    secured = settings.model_copy(update={"server": server_cfg})
    with RunningServer(create_app(secured, engines), _free_port()) as srv:
        with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
            await websockets.connect(srv.ws_url)
        assert refused.value.response.status_code == 401 and b"missing" in refused.value.response.body
        ws = await websockets.connect(srv.ws_url, additional_headers={"Authorization": "Bearer s3cret"})
        assert json.loads(await ws.recv())["type"] == "session.created"
        await ws.close()
        async with httpx.AsyncClient(base_url=srv.url) as client:
            assert (await client.post("/v1/realtime/client_secrets")).status_code == 401  # no key, no token
            token = (await client.post("/v1/realtime/client_secrets", headers={"Authorization": "Bearer s3cret"})
                     ).json()["value"]  # what a site's backend does for its page
            assert (await client.get("/v1/users/x/memories", headers={"Authorization": f"Bearer {token}"})
                    ).status_code == 401, "a browser token must not read users' memories"
            assert (await client.get("/v1/users/x/memories", headers={"Authorization": "Bearer s3cret"})
                    ).status_code == 200
        # browsers pass the token as a WebSocket subprotocol
        ws = await websockets.connect(srv.ws_url, subprotocols=["realtime", f"openai-insecure-api-key.{token}"])
        assert json.loads(await ws.recv())["type"] == "session.created"
        await ws.close()
        for bad in (token[:-4] + "0000", "ek_garbage.sig", "wrong-key"):
            with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
                await websockets.connect(srv.ws_url, additional_headers={"Authorization": f"Bearer {bad}"})
            assert refused.value.response.status_code == 401
        expired, _ = srv.app.state.gate.mint(ttl_s=-1)
        with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
            await websockets.connect(srv.ws_url, additional_headers={"Authorization": f"Bearer {expired}"})
        assert b"expired" in refused.value.response.body


async def test_health_and_metrics(server):
    import httpx
    raw = await connect(server)
    await text_turn_works(raw)
    await raw.ws.close()
    async with httpx.AsyncClient() as client:
        health = (await client.get(server.url + "/healthz")).json()
        assert health["status"] == "ok" and "tiny.en" in health["engines"]["asr"]
        text = (await client.get(server.url + "/metrics")).text
    for name in ("livehost_endpointing_seconds", "livehost_asr_final_seconds", "livehost_llm_first_token_seconds",
                 "livehost_tts_first_audio_seconds", "livehost_speech_end_to_first_audio_seconds",
                 "livehost_sessions_active"):
        assert name in text
    # replies already ran in this test session, so the LLM histogram has observations
    count = next(float(l.split()[-1]) for l in text.splitlines() if l.startswith("livehost_llm_first_token_seconds_count"))
    assert count >= 1


async def test_llm_server_down_fails_the_reply_clearly(settings, engines):
    from conftest import RunningServer, _free_port
    from livehost.persona.llm import OpenAICompatibleLLM
    from livehost.server.app import create_app
    down = OpenAICompatibleLLM(base_url=f"http://127.0.0.1:{_free_port()}/v1", model="m", timeout_s=2)
    broken = dataclasses.replace(engines, llm=down)
    with RunningServer(create_app(settings, broken), _free_port()) as srv:
        raw = await connect(srv)
        try:
            await raw.send({"type": "conversation.item.create", "item": {"type": "message", "role": "user",
                                                                         "content": [{"type": "input_text", "text": "Hi"}]}})
            await raw.send({"type": "response.create"})
            events = await raw.until("response.done")
            error = next(e for e in events if e["type"] == "error")["error"]
            assert "not reachable" in error["message"]
            assert events[-1]["response"]["status"] == "failed"
            await raw.send({"type": "conversation.item.retrieve", "item_id": "nope"})  # the session still answers
            assert (await raw.until("error"))[-1]["error"]["code"] == "item_not_found"
        finally:
            await raw.ws.close()
