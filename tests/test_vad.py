import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from livehost.speech.audio import resample
from livehost.speech.vad import VAD, Endpointer, SileroVAD

JFK = Path(__file__).resolve().parent / "fixtures/audio/jfk.flac"
FRAME = SileroVAD.frame_samples
FRAME_S = FRAME / SileroVAD.sample_rate  # 0.032


def frames(x: np.ndarray):
    for i in range(0, len(x) - FRAME + 1, FRAME):
        yield x[i:i + FRAME]


def probabilities(stream, x: np.ndarray) -> np.ndarray:
    return np.array([stream.probability(f) for f in frames(x)])


@pytest.fixture(scope="module")
def jfk16k() -> np.ndarray:
    x, rate = sf.read(JFK, dtype="float32")
    if x.ndim == 2:  # the file is stereo
        x = x.mean(axis=1)
    return resample(x, rate, 16000)


@pytest.fixture(scope="module")
def vad() -> SileroVAD:
    return VAD.shared("silero")


# --- Silero on real audio ---

@pytest.mark.e2e
def test_one_model_for_all_sessions(vad):
    assert VAD.shared("silero") is vad
    assert vad.stream()._session is vad.stream()._session is SileroVAD().session


@pytest.mark.e2e
def test_speech_is_likely_and_silence_is_not(vad, jfk16k):
    p = probabilities(vad.stream(), jfk16k)
    t = np.arange(len(p)) * FRAME_S
    # "And so my fellow Americans" runs from about 0.4 s to 2.2 s
    assert p[(t > 0.6) & (t < 2.0)].mean() > 0.9
    assert p[t < 0.25].max() < 0.5  # room tone before the first word
    assert p.mean() > 0.4 and p.min() < 0.1

    s = vad.stream()
    assert probabilities(s, np.zeros(16000, np.float32)).max() < 0.1
    s.reset()
    noise = np.random.default_rng(0).normal(0, 0.003, 16000).astype(np.float32)
    assert probabilities(s, noise).max() < 0.3


@pytest.mark.e2e
def test_streams_keep_their_own_state(vad, jfk16k):
    speech = jfk16k[:16000 * 3]
    silence = np.zeros_like(speech)
    alone = probabilities(vad.stream(), speech)
    a, b = vad.stream(), vad.stream()
    interleaved = []
    for fa, fb in zip(frames(speech), frames(silence)):
        interleaved.append(a.probability(fa))
        b.probability(fb)
    assert np.allclose(interleaved, alone, atol=1e-6)


@pytest.mark.e2e
def test_reset_starts_over(vad, jfk16k):
    s = vad.stream()
    first = probabilities(s, jfk16k[:16000])
    s.reset()
    assert np.allclose(probabilities(s, jfk16k[:16000]), first, atol=1e-6)


@pytest.mark.e2e
def test_streams_in_threads_match_sequential(vad, jfk16k):
    expected = probabilities(vad.stream(), jfk16k)
    results: list = [None] * 3

    def work(k: int) -> None:
        results[k] = probabilities(vad.stream(), jfk16k)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        assert np.allclose(r, expected, atol=1e-6)


@pytest.mark.e2e
def test_frame_size_is_checked(vad):
    with pytest.raises(ValueError, match="512"):
        vad.stream().probability(np.zeros(480, np.float32))


# --- Endpointer on synthetic probabilities ---

def run(endpointer: Endpointer, probs) -> list:
    """(frame index, event) for every event."""
    return [(k, e) for k, p in enumerate(probs) if (e := endpointer.update(p))]


def test_start_after_min_speech():
    e = Endpointer()  # 96 ms = 3 frames
    assert run(e, [0.0, 0.9, 0.9, 0.9, 0.9]) == [(3, "start")]
    assert e.in_speech and e.start_lag_ms == 96


def test_one_frame_blip_does_not_start():
    e = Endpointer()
    assert run(e, [0.0, 0.9, 0.0, 0.0, 0.9, 0.0, 0.0] * 3) == []
    assert not e.in_speech


def test_single_unvoiced_gap_is_bridged():
    e = Endpointer()
    assert run(e, [0.9, 0.1, 0.9, 0.9]) == [(3, "start")]
    assert e.start_lag_ms == 128  # four frames since the onset's first voiced frame
    e = Endpointer()
    assert run(e, [0.9, 0.1, 0.1, 0.9, 0.9]) == []  # two unvoiced frames end the onset


def test_stop_after_silence():
    e = Endpointer(silence_ms=400)  # 13 frames of 32 ms
    events = run(e, [0.9] * 5 + [0.1] * 20)
    assert events == [(2, "start"), (5 + 12, "stop")]
    assert not e.in_speech and e.silence_run_ms == 0


def test_speech_resets_the_silence_run():
    e = Endpointer(silence_ms=320)  # 10 frames
    events = run(e, [0.9] * 4 + [0.1] * 9 + [0.9] + [0.1] * 9)
    assert events == [(2, "start")]
    assert e.in_speech and e.silence_run_ms == pytest.approx(9 * 32)


def test_hysteresis_keeps_the_previous_state():
    # 0.4 is between threshold - 0.15 and threshold: voiced after speech, unvoiced after silence
    e = Endpointer(threshold=0.5, silence_ms=320)
    assert run(e, [0.9, 0.9, 0.9] + [0.4] * 30) == [(2, "start")]
    e = Endpointer(threshold=0.5)
    assert run(e, [0.4] * 10) == []
    assert run(e, [0.6, 0.4, 0.4, 0.3]) == [(2, "start")]


def test_events_fire_once_per_transition():
    e = Endpointer(silence_ms=96)
    events = run(e, ([0.9] * 10 + [0.0] * 10) * 2)
    assert [ev for _, ev in events] == ["start", "stop", "start", "stop"]


def test_reset():
    e = Endpointer()
    run(e, [0.9] * 5)
    e.reset()
    assert not e.in_speech and e.start_lag_ms == 0
    assert run(e, [0.0, 0.9, 0.9]) == []  # the earlier onset is forgotten


@pytest.mark.e2e
def test_end_to_end_on_speech(vad, jfk16k):
    audio = np.concatenate([jfk16k, np.zeros(16000, np.float32)])
    speech_end = len(jfk16k) / 16000
    e = Endpointer()
    events = run(e, probabilities(vad.stream(), audio))
    starts = [k * FRAME_S for k, ev in events if ev == "start"]
    stops = [k * FRAME_S for k, ev in events if ev == "stop"]
    assert 0.3 < starts[0] < 0.7  # first word at about 0.4 s, plus 96 ms to confirm
    assert len(starts) == len(stops) >= 1  # every turn ended, the last one in the appended silence
    assert speech_end - 1.0 < stops[-1] < speech_end + 1.0
    assert not e.in_speech


@pytest.mark.e2e
def test_matches_silero_reference_wrapper(vad, jfk16k):
    """Same numbers as silero_vad's own OnnxWrapper, which prepends 64 samples of context per frame."""
    torch = pytest.importorskip("torch")
    from silero_vad.utils_vad import OnnxWrapper

    ref = OnnxWrapper(vad.model_path, force_onnx_cpu=True)
    audio = jfk16k[:16000 * 3]
    expected = [ref(torch.from_numpy(f.copy()), 16000).item() for f in frames(audio)]
    assert np.allclose(probabilities(vad.stream(), audio), expected, atol=1e-5)
