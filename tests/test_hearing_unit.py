"""The session's hearing decisions on engine doubles (no models): transcription sessions make no replies, idle
timeouts prompt the user, semantic_vad needs its model, and a new session primes the LLM's prompt cache."""
from __future__ import annotations

import asyncio
import json

import pytest

from engine_doubles import WordsLLM, drain, engines, events_until, send, user_text
from livehost.server.session import RealtimeSession


class RecordingLLM(WordsLLM):
    def __init__(self):
        super().__init__("Are you still there?")
        self.requests: list[tuple[list[dict], int]] = []

    async def stream(self, messages, *, max_tokens, temperature):
        self.requests.append((list(messages), max_tokens))
        async for token in super().stream(messages, max_tokens=max_tokens, temperature=temperature):
            yield token


def session(settings, llm=None, **kw) -> RealtimeSession:
    s = RealtimeSession(engines(llm), settings, "websocket", **kw)
    s.start()
    return s


async def update(s: RealtimeSession, session: dict) -> None:
    await s.handle(json.dumps({"type": "session.update", "session": session}))


def heard(s: RealtimeSession, item: str, words: str) -> None:
    """What the ears report for one voice turn, without a VAD or an ASR."""
    s._on_listener("speech_started", {"item_id": item, "audio_start_ms": 0})
    s._on_listener("speech_stopped", {"item_id": item, "audio_end_ms": 900, "endpointing_s": 0.4})
    s._on_listener("speculative", {"item_id": item, "transcript": words})
    s._on_listener("final", {"item_id": item, "transcript": words, "audio": [0] * 16000, "asr_wait_s": 0.0})


async def test_a_new_session_reads_its_system_prompt_into_the_llm_before_the_user_speaks(settings):
    llm = RecordingLLM()
    s = session(settings, llm)
    await asyncio.sleep(0.1)
    messages, max_tokens = llm.requests[0]
    assert max_tokens == 1 and messages[0] == {"role": "system",
                                               "content": s.dialogue.character.persona_prompt()}
    await update(s, {"type": "realtime", "instructions": "You are a pirate."})
    await asyncio.sleep(0.1)
    assert llm.requests[-1] == ([{"role": "system", "content": "You are a pirate."},
                              {"role": "user", "content": "Hi"}], 1)
    await s.close()


@pytest.mark.parametrize("how", ["intent", "session.update"])
async def test_a_transcription_session_captions_and_never_replies(settings, how):
    llm = RecordingLLM()
    s = session(settings, llm, **({"intent": "transcription"} if how == "intent" else {}))
    if how == "session.update":
        await update(s, {"type": "transcription"})
        updated = await events_until(s, "session.updated")
        assert updated[-1]["session"]["type"] == "transcription"
    created = [e for e in drain(s)] if how == "intent" else []
    heard(s, "item_a", "hello there")
    await asyncio.sleep(0.2)
    kinds = [e["type"] for e in created + drain(s)]
    assert "conversation.item.input_audio_transcription.completed" in kinds
    assert not [k for k in kinds if k.startswith("response.")] and s.reply is None
    assert all(max_tokens == 1 for _, max_tokens in llm.requests)  # at most the prompt primed before the update
    await send(s, type="response.create")
    error = drain(s)[-1]
    assert error["type"] == "error" and error["error"]["code"] == "invalid_value"
    await s.close()


async def test_idle_timeout_after_a_reply_prompts_the_user(settings):
    llm = RecordingLLM()
    s = session(settings, llm)
    await update(s, {"type": "realtime", "audio": {"input": {
        "turn_detection": {"type": "server_vad", "idle_timeout_ms": 5000}}}})
    await send(s, **user_text("hi"))
    await send(s, type="response.create")
    await events_until(s, "response.done")
    assert s.listener._idle is not None  # armed once the reply has played
    s.listener.disarm_idle()
    s._on_listener("idle_timeout", {"audio_start_ms": 1000, "audio_end_ms": 6000})
    events = await events_until(s, "response.done")
    kinds = [e["type"] for e in events]
    assert kinds.index("input_audio_buffer.timeout_triggered") < kinds.index("response.created")
    timeout = events[kinds.index("input_audio_buffer.timeout_triggered")]
    assert (timeout["audio_start_ms"], timeout["audio_end_ms"]) == (1000, 6000)
    cue = llm.requests[-1][0][-1]
    assert cue["role"] == "user" and "5 seconds" in cue["content"]
    assert events[-1]["response"]["status"] == "completed"
    await s.close()


async def test_no_idle_timeout_without_the_setting_or_while_a_reply_speaks(settings):
    s = session(settings)
    await send(s, **user_text("hi"))
    await send(s, type="response.create")
    await events_until(s, "response.done")
    assert s.listener._idle is None
    s._on_listener("idle_timeout", {"audio_start_ms": 0, "audio_end_ms": 5000})  # not asked for: ignored
    await asyncio.sleep(0.1)
    assert not [e for e in drain(s) if e["type"] == "input_audio_buffer.timeout_triggered"]
    await s.close()


async def test_semantic_vad_without_its_model_is_refused_and_the_session_keeps_its_turn_detection(settings):
    s = session(settings)  # the doubles load no end-of-turn model
    drain(s)
    await update(s, {"type": "realtime", "audio": {"input": {
        "turn_detection": {"type": "semantic_vad", "eagerness": "high"}}}})
    error = drain(s)[-1]
    assert error["type"] == "error" and error["error"]["param"] == "session.audio.input.turn_detection.type"
    assert s.config.turn_detection.type == "server_vad" and s.listener.config.eagerness is None
    await s.close()


async def test_a_session_hears_its_characters_language_unless_the_client_sets_one(settings):
    s = session(settings)  # lumi: English
    assert s.listener.config.language == "en"
    await update(s, {"livehost": {"character": "nuomi"}})  # her card says zh: heard in Chinese
    assert s.listener.config.language == "zh"
    await update(s, {"audio": {"input": {"transcription": {"model": "whisper", "language": "en"}}}})
    assert s.listener.config.language == "en"  # the client's choice wins over the card's
    await s.close()
