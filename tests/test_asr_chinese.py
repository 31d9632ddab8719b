"""Chinese transcripts come out in Simplified characters, whichever script Whisper picked."""
from __future__ import annotations

import numpy as np

from livehost.speech.asr import FasterWhisperASR, Transcript, simplified


def test_traditional_characters_become_simplified():
    assert simplified("我們這裡說的是漢語，還有這個軟體。") == "我们这里说的是汉语，还有这个软体。"
    assert simplified("已经是简体") == "已经是简体"
    assert simplified("Hello, 世界!") == "Hello, 世界!"
    assert simplified("") == ""


def asr_answering(text: str, language: str, monkeypatch) -> FasterWhisperASR:
    """The engine's own transcribe() over a double for the decode (no model loaded)."""
    asr = FasterWhisperASR.__new__(FasterWhisperASR)
    asr.short_window, asr.beam_size, asr._tokenizers = True, 1, {}
    asr._language = lambda requested: requested
    monkeypatch.setattr(asr, "_transcribe_short", lambda audio, lang: (text, lang or language, False), raising=False)
    return asr


def test_a_chinese_transcript_is_simplified_whether_asked_for_or_detected(monkeypatch):
    for requested in ("zh", None):
        asr = asr_answering("請問今天幾點開門？", "zh", monkeypatch)
        result = asr.transcribe(np.zeros(16000, np.float32), requested)
        assert result == Transcript("请问今天几点开门？", "zh", 1.0)


def test_other_languages_are_left_alone(monkeypatch):
    asr = asr_answering("漢字 in Japanese: 日本語の漢字", "ja", monkeypatch)
    assert asr.transcribe(np.zeros(16000, np.float32), "ja").text == "漢字 in Japanese: 日本語の漢字"
