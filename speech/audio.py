"""Audio formats of the OpenAI Realtime API, G.711 and PCM16 codecs, and resampling.

Internally audio is int16 mono numpy arrays; clients send and receive bytes in their session's format.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import soxr

with warnings.catch_warnings():
    # audioop is deprecated in 3.11-3.12 and removed in 3.13, where the audioop-lts package provides it.
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

PCM_RATES = (8000, 16000, 22050, 24000, 32000, 44100, 48000)
G711_RATE = 8000

# Legacy (beta) format names -> GA type
_LEGACY = {"pcm16": "audio/pcm", "g711_ulaw": "audio/pcmu", "g711_alaw": "audio/pcma"}
_TYPES = ("audio/pcm", "audio/pcmu", "audio/pcma")


class AudioFormatError(ValueError):
    pass


@dataclass(frozen=True)
class AudioFormat:
    type: str
    rate: int

    def __post_init__(self) -> None:
        if self.type not in _TYPES:
            raise AudioFormatError(
                f"unsupported audio format type {self.type!r}; supported: {', '.join(_TYPES)} "
                f"(or the legacy names {', '.join(_LEGACY)})")
        if self.type == "audio/pcm":
            if type(self.rate) is not int or self.rate not in PCM_RATES:  # no 24000.0 or True
                raise AudioFormatError(
                    f"unsupported audio/pcm rate {self.rate!r}; supported rates: "
                    f"{', '.join(map(str, PCM_RATES))}")
        elif self.rate != G711_RATE:
            raise AudioFormatError(f"{self.type} is always {G711_RATE} Hz, not {self.rate!r}")

    @classmethod
    def parse(cls, obj: Any) -> AudioFormat:
        """Read a GA format object ({"type": "audio/pcm", "rate": 24000}) or a legacy name ("pcm16")."""
        if isinstance(obj, AudioFormat):
            return obj
        if isinstance(obj, str):
            if obj not in _LEGACY and obj not in _TYPES:
                raise AudioFormatError(
                    f"unsupported audio format {obj!r}; use one of {', '.join(_LEGACY)} "
                    f"or an object with type {', '.join(_TYPES)}")
            obj = {"type": _LEGACY.get(obj, obj)}
        if not isinstance(obj, dict) or "type" not in obj:
            raise AudioFormatError(f"audio format must be a string or an object with a 'type', got {obj!r}")
        kind = obj["type"]
        default = 24000 if kind == "audio/pcm" else G711_RATE
        return cls(kind, obj.get("rate", default))

    def to_dict(self) -> dict[str, Any]:
        if self.type == "audio/pcm":
            return {"type": self.type, "rate": self.rate}
        return {"type": self.type}


PCM24K = AudioFormat("audio/pcm", 24000)


def decode_audio(data: bytes, fmt: AudioFormat) -> np.ndarray:
    """Client bytes -> int16 mono samples at fmt.rate."""
    if fmt.type == "audio/pcmu":
        data = audioop.ulaw2lin(data, 2)
    elif fmt.type == "audio/pcma":
        data = audioop.alaw2lin(data, 2)
    elif len(data) % 2:
        raise AudioFormatError(f"PCM16 audio has an odd number of bytes ({len(data)}); samples are 2 bytes each")
    # Wire format is little-endian; astype makes a native, writable copy.
    return np.frombuffer(data, dtype="<i2").astype(np.int16)


def encode_audio(pcm: np.ndarray, fmt: AudioFormat) -> bytes:
    """int16 mono samples -> client bytes."""
    pcm = np.asarray(pcm)
    if pcm.dtype != np.int16:
        raise TypeError(f"encode_audio expects int16 samples, got {pcm.dtype}")
    data = pcm.astype("<i2", copy=False).tobytes()
    if fmt.type == "audio/pcmu":
        return audioop.lin2ulaw(data, 2)
    if fmt.type == "audio/pcma":
        return audioop.lin2alaw(data, 2)
    return data


class Resampler:
    """Streaming int16 resampler: chunks in, chunks out, no clicks at chunk edges."""

    def __init__(self, in_rate: int, out_rate: int, quality: str = "HQ"):
        self.in_rate, self.out_rate, self.quality = in_rate, out_rate, quality
        self._stream = self._new_stream()

    def _new_stream(self) -> soxr.ResampleStream | None:
        if self.in_rate == self.out_rate:
            return None
        return soxr.ResampleStream(self.in_rate, self.out_rate, 1, dtype="int16", quality=self.quality)

    def process(self, chunk: np.ndarray) -> np.ndarray:
        chunk = np.asarray(chunk, dtype=np.int16)
        if self._stream is None:
            return chunk
        return self._stream.resample_chunk(chunk)

    def flush(self) -> np.ndarray:
        """The samples still held in the filter; the stream is then ready for new audio."""
        if self._stream is None:
            return np.zeros(0, np.int16)
        tail = self._stream.resample_chunk(np.zeros(0, np.int16), last=True)
        # A new stream rather than clear(): int16 output is dithered, and a fresh dither makes runs repeatable.
        self._stream = self._new_stream()
        return tail


def resample(x: np.ndarray, in_rate: int, out_rate: int) -> np.ndarray:
    """One-shot resampling; the output keeps the input's dtype."""
    x = np.asarray(x)
    if in_rate == out_rate:
        return x
    return soxr.resample(x, in_rate, out_rate)


def int16_to_float32(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float32) / 32768.0


def float32_to_int16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(np.asarray(x, dtype=np.float32) * 32768.0), -32768, 32767).astype(np.int16)
