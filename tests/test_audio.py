import numpy as np
import pytest

from livehost.speech.audio import (
    PCM24K, AudioFormat, AudioFormatError, Resampler, decode_audio, encode_audio, float32_to_int16,
    int16_to_float32, resample)


def sine(freq: float, rate: int, seconds: float = 1.0, amplitude: float = 10000) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def peak_hz(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[spectrum.argmax()])


# --- formats ---

@pytest.mark.parametrize("obj, expected", [
    ({"type": "audio/pcm", "rate": 24000}, AudioFormat("audio/pcm", 24000)),
    ({"type": "audio/pcm", "rate": 16000}, AudioFormat("audio/pcm", 16000)),
    ({"type": "audio/pcm"}, PCM24K),
    ({"type": "audio/pcmu"}, AudioFormat("audio/pcmu", 8000)),
    ({"type": "audio/pcma"}, AudioFormat("audio/pcma", 8000)),
    ("pcm16", PCM24K),
    ("g711_ulaw", AudioFormat("audio/pcmu", 8000)),
    ("g711_alaw", AudioFormat("audio/pcma", 8000)),
])
def test_parse_formats(obj, expected):
    assert AudioFormat.parse(obj) == expected


def test_to_dict_is_the_ga_object():
    assert PCM24K.to_dict() == {"type": "audio/pcm", "rate": 24000}
    assert AudioFormat.parse("g711_ulaw").to_dict() == {"type": "audio/pcmu"}
    for obj in ({"type": "audio/pcm", "rate": 48000}, {"type": "audio/pcma"}):
        assert AudioFormat.parse(obj).to_dict() == obj


def test_unsupported_rate_names_the_supported_ones():
    with pytest.raises(AudioFormatError, match="12345.*16000, 22050, 24000"):
        AudioFormat.parse({"type": "audio/pcm", "rate": 12345})
    with pytest.raises(AudioFormatError):
        AudioFormat.parse({"type": "audio/pcm", "rate": "24000"})
    with pytest.raises(AudioFormatError, match="8000"):
        AudioFormat.parse({"type": "audio/pcmu", "rate": 16000})


@pytest.mark.parametrize("obj", ["mp3", {"type": "audio/opus"}, {"rate": 24000}, 24000, None])
def test_unknown_formats_are_rejected(obj):
    with pytest.raises(AudioFormatError):
        AudioFormat.parse(obj)


# --- codecs ---

def test_pcm16_is_little_endian_and_round_trips():
    assert decode_audio(b"\x01\x00\xff\xff", PCM24K).tolist() == [1, -1]
    x = sine(440, 24000, 0.1)
    assert np.array_equal(decode_audio(encode_audio(x, PCM24K), PCM24K), x)


def test_odd_pcm16_bytes_are_an_error():
    with pytest.raises(AudioFormatError, match="odd number of bytes"):
        decode_audio(b"\x00\x01\x02", PCM24K)


@pytest.mark.parametrize("legacy", ["g711_ulaw", "g711_alaw"])
def test_g711_round_trip_error_is_small(legacy):
    fmt = AudioFormat.parse(legacy)
    x = sine(440, 8000, 0.5)
    data = encode_audio(x, fmt)
    assert len(data) == len(x)  # one byte per sample
    y = decode_audio(data, fmt)
    assert y.dtype == np.int16 and len(y) == len(x)
    noise = (y.astype(float) - x).std()
    snr_db = 20 * np.log10(x.astype(float).std() / noise)
    assert snr_db > 30, snr_db  # G.711 gives about 38 dB on a loud tone


def test_encode_refuses_float_samples():
    with pytest.raises(TypeError):
        encode_audio(np.zeros(10, np.float32), PCM24K)


# --- resampling ---

def test_streaming_resampler_keeps_length_and_pitch():
    x = sine(440, 24000)
    r = Resampler(24000, 16000)
    head = np.concatenate([r.process(x[i:i + 480]) for i in range(0, len(x), 480)])  # 20 ms chunks
    y = np.concatenate([head, r.flush()])
    assert y.dtype == np.int16
    assert len(head) > 16000 - 800  # the filter holds back only a few tens of ms
    assert abs(len(y) - 16000) <= 1
    assert abs(peak_hz(y, 16000) - 440) < 2


def test_streaming_equals_one_shot():
    x = sine(440, 24000, 0.5) + sine(3000, 24000, 0.5, 3000)
    r = Resampler(24000, 16000)
    chunks = [r.process(x[i:i + 333]) for i in range(0, len(x), 333)]  # odd chunk size on purpose
    streamed = np.concatenate(chunks + [r.flush()]).astype(int)
    one_shot = resample(x, 24000, 16000).astype(int)
    assert len(streamed) == len(one_shot)
    assert np.abs(streamed - one_shot).max() <= 4


def test_resampler_is_reusable_after_flush():
    r = Resampler(16000, 24000)
    first = np.concatenate([r.process(sine(440, 16000, 0.2)), r.flush()])
    second = np.concatenate([r.process(sine(440, 16000, 0.2)), r.flush()])
    assert np.array_equal(first, second)


def test_equal_rates_pass_through():
    x = sine(440, 16000, 0.1)
    r = Resampler(16000, 16000)
    assert np.array_equal(r.process(x), x)
    assert len(r.flush()) == 0


@pytest.mark.parametrize("dtype", [np.int16, np.float32])
def test_one_shot_resample_keeps_dtype_and_pitch(dtype):
    x = sine(1000, 48000, 0.5).astype(dtype)
    y = resample(x, 48000, 16000)
    assert y.dtype == dtype
    assert len(y) == 8000
    assert abs(peak_hz(y, 16000) - 1000) < 3


def test_int16_float32_conversion():
    x = np.array([-32768, -1, 0, 1, 32767], np.int16)
    f = int16_to_float32(x)
    assert f.dtype == np.float32 and f.min() == -1.0 and f.max() < 1.0
    assert np.array_equal(float32_to_int16(f), x)
    assert float32_to_int16(np.array([1.5, -2.0, 0.5], np.float32)).tolist() == [32767, -32768, 16384]
