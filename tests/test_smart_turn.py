"""Smart Turn v3.2 end-of-turn model: its features, where its file comes from, and the semantic_vad rule."""
from __future__ import annotations

import zipfile

import numpy as np
import pytest

from conftest import load_speech
from livehost.speech import smart_turn
from livehost.speech.smart_turn import RATE, SmartTurn, TurnModelError, log_mel, resolve_model
from livehost.speech.vad import EAGERNESS, Eagerness, SemanticEndpointer


def tone(seconds: float, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(seconds * RATE)) * 0.1).astype(np.float32)


# ---- features ------------------------------------------------------------------------------------------------------

def test_features_are_whisper_log_mel_of_8_s():
    f = log_mel(tone(3.0))
    assert f.shape == (80, 800) and f.dtype == np.float32
    assert f.max() <= 2.0 and f.min() >= f.max() - 2.0 - 1e-6  # Whisper's 8 log10 units, scaled by 1/4


def test_a_short_turn_is_padded_with_silence_before_it():
    x = tone(2.0)
    assert np.allclose(log_mel(x), log_mel(np.concatenate([np.zeros(3 * RATE, np.float32), x])), atol=1e-5)


def test_only_the_last_8_s_count():
    x = tone(10.0)
    assert np.allclose(log_mel(x), log_mel(x[2 * RATE:]), atol=1e-6)
    assert not np.allclose(log_mel(x), log_mel(x[: 8 * RATE]), atol=1e-3)


def test_features_do_not_depend_on_loudness():
    x = tone(4.0)  # normalised to zero mean, unit variance before the spectrogram, as in training
    assert np.allclose(log_mel(x), log_mel(x * 0.3), atol=1e-3)


# ---- the model file ------------------------------------------------------------------------------------------------

def test_a_missing_model_file_is_a_clear_error(tmp_path):
    with pytest.raises(TurnModelError, match="does not exist"):
        resolve_model(tmp_path / "nope.onnx", cache_dir=tmp_path)


def test_a_wheel_without_the_model_is_refused(tmp_path):
    wheel = tmp_path / "pipecat_ai-1.14.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("pipecat/__init__.py", "")
    with pytest.raises(TurnModelError, match="holds no"):
        resolve_model(wheel, cache_dir=tmp_path)


def test_a_wheel_with_another_file_under_that_name_is_refused_and_nothing_is_cached(tmp_path):
    wheel = tmp_path / "pipecat_ai-1.14.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(smart_turn.WHEEL_MEMBER, b"not a model" * 100)
    with pytest.raises(TurnModelError, match="sha256"):
        resolve_model(wheel, cache_dir=tmp_path)
    assert not list((tmp_path / "smart-turn").iterdir())  # no half-written or foreign file left behind


def test_not_a_wheel_is_refused(tmp_path):
    wheel = tmp_path / "x.whl"
    wheel.write_bytes(b"garbage")
    with pytest.raises(TurnModelError, match="not a readable wheel"):
        resolve_model(wheel, cache_dir=tmp_path)


def test_a_failed_download_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(smart_turn, "_installed_pipecat_file", lambda: None)
    monkeypatch.setattr(smart_turn, "WHEEL", "pipecat-ai==0.0.0.does.not.exist")
    monkeypatch.setattr(smart_turn.sys, "executable", str(tmp_path / "no-python"))
    with pytest.raises(TurnModelError, match="vad.turn_model"):
        resolve_model(cache_dir=tmp_path)


# ---- the semantic_vad rule -----------------------------------------------------------------------------------------

def frames(ep: SemanticEndpointer, probs: list[float]) -> list[tuple[str | None, bool]]:
    return [(ep.update(p), ep.ask) for p in probs]


def test_the_model_is_asked_once_per_pause_after_the_gate():
    ep = SemanticEndpointer(0.5, 96, Eagerness(0.9, 2000), 32.0, gate_ms=128)
    out = frames(ep, [0.9] * 5 + [0.0] * 6 + [0.9] * 2 + [0.0] * 6)
    asks = [i for i, (_, ask) in enumerate(out) if ask]
    assert out[2][0] == "start"
    assert asks == [8, 16]  # the 4th silent frame of each pause (4 x 32 ms = 128 ms), once each
    assert all(event != "stop" for event, _ in out)


def test_a_turn_the_model_never_calls_complete_ends_after_the_max_wait():
    ep = SemanticEndpointer(0.5, 96, Eagerness(0.9, 1000), 32.0)
    out = frames(ep, [0.9] * 5 + [0.0] * 40)
    stops = [i for i, (event, _) in enumerate(out) if event == "stop"]
    assert stops == [5 + 31]  # 1000 ms / 32 ms: the 32nd silent frame


def test_end_now_ends_the_turn_and_the_next_speech_is_a_new_one():
    ep = SemanticEndpointer(0.5, 96, EAGERNESS["medium"], 32.0)
    frames(ep, [0.9] * 5 + [0.0] * 4)
    assert ep.in_speech and ep.complete(0.95) and not ep.complete(0.5)
    ep.end_now()
    assert not ep.in_speech
    assert [e for e, _ in frames(ep, [0.0] * 70)] == [None] * 70  # no late stop from the max wait
    assert "start" in [e for e, _ in frames(ep, [0.9] * 4)]


def test_a_complete_answer_ends_the_turn_once_the_silence_is_long_enough():
    ep = SemanticEndpointer(0.5, 96, Eagerness(0.9, 2000, 256), 32.0, gate_ms=128)
    frames(ep, [0.9] * 5 + [0.0] * 4)  # asked at 128 ms of silence
    assert not ep.judged(0.95) and ep.in_speech  # too soon: approved, not ended
    out = [e for e, _ in frames(ep, [0.0] * 6)]
    assert out == [None, None, None, "stop", None, None] and ep.stopped_by_model  # at 256 ms
    assert not ep.judged(0.95)  # no turn to end any more


def test_speech_resuming_voids_an_early_complete():
    ep = SemanticEndpointer(0.5, 96, Eagerness(0.9, 2000, 256), 32.0, gate_ms=128)
    frames(ep, [0.9] * 5 + [0.0] * 4)
    ep.judged(0.99)
    assert "stop" not in [e for e, _ in frames(ep, [0.9] + [0.0] * 6)]  # a new pause needs a new answer
    assert not ep.judged(0.3) and "stop" not in [e for e, _ in frames(ep, [0.0] * 20)]


def test_eagerness_orders_its_waits():
    assert EAGERNESS["auto"] == EAGERNESS["medium"]
    waits = [EAGERNESS[e].max_wait_ms for e in ("high", "medium", "low")]
    assert waits == sorted(waits) and EAGERNESS["high"].threshold <= EAGERNESS["low"].threshold


# ---- the real model ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def model():
    return SmartTurn()


@pytest.mark.e2e
def test_a_corrupt_model_file_stops_with_a_clear_message(tmp_path):
    bad = tmp_path / "smart-turn.onnx"
    bad.write_bytes(b"\x08\x01" + b"truncated" * 50)
    with pytest.raises(TurnModelError, match="could not be loaded"):
        SmartTurn(bad)


@pytest.mark.e2e
def test_the_model_hears_a_finished_sentence_from_one_cut_mid_thought(model):
    speech = load_speech("jfk.flac", RATE).astype(np.float32) / 32768
    silence = np.zeros(int(0.128 * RATE), np.float32)
    # "... ask not what your country can do for you," then a pause; and the whole sentence.
    mid = model.probability(np.concatenate([speech[: int(4.42 * RATE)], silence]))
    end = model.probability(np.concatenate([speech[: int(10.6 * RATE)], silence]))
    assert mid < 0.2 < 0.6 < end, (mid, end)
    p, cpu = model.timed_probability(speech[: int(10.6 * RATE)])
    assert 0 <= p <= 1 and cpu > 0


# ---- at the server's start -----------------------------------------------------------------------------------------

def test_without_the_model_the_server_starts_unless_semantic_vad_is_its_default(tmp_path, caplog):
    from livehost.server.config import Settings
    from livehost.server.engines import load_turn_model
    missing = str(tmp_path / "gone.onnx")
    assert load_turn_model(Settings(vad={"turn_model": missing})) is None
    assert "semantic_vad is not available" in caplog.text and "gone.onnx" in caplog.text
    with pytest.raises(TurnModelError, match="gone.onnx"):
        load_turn_model(Settings(vad={"turn_model": missing, "turn_detection": "semantic_vad"}))
