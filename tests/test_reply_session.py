"""The session's decisions about replies (turns, speculation, barge-in, cancel, truncate), on engine doubles: the
real RealtimeSession and Reply code, a word-per-token LLM and a tone voice, in milliseconds."""
from __future__ import annotations

import asyncio

import pytest

from engine_doubles import GatedPlan, WordsLLM, drain, engines, events_until, send, user_text
from livehost.server.session import RealtimeSession

AUDIO_DELTA = "response.output_audio.delta"


def session(settings, transport="websocket", **kw) -> RealtimeSession:
    s = RealtimeSession(kw.pop("engines", None) or engines(), settings, transport, **kw)
    s.start()
    return s


def listener(s: RealtimeSession, kind: str, **data) -> None:
    s._on_listener(kind, data)  # what the ears report, without a VAD or an ASR


async def close(s: RealtimeSession) -> None:
    await asyncio.wait_for(s.close(), 5)


async def test_a_text_turn_plays_and_completes(settings):
    s = session(settings)
    await send(s, **user_text("hi"))
    await send(s, type="response.create")
    events = await events_until(s, "response.done")
    kinds = [e["type"] for e in events]
    assert kinds.index("response.created") < kinds.index(AUDIO_DELTA) < kinds.index("response.done")
    done = events[-1]["response"]
    assert done["status"] == "completed" and done["status_details"] is None
    assert done["output"][0]["content"][0]["transcript"] == "Hello there. This is a short reply."
    assert s.conversation.for_llm()[-1] == {"role": "assistant", "content": "Hello there. This is a short reply.",
                                            "status": "completed"}
    await close(s)


async def test_create_then_cancel_at_once_is_cancelled_and_silent(settings):
    """Bug 1: the whole reply played and response.done said completed with cancelled details."""
    s = session(settings)
    await send(s, **user_text("hi"))
    await send(s, type="response.create")
    await send(s, type="response.cancel")
    events = await events_until(s, "response.done")
    done = events[-1]["response"]
    assert done["status"] == "cancelled", done
    assert done["status_details"] == {"type": "cancelled", "reason": "client_cancelled"}
    assert not [e for e in events if e["type"] == AUDIO_DELTA]
    await asyncio.sleep(0.05)
    assert not [e for e in drain(s) if e["type"] == AUDIO_DELTA]  # nothing after the end either
    assert s.reply is None
    await send(s, type="response.create")  # and the session answers the next request
    assert (await events_until(s, "response.done"))[-1]["response"]["status"] == "completed"
    await close(s)


async def test_barge_in_while_planning_cancels_the_reply(settings):
    """Bug 2: a barge-in while the reply was still planning was lost: the reply played in full."""
    s = session(settings)
    gated = GatedPlan(s.dialogue)
    await send(s, **user_text("hi"))
    await send(s, type="response.create")
    await asyncio.wait_for(gated.entered.wait(), 2)
    listener(s, "speech_started", item_id="item_user2", audio_start_ms=0)
    gated.release()
    events = await events_until(s, "response.done")
    done = events[-1]["response"]
    assert done["status"] == "cancelled" and done["status_details"]["reason"] == "turn_detected", done
    assert not [e for e in events if e["type"] == AUDIO_DELTA]
    await close(s)


async def test_a_held_reply_dropped_while_planning_finishes(settings):
    """Bug 3: a speculative reply dropped while planning never finished, and the dialogue's background summaries
    stopped for the session."""
    s = session(settings)
    gated = GatedPlan(s.dialogue)
    listener(s, "speech_started", item_id="item_u1", audio_start_ms=0)
    listener(s, "speculative", item_id="item_u1", transcript="hello there")
    await asyncio.wait_for(gated.entered.wait(), 2)
    listener(s, "resumed", item_id="item_u1")  # the user goes on talking: the guess is dropped
    gated.release()
    pending = [t for t in s._tasks if not t.done()]
    if pending:
        await asyncio.wait_for(asyncio.gather(*pending, return_exceptions=True), 2)  # nothing is left running
    assert s.dialogue.busy.is_set()  # summaries may run again
    assert not [e for e in drain(s) if e["type"].startswith("response.")]  # the client never saw the guess
    await close(s)


async def test_a_confirmed_speculation_speaks_after_the_users_item(settings):
    s = session(settings)
    listener(s, "speech_started", item_id="item_u1", audio_start_ms=0)
    listener(s, "speech_stopped", item_id="item_u1", audio_end_ms=900, endpointing_s=0.4)
    listener(s, "speculative", item_id="item_u1", transcript="hello there")
    await asyncio.sleep(0.01)
    listener(s, "final", item_id="item_u1", transcript="hello there", audio=[0] * 16000, asr_wait_s=0.0)
    events = await events_until(s, "response.done")
    kinds = [e["type"] for e in events]
    assert kinds.index("conversation.item.input_audio_transcription.completed") < kinds.index("response.created")
    added = next(e for e in events if e["type"] == "conversation.item.added" and e["item"]["role"] == "assistant")
    assert added["previous_item_id"] == "item_u1"
    assert events[-1]["response"]["status"] == "completed"
    await close(s)


@pytest.mark.parametrize("how", ["barge_in", "output_audio_buffer.clear"])
async def test_webrtc_tail_still_playing_is_cut(settings, how):
    """Bug 5: once a reply had sent all its audio (up to the lead ahead of playback) it was gone from the session,
    so a barge-in or output_audio_buffer.clear never cleared the speaker and the item kept words nobody heard."""
    from livehost.server.webrtc import MEDIA_FORMAT, Speaker
    speaker = Speaker()  # nobody pulls its frames: everything written is still waiting to be played
    s = session(settings, "webrtc", audio_out=speaker, media_format=MEDIA_FORMAT)
    await send(s, **user_text("hi"))
    await send(s, type="response.create")
    seen: list = []
    await events_until(s, "response.output_audio_transcript.delta", seen=seen)
    await asyncio.sleep(0.2)  # the double's whole reply (about 160 ms of voice) was written to the speaker
    if how == "barge_in":
        listener(s, "speech_started", item_id="item_u2", audio_start_ms=0)
    else:
        await send(s, type="output_audio_buffer.clear")
    events = await events_until(s, "response.done", seen=seen)
    assert speaker.clear() == 0  # the unplayed tail was dropped from the speaker
    done = events[-1]["response"]
    assert done["status"] == "cancelled", done
    item = s.conversation.items[done["output"][0]["id"]]
    assert item["content"][0]["transcript"] == ""  # nothing of it was heard
    assert not [m for m in s.conversation.for_llm() if m["role"] == "assistant"]
    await close(s)


async def test_truncate_keeps_the_words_heard(settings):
    s = session(settings, engines=engines(WordsLLM("one two three four five six seven eight nine ten.")))
    await send(s, **user_text("count"))
    await send(s, type="response.create")
    done = (await events_until(s, "response.done"))[-1]["response"]
    item_id = done["output"][0]["id"]
    await send(s, type="conversation.item.truncate", item_id=item_id, content_index=0, audio_end_ms=100)
    events = await events_until(s, "conversation.item.truncated")
    assert s.conversation.items[item_id]["content"][0]["transcript"] == "one two three four five"
    await send(s, type="conversation.item.truncate", item_id=item_id, content_index=0, audio_end_ms=10_000)
    error = (await events_until(s, "error"))[-1]
    assert error["error"]["param"] == "audio_end_ms" and events
    await close(s)


class _BrokenLLM:
    async def stream(self, messages, *, max_tokens, temperature):
        yield "Hello "
        raise ConnectionError("the LLM server went away")


async def test_an_engine_failure_fails_the_reply_and_the_session_goes_on(settings):
    s = session(settings, engines=engines(_BrokenLLM()))
    await send(s, **user_text("hi"))
    await send(s, type="response.create")
    events = await events_until(s, "response.done")
    done = events[-1]["response"]
    assert done["status"] == "failed" and "went away" in done["status_details"]["error"]["message"]
    assert any(e["type"] == "error" for e in events)
    await send(s, **user_text("hi again"))
    assert (await events_until(s, "conversation.item.done"))[-1]["item"]["role"] == "user"
    await close(s)


async def test_text_mode_and_statuses_agree(settings):
    s = session(settings)
    await send(s, type="response.create", response={"output_modalities": ["text"]})
    events = await events_until(s, "response.done")
    assert "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta") == \
        "Hello there. This is a short reply."
    done = events[-1]["response"]
    assert done["status"] == "completed" and done["output"][0]["status"] == "completed"
    await send(s, type="response.create")
    await events_until(s, "response.output_audio_transcript.delta")
    await send(s, type="response.cancel")
    done = (await events_until(s, "response.done"))[-1]["response"]
    assert done["status"] == "cancelled" and done["output"][0]["status"] == "incomplete"
    await close(s)


async def test_closing_while_planning_leaves_nothing_running(settings):
    s = session(settings)
    gated = GatedPlan(s.dialogue)
    await send(s, type="response.create")
    await asyncio.wait_for(gated.entered.wait(), 2)
    await close(s)
    assert not [t for t in s._tasks if not t.done()] and s.reply is None


class _RecordingLLM(WordsLLM):
    def __init__(self):
        super().__init__("Sure thing.")
        self.prompts: list[list[dict]] = []

    async def stream(self, messages, *, max_tokens, temperature):
        self.prompts.append(list(messages))
        async for token in super().stream(messages, max_tokens=max_tokens, temperature=temperature):
            yield token


@pytest.mark.parametrize("speculate", [False, True])
async def test_each_voice_turn_asks_about_its_own_words(settings, speculate):
    llm = _RecordingLLM()
    s = session(settings, engines=engines(llm))
    for n, words in enumerate(["what is your name", "tell me about the weather"]):
        item = f"item_u{n}"
        listener(s, "speech_started", item_id=item, audio_start_ms=0)
        listener(s, "speech_stopped", item_id=item, audio_end_ms=900, endpointing_s=0.4)
        if speculate:
            listener(s, "speculative", item_id=item, transcript=words)
            await asyncio.sleep(0.01)
        listener(s, "final", item_id=item, transcript=words, audio=[0] * 16000, asr_wait_s=0.0)
        assert (await events_until(s, "response.done"))[-1]["response"]["status"] == "completed"
        last_user = [m["content"] for m in llm.prompts[-1] if m["role"] == "user"][-1]
        assert words in last_user, llm.prompts[-1]
    assert [m["content"] for m in llm.prompts[-1] if m["role"] == "assistant"] == ["Sure thing."]
    await close(s)
