"""Characters through the Realtime endpoint: selection, the REST listing, emotion tags that are never spoken."""
from __future__ import annotations

import base64
import dataclasses
import re

import httpx
import numpy as np
import pytest
import soxr

from conftest import RunningServer, _free_port
from livehost.server.app import create_app
from test_realtime_errors import connect

pytestmark = pytest.mark.e2e


class ScriptedLLM:
    """Test double: an LLM that writes exactly the given text, token by token, tags and all."""

    name = "scripted"

    def __init__(self, text: str):
        self.text = text

    def warmup(self) -> None:
        pass

    async def stream(self, messages, *, max_tokens, temperature):
        for token in re.findall(r"\S+\s*", self.text):
            yield token


async def test_characters_listing_and_selection(server):
    async with httpx.AsyncClient() as client:
        listing = (await client.get(server.url + "/v1/characters")).json()["data"]
    assert {"lumi", "mika", "sol"} <= {c["id"] for c in listing}
    raw = await connect(server)
    try:
        await raw.send({"type": "session.update", "session": {"type": "realtime", "livehost": {"character": "sol"}}})
        session = (await raw.until("session.updated"))[-1]["session"]
        assert session["livehost"]["character"] == "sol" and "Sol" in session["instructions"]
        await raw.send({"type": "session.update", "session": {"livehost": {"character": "nobody"}}})
        error = (await raw.until("error"))[-1]["error"]
        assert error["param"] == "session.livehost.character" and "mika" in error["message"]
    finally:
        await raw.ws.close()


async def test_emotion_tags_never_spoken_and_prosody_changes(settings, engines):
    line = "The garden is green and quiet today."
    llm = ScriptedLLM(f"[neutral] Hi. [happy] {line} [sad] {line}")  # "Hi." first: the early first chunk
    with RunningServer(create_app(settings, dataclasses.replace(engines, llm=llm)), _free_port()) as srv:
        raw = await connect(srv)
        try:
            await raw.send({"type": "conversation.item.create", "item": {"type": "message", "role": "user",
                                                                         "content": [{"type": "input_text", "text": "Hi"}]}})
            await raw.send({"type": "response.create"})
            events = await raw.until("response.done")
        finally:
            await raw.ws.close()
    transcript = next(e for e in events if e["type"] == "response.output_audio_transcript.done")["transcript"]
    assert "[" not in transcript and "happy" not in transcript.lower() and "sad" not in transcript.lower()
    emotions = [e for e in events if e["type"] == "livehost.emotion"]
    assert [e["emotion"] for e in emotions] == ["neutral", "happy", "sad"]
    audio = np.frombuffer(b"".join(base64.b64decode(e["delta"]) for e in events
                                   if e["type"] == "response.output_audio.delta"), np.int16)
    heard = engines.asr.transcribe(soxr.resample(audio.astype(np.float32) / 32768, 24000, 16000)).text.lower()
    assert "today" in heard and "happy" not in heard and "sad" not in heard, heard
    # the same sentence, said happy then sad: the sad one is slower and softer, measurably in the audio
    start, split = emotions[1]["audio_start_ms"] * 24, emotions[2]["audio_start_ms"] * 24
    happy, sad = audio[start:split].astype(np.float32), audio[split:].astype(np.float32)

    def loudness(x):
        return np.sqrt(np.mean(x[np.abs(x) > 300] ** 2))

    assert len(sad) > len(happy) * 1.06, (len(sad) / 24000, len(happy) / 24000)  # Piper's pauses are fixed
    assert loudness(sad) < loudness(happy) * 0.9, (loudness(sad), loudness(happy))


async def test_avatar_frames_over_websocket(settings, engines):
    """Clients without WebRTC can ask for the face as images; they move while the reply speaks. The reply is scripted
    (about 3 s of voice): the model's own answer to "Hi!" can be one short word."""
    import io

    from PIL import Image
    llm = ScriptedLLM("Hello there! It is lovely to see you again, my friend.")
    with RunningServer(create_app(settings, dataclasses.replace(engines, llm=llm)), _free_port()) as srv:
        events = await _frames_of_a_reply(srv)
    frames = [e for e in events if e["type"] == "livehost.avatar.frame"]
    assert len(frames) >= 10
    images = [np.asarray(Image.open(io.BytesIO(base64.b64decode(f["data"])))) for f in frames]
    assert images[0].shape == (256, 256, 3)
    assert len({img.tobytes() for img in images}) > 3, "the face did not move"
    visemes = [e for e in events if e["type"] == "livehost.visemes"]
    assert visemes and visemes[0]["visemes"], "no viseme timings for client-side renderers"


async def _frames_of_a_reply(server) -> list[dict]:
    raw = await connect(server)
    try:
        await raw.send({"type": "session.update", "session": {"livehost": {"avatar_frames": {"fps": 10}}}})
        assert (await raw.until("session.updated"))[-1]["session"]["livehost"]["avatar_frames"]["fps"] == 10
        await raw.send({"type": "conversation.item.create", "item": {"type": "message", "role": "user",
                                                                     "content": [{"type": "input_text", "text": "Hi!"}]}})
        await raw.send({"type": "response.create", "response": {"max_output_tokens": 30}})
        events = await raw.until("response.done")
        await raw.send({"type": "session.update", "session": {"livehost": {"avatar_frames": None}}})
        await raw.until("session.updated")
    finally:
        await raw.ws.close()
    return events
