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
