"""The ears: real Silero VAD on real speech; a recording ASR double shows what gets transcribed when."""
from __future__ import annotations

import asyncio
import itertools

import numpy as np
import pytest

from conftest import load_speech
from livehost.speech.asr import Transcript
from livehost.speech.listener import Listener, ListenerConfig
from livehost.speech.vad import VAD


class RecordingASR:
    """Test double: remembers each request; answers with the audio's length so results are distinguishable."""

    def __init__(self):
        self.calls: list[int] = []

    def transcribe(self, audio, language=None):
        self.calls.append(len(audio))
        return Transcript(f"words {len(audio)}", "en", len(audio) / 16000)


async def run(listener: Listener, audio: np.ndarray, chunk: int = 1600) -> None:
    for i in range(0, len(audio), chunk):
        await listener.feed(audio[i:i + chunk])
        await asyncio.sleep(0)  # let spawned transcriptions run, as a live stream would
    await asyncio.sleep(0.2)


@pytest.mark.e2e
async def test_speculative_transcript_becomes_the_final_one():
    speech = load_speech("jfk.flac", 16000).astype(np.float32) / 32768
    phrase = speech[: int(16000 * 2.2)]  # "And so, my fellow Americans"
    audio = np.concatenate([np.zeros(8000, np.float32), phrase, np.zeros(16000, np.float32)])
    events, asr, ids = [], RecordingASR(), itertools.count()
    listener = Listener(VAD.shared("silero"), asr, ListenerConfig(silence_ms=400, partial_interval_ms=10_000),
                        lambda kind, data: events.append((kind, data)), lambda: f"item{next(ids)}")
    await run(listener, audio)
    kinds = [k for k, _ in events]
    assert kinds[:2] == ["onset", "speech_started"] and "speech_stopped" in kinds and "final" in kinds
    speculative = next(d for k, d in events if k == "speculative")
    final = next(d for k, d in events if k == "final")
    assert final["transcript"] == speculative["transcript"]
    assert len(asr.calls) == 1, f"the final transcript was made again: {asr.calls}"
    assert kinds.index("speculative") < kinds.index("speech_stopped"), "the guess came after the silence wait"


class DraftingASR(RecordingASR):
    """Also offers drafts, as faster-whisper does: partials must use them, the final transcript must not."""

    def __init__(self):
        super().__init__()
        self.drafts: list[int] = []

    def transcribe_draft(self, audio, language=None):
        self.drafts.append(len(audio))
        return Transcript(f"draft {len(audio)}", "en", len(audio) / 16000)


@pytest.mark.e2e
async def test_partials_are_drafts_and_the_final_is_not():
    speech = load_speech("jfk.flac", 16000).astype(np.float32) / 32768
    audio = np.concatenate([np.zeros(8000, np.float32), speech[: int(16000 * 2.2)], np.zeros(16000, np.float32)])
    events, asr, ids = [], DraftingASR(), itertools.count()
    listener = Listener(VAD.shared("silero"), asr, ListenerConfig(silence_ms=400, partial_interval_ms=500),
                        lambda kind, data: events.append((kind, data)), lambda: f"item{next(ids)}")
    await run(listener, audio)
    assert asr.drafts and len(asr.calls) == 1, (asr.drafts, asr.calls)
    assert next(d for k, d in events if k == "final")["transcript"].startswith("words")
    assert any(d["delta"].startswith("draft") for k, d in events if k == "partial")


@pytest.mark.e2e
async def test_resumed_speech_voids_the_guess():
    speech = load_speech("jfk.flac", 16000).astype(np.float32) / 32768
    part = speech[: int(16000 * 2.2)]
    # the phrase twice: the pause between them (its trailing and leading quiet) is shorter than the silence wait
    audio = np.concatenate([np.zeros(8000, np.float32), part, part, np.zeros(24000, np.float32)])
    events, asr, ids = [], RecordingASR(), itertools.count()
    listener = Listener(VAD.shared("silero"), asr, ListenerConfig(silence_ms=1000, partial_interval_ms=10_000),
                        lambda kind, data: events.append((kind, data)), lambda: f"item{next(ids)}")
    await run(listener, audio)
    kinds = [k for k, _ in events]
    assert kinds.count("speech_started") == 1 and kinds.count("speech_stopped") == 1
    assert "resumed" in kinds
    final = next(d for k, d in events if k == "final")
    assert final["transcript"] == f"words {len(final['audio'])}"  # the whole turn, not the first guess
    assert len(final["audio"]) > len(part) * 2 * 0.9


# ---- semantic_vad: the end-of-turn model decides -------------------------------------------------------------------

class ScriptedTurnModel:
    """Test double for SmartTurn: answers P(complete) from a list (the last one repeats), optionally slowly."""

    def __init__(self, answers: list[float], delay_s: float = 0.0):
        self.answers, self.delay_s, self.calls = answers, delay_s, []

    def timed_probability(self, audio):
        import time
        time.sleep(self.delay_s)
        self.calls.append(len(audio))
        return self.answers[min(len(self.calls) - 1, len(self.answers) - 1)], 0.001


def semantic_listener(turn_model, eagerness="medium", events=None):
    ids = itertools.count()
    return Listener(VAD.shared("silero"), RecordingASR(), ListenerConfig(partial_interval_ms=10_000,
                    eagerness=eagerness), lambda kind, data: events.append((kind, data)), lambda: f"item{next(ids)}",
                    turn_model=turn_model)


def jfk16k() -> np.ndarray:
    return load_speech("jfk.flac", 16000).astype(np.float32) / 32768


@pytest.mark.e2e
async def test_semantic_vad_ends_the_turn_as_soon_as_the_model_says_complete():
    phrase = jfk16k()[: int(16000 * 2.2)]  # "And so, my fellow Americans"
    events, model = [], ScriptedTurnModel([0.99])
    listener = semantic_listener(model, events=events)
    await run(listener, np.concatenate([np.zeros(8000, np.float32), phrase, np.zeros(48000, np.float32)]))
    stopped = [d for k, d in events if k == "speech_stopped"]
    assert len(stopped) == 1 and len(model.calls) == 1
    assert 0.1 <= stopped[0]["endpointing_s"] < 0.3, stopped  # ~128 ms of silence, not the 2 s max wait
    assert [k for k, _ in events].count("final") == 1


@pytest.mark.e2e
async def test_semantic_vad_waits_through_pauses_the_model_calls_unfinished():
    events, model = [], ScriptedTurnModel([0.01])
    listener = semantic_listener(model, "high", events=events)  # high: max wait 1 s; jfk pauses 0.5-1.1 s
    await run(listener, np.concatenate([jfk16k()[: int(16000 * 9.8)], np.zeros(40000, np.float32)]))
    stopped = [d for k, d in events if k == "speech_stopped"]
    assert len(model.calls) >= 3  # asked in each pause
    assert [round(d["endpointing_s"], 1) for d in stopped][-1] == 1.0  # the last stop: the max wait
    assert len(stopped) <= 2  # only the 1.1 s pause outlasts high's 1 s wait


@pytest.mark.e2e
async def test_an_answer_that_comes_after_speech_resumed_is_dropped():
    part = jfk16k()[: int(16000 * 2.2)]
    gap = np.zeros(int(16000 * 0.25), np.float32)  # the model is asked, then speech resumes before it answers
    events, model = [], ScriptedTurnModel([0.99], delay_s=0.4)
    listener = semantic_listener(model, events=events)
    await run(listener, np.concatenate([np.zeros(8000, np.float32), part, gap, part, np.zeros(40000, np.float32)]))
    await asyncio.sleep(1.0)
    judged = [d for k, d in events if k == "turn_judged"]
    assert judged[0]["current"] is False  # the stale answer ended nothing
    assert [k for k, _ in events].count("speech_stopped") == 1


@pytest.mark.e2e
def test_semantic_vad_without_a_turn_model_is_refused_and_nothing_changes():
    listener = Listener(VAD.shared("silero"), RecordingASR(), ListenerConfig(), lambda *a: None, lambda: "x")
    before = listener.endpointer
    with pytest.raises(ValueError, match="end-of-turn model"):
        listener.reconfigure(ListenerConfig(eagerness="low"), auto=True)
    assert listener.endpointer is before and listener.config.eagerness is None


@pytest.mark.e2e
async def test_smart_turn_keeps_jfk_together_better_than_silence_alone():
    from livehost.speech.smart_turn import SmartTurn
    audio = np.concatenate([np.zeros(8000, np.float32), jfk16k()[: int(16000 * 10.6)], np.zeros(48000, np.float32)])
    counts = {}
    for name, config, model in (("server_vad 500", ListenerConfig(silence_ms=500), None),
                                ("semantic medium", ListenerConfig(eagerness="medium"), SmartTurn())):
        events, ids = [], itertools.count()
        listener = Listener(VAD.shared("silero"), RecordingASR(), config, lambda k, d: events.append((k, d)),
                            lambda: f"item{next(ids)}", turn_model=model)
        await run(listener, audio)
        await asyncio.sleep(0.5)
        counts[name] = [k for k, _ in events].count("speech_stopped")
    assert counts["semantic medium"] < counts["server_vad 500"], counts


# ---- idle timeout --------------------------------------------------------------------------------------------------

def plain_listener(events):
    return Listener(VAD.shared("silero"), RecordingASR(), ListenerConfig(partial_interval_ms=10_000),
                    lambda kind, data: events.append((kind, data)), lambda: "item")


@pytest.mark.e2e
async def test_idle_timeout_fires_once_when_nobody_speaks():
    events = []
    listener = plain_listener(events)
    await listener.feed(np.zeros(16000, np.float32))  # 1 s heard before the reply ended
    listener.arm_idle(300)
    await listener.feed(np.zeros(4800, np.float32))
    await asyncio.sleep(0.5)
    idle = [d for k, d in events if k == "idle_timeout"]
    assert idle == [{"audio_start_ms": 1000, "audio_end_ms": 1300}]
    await asyncio.sleep(0.4)
    assert len([k for k, _ in events if k == "idle_timeout"]) == 1  # once per arming


@pytest.mark.e2e
async def test_speaking_or_a_new_config_disarms_the_idle_timeout():
    events = []
    listener = plain_listener(events)
    listener.arm_idle(600)
    await run(listener, jfk16k()[: int(16000 * 1.5)])  # speech starts within the timeout
    listener.reconfigure(ListenerConfig(), auto=True)
    listener.arm_idle(300)
    listener.reconfigure(ListenerConfig(), auto=True)
    await asyncio.sleep(0.8)
    kinds = [k for k, _ in events]
    assert "speech_started" in kinds and "idle_timeout" not in kinds
    await listener.close()
