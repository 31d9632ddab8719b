"""End to end with the official openai SDK against the real server and real models (no fakes)."""
from __future__ import annotations

import asyncio
import base64
import re
import time

import numpy as np
import pytest
import soxr
from openai import AsyncOpenAI

pytestmark = pytest.mark.e2e
CHUNK = 2400  # 100 ms at 24 kHz


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def client_for(server) -> AsyncOpenAI:
    return AsyncOpenAI(api_key="test", base_url=server.url + "/v1", websocket_base_url=server.url.replace("http", "ws") + "/v1")


async def stream_audio(conn, pcm: np.ndarray, speed: float = 1.0) -> None:
    """Send PCM16 24 kHz as 100 ms appends, `speed` times faster than real time."""
    for i in range(0, len(pcm), CHUNK):
        await conn.input_audio_buffer.append(audio=base64.b64encode(pcm[i:i + CHUNK].tobytes()).decode())
        await asyncio.sleep(0.1 / speed)


async def collect(conn, until: str, timeout: float = 90.0, stop_on=None) -> list:
    events = []
    async def run():
        async for event in conn:
            events.append(event)
            if event.type == until or (stop_on and stop_on(event)):
                return
    await asyncio.wait_for(run(), timeout)
    return events


def reply_audio(events) -> np.ndarray:
    data = b"".join(base64.b64decode(e.delta) for e in events if e.type == "response.output_audio.delta")
    return np.frombuffer(data, np.int16)


async def test_voice_turn_closes_the_loop(server, engines, jfk24k):
    async with client_for(server).realtime.connect(model="livehost") as conn:
        await conn.session.update(session={
            "type": "realtime", "instructions": "You are a friendly history teacher. Answer in one short sentence.",
            "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000},
                                "turn_detection": {"type": "server_vad", "silence_duration_ms": 1500}},
                      "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "alloy"}}})
        silence = np.zeros(24000 * 2, np.int16)
        sender = asyncio.create_task(stream_audio(conn, np.concatenate([jfk24k, silence]), speed=1.5))
        events = await collect(conn, "response.done", timeout=120)
        await sender
    kinds = [e.type for e in events]
    assert "session.created" in kinds and "session.updated" in kinds
    assert "input_audio_buffer.speech_started" in kinds and "input_audio_buffer.speech_stopped" in kinds
    assert any(e.type == "conversation.item.input_audio_transcription.delta" for e in events), "no partials"
    final = next(e for e in events if e.type == "conversation.item.input_audio_transcription.completed")
    assert "ask not what your country can do for you" in " ".join(words(final.transcript))
    done = events[-1]
    assert done.response.status == "completed"
    # replies prepared during the phrase pauses were dropped when speech resumed, unseen by the client
    assert kinds.count("response.created") == 1
    transcript = next(e for e in events if e.type == "response.output_audio_transcript.done").transcript
    assert len(words(transcript)) >= 2
    audio = reply_audio(events)
    assert len(audio) > 24000 * 0.5, "less than half a second of reply audio"
    assert np.sqrt(np.mean(audio.astype(np.float32) ** 2)) > 300, "reply audio is silent"
    # close the loop on real sound: hear the reply with the same ASR and compare with its transcript
    # chunk by chunk (each transcript delta arrives with its chunk's first audio): Whisper tiny sometimes drops the
    # end of a long clip, which says nothing about our audio
    bounds, sent = [], 0
    for e in events:
        if e.type == "response.output_audio_transcript.delta":
            bounds.append(sent // 2)
        elif e.type == "response.output_audio.delta":
            sent += len(base64.b64decode(e.delta))
    pieces = [audio[a:b] for a, b in zip(bounds, bounds[1:] + [len(audio)])]
    heard = " ".join(engines.asr.transcribe(soxr.resample(p.astype(np.float32) / 32768, 24000, 16000)).text
                     for p in pieces)
    said, got = set(words(transcript)), set(words(heard))
    overlap = len(said & got) / max(1, len(said))
    assert overlap >= 0.6, f"reply transcript {transcript!r} vs what its audio says {heard!r}"
    # audio deltas start before the reply finished: the first audio leaves while the LLM is still writing
    first_audio = kinds.index("response.output_audio.delta")
    assert first_audio < kinds.index("response.output_audio_transcript.done")


async def test_text_turn(server):
    async with client_for(server).realtime.connect(model="livehost") as conn:
        await conn.conversation.item.create(item={"type": "message", "role": "user",
                                                  "content": [{"type": "input_text", "text": "Hello! What is your name?"}]})
        await conn.response.create()
        events = await collect(conn, "response.done")
    done = events[-1]
    assert done.response.status == "completed"
    assert len(reply_audio(events)) > 24000 * 0.3
    deltas = "".join(e.delta for e in events if e.type == "response.output_audio_transcript.delta")
    final = next(e for e in events if e.type == "response.output_audio_transcript.done").transcript
    assert words(deltas) == words(final) and final


async def test_text_only_modality(server):
    async with client_for(server).realtime.connect(model="livehost") as conn:
        await conn.session.update(session={"type": "realtime", "output_modalities": ["text"]})
        await conn.conversation.item.create(item={"type": "message", "role": "user",
                                                  "content": [{"type": "input_text", "text": "Name a colour."}]})
        await conn.response.create()
        events = await collect(conn, "response.done")
    assert not reply_audio(events).size
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text.strip() and events[-1].response.status == "completed"


async def test_manual_commit_then_response(server, jfk24k):
    async with client_for(server).realtime.connect(model="livehost") as conn:
        await conn.session.update(session={"type": "realtime", "audio": {"input": {"turn_detection": None}}})
        for i in range(0, len(jfk24k), 24000):  # no VAD: audio may come as fast as it likes
            await conn.input_audio_buffer.append(audio=base64.b64encode(jfk24k[i:i + 24000].tobytes()).decode())
        await conn.input_audio_buffer.commit()
        await conn.response.create()
        events = await collect(conn, "response.done", timeout=120)
    kinds = [e.type for e in events]
    assert "input_audio_buffer.speech_started" not in kinds
    final = next(e for e in events if e.type == "conversation.item.input_audio_transcription.completed")
    assert "ask not what your country" in " ".join(words(final.transcript))
    # response.created comes at once; the reply plans (waiting for the words) before its item appears
    assert kinds.index("conversation.item.input_audio_transcription.completed") < \
        kinds.index("response.output_item.added")
    assert events[-1].response.status == "completed"


async def test_barge_in_cancels_and_truncates(server, jfk24k):
    async with client_for(server).realtime.connect(model="livehost") as conn:
        await conn.session.update(session={"type": "realtime", "max_output_tokens": 300,
                                           "instructions": "You are a storyteller. Tell long, detailed stories."})
        await conn.conversation.item.create(item={"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "Tell me a long story about a dragon who learns to bake bread."}]})
        await conn.response.create()
        events, sender = [], None
        async def listen():
            nonlocal sender
            async for event in conn:
                events.append(event)
                if event.type == "response.output_audio.delta" and sender is None and \
                        sum(e.type == "response.output_audio.delta" for e in events) >= 8:
                    # the user starts talking over the reply
                    speech = np.concatenate([jfk24k[:24000 * 3], np.zeros(24000 * 2, np.int16)])
                    sender = asyncio.create_task(stream_audio(conn, speech))
                if event.type == "response.done":
                    return
        await asyncio.wait_for(listen(), 90)
        sender.cancel()
        item_id = events[-1].response.output[0].id
        await conn.conversation.item.retrieve(item_id=item_id)
        retrieved = await collect(conn, "conversation.item.retrieved", timeout=30)
    kinds = [e.type for e in events]
    started = kinds.index("input_audio_buffer.speech_started")
    assert "response.output_audio.delta" not in kinds[started:], "audio kept flowing after the user spoke"
    done = events[-1]
    assert done.response.status == "cancelled" and done.response.status_details.reason == "turn_detected"
    heard = next(e for e in events if e.type == "response.output_audio_transcript.done").transcript
    item = retrieved[-1].item
    assert item.status == "incomplete" and item.content[0].transcript == heard
    sent_s = len(reply_audio(events)) / 24000
    assert len(words(heard)) <= sent_s * 4.5 + 3, "stored transcript holds more words than the audio sent"


async def a_long_reply_speaking(conn) -> list:
    """Text in, no VAD: a long reply asked for; returns the events up to its first audio."""
    await conn.session.update(session={"type": "realtime", "max_output_tokens": 200,
                                       "audio": {"input": {"turn_detection": None}}})
    await conn.conversation.item.create(item={"type": "message", "role": "user", "content": [
        {"type": "input_text", "text": "Describe the ocean in many sentences."}]})
    await conn.response.create()
    return await collect(conn, "response.output_audio.delta")


async def test_response_cancel_and_truncate(server):
    async with client_for(server).realtime.connect(model="livehost") as conn:
        events = await a_long_reply_speaking(conn)
        await conn.response.cancel()
        events += await collect(conn, "response.done")
        done = events[-1]
        assert done.response.status == "cancelled" and done.response.status_details.reason == "client_cancelled"
        item_id = done.response.output[0].id
        await conn.conversation.item.truncate(item_id=item_id, content_index=0, audio_end_ms=0)
        truncated = await collect(conn, "conversation.item.truncated")
        await conn.conversation.item.retrieve(item_id=item_id)
        retrieved = await collect(conn, "conversation.item.retrieved")
    assert truncated[-1].audio_end_ms == 0
    assert retrieved[-1].item.content[0].transcript == ""


async def test_cancel_then_a_new_turn_at_once(server):
    """What a page does when the user types while a reply is playing: response.cancel, conversation.item.create and
    response.create, back to back. The new turn is answered (the cancelled reply is still winding down when the
    request comes: it must not be refused as 'already active')."""
    async with client_for(server).realtime.connect(model="livehost") as conn:
        events = await a_long_reply_speaking(conn)
        await conn.response.cancel()
        await conn.conversation.item.create(item={"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "Say hello."}]})
        await conn.response.create()
        events += await collect(conn, "response.done")
        events += await collect(conn, "response.done")
    errors = [e.error.code for e in events if e.type == "error"]
    assert not errors, errors
    first, second = [e.response for e in events if e.type == "response.done"]
    assert first.status == "cancelled" and second.status == "completed" and second.id != first.id
    assert any(e.type == "response.output_audio.delta" and e.response_id == second.id for e in events)
