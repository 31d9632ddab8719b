"""Has the speaker finished? Smart Turn v3.2, an end-of-turn model that listens to how a phrase ends.

Smart Turn v3.2 (Daily, BSD-2-Clause; 8.7 MB int8 ONNX) is a Whisper-tiny encoder with a classifier on top: it reads
Whisper log-mel features of the last 8 s of 16 kHz speech and returns P(the turn is complete). It runs on
onnxruntime alone; the features are computed here with faster-whisper's numpy extractor.

The file ships inside the `pipecat-ai` wheel. pipecat-ai as a dependency would pin protobuf, soundfile and soxr
below ours and add numba (+250 MB installed), so the one file is taken from the wheel instead, once, into the
model cache: from an installed pipecat-ai if there is one, else from a wheel that `pip download` fetches from the
registry pip already uses (12 MB, with progress bars). `vad.turn_model` may name the .onnx or a downloaded wheel.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import numpy as np

log = logging.getLogger("livehost.models")

RATE = 16000
WINDOW_S = 8  # the model hears the last 8 s of the turn
MODEL_FILE = "smart-turn-v3.2-cpu.onnx"
MODEL_SHA256 = "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f"
WHEEL = "pipecat-ai==1.14.0"
WHEEL_MEMBER = "pipecat/audio/turn/smart_turn/data/" + MODEL_FILE
_fetch_lock = threading.Lock()


class TurnModelError(RuntimeError):
    """The end-of-turn model file is missing or unusable; the message says how to get it."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _installed_pipecat_file() -> Path | None:
    spec = importlib.util.find_spec("pipecat")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))).parent / WHEEL_MEMBER
    return path if path.is_file() else None


def _extract(wheel: Path, target: Path) -> Path:
    """Copy the model out of a pipecat-ai wheel into target (temp file + rename), checking its hash."""
    from tqdm import tqdm

    try:
        zf = zipfile.ZipFile(wheel)
    except (OSError, zipfile.BadZipFile) as e:
        raise TurnModelError(f"{wheel} is not a readable wheel ({e})") from e
    with zf:
        try:
            info = zf.getinfo(WHEEL_MEMBER)
        except KeyError:
            raise TurnModelError(f"{wheel} holds no {WHEEL_MEMBER}; use the {WHEEL} wheel") from None
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=MODEL_FILE + ".", suffix=".tmp", dir=target.parent)
        h = hashlib.sha256()
        try:
            with os.fdopen(fd, "wb") as out, zf.open(info) as src, tqdm(
                    total=info.file_size, unit="B", unit_scale=True, unit_divisor=1024, desc="smart turn") as bar:
                while chunk := src.read(1 << 20):
                    out.write(chunk)
                    h.update(chunk)
                    bar.update(len(chunk))
            if h.hexdigest() != MODEL_SHA256:
                raise TurnModelError(f"{WHEEL_MEMBER} in {wheel} is not the Smart Turn v3.2 file (sha256 differs)")
            os.chmod(tmp, 0o644)  # mkstemp makes it private; a model file is not
            os.replace(tmp, target)
        finally:
            Path(tmp).unlink(missing_ok=True)
    return target


def _download_wheel(folder: Path) -> Path:
    """`pip download` the pipecat-ai wheel (no dependencies): the registry, proxy and certificates pip is set up with."""
    log.info("fetching %s's wheel (12 MB) once for its end-of-turn model", WHEEL)
    cmd = [sys.executable, "-m", "pip", "download", WHEEL, "--no-deps", "--only-binary=:all:", "-d", str(folder)]
    try:
        done = subprocess.run(cmd, stdout=sys.stderr, timeout=600)  # pip's own progress bar shows on the console
    except (OSError, subprocess.TimeoutExpired) as e:
        done = e
    wheels = sorted(folder.glob("pipecat_ai-*.whl"))
    if isinstance(done, Exception) or done.returncode != 0 or not wheels:
        raise TurnModelError(
            f"could not fetch the end-of-turn model: `{' '.join(cmd[2:6])}` failed. On a machine without a package "
            f"registry, download that wheel elsewhere and set vad.turn_model to its path (or to the extracted "
            f"{MODEL_FILE}), or use turn_detection server_vad")
    return wheels[-1]


def resolve_model(turn_model: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None) -> Path:
    """The Smart Turn .onnx: `turn_model` (an .onnx, or a pipecat-ai wheel to take it from), else an installed
    pipecat-ai's copy, else the model cache (filled once from the wheel)."""
    from livehost.speech.registry import model_cache_dir as default_cache_dir

    cache = (Path(cache_dir).expanduser() if cache_dir else default_cache_dir()) / "smart-turn" / MODEL_FILE
    if turn_model:
        path = Path(turn_model).expanduser()
        if not path.is_file():
            raise TurnModelError(f"vad.turn_model {path} does not exist (an .onnx file or the {WHEEL} wheel)")
        if path.suffix != ".whl":
            return path
        with _fetch_lock:
            return cache if cache.is_file() and _sha256(cache) == MODEL_SHA256 else _extract(path, cache)
    if (installed := _installed_pipecat_file()) is not None:
        return installed
    with _fetch_lock:
        if cache.is_file():
            if _sha256(cache) == MODEL_SHA256:
                return cache
            log.warning("%s is damaged (sha256 differs); fetching it again", cache)
        with tempfile.TemporaryDirectory(prefix="livehost-wheel-") as tmp:
            return _extract(_download_wheel(Path(tmp)), cache)


@functools.lru_cache(maxsize=None)
def _feature_extractor():
    from faster_whisper.feature_extractor import FeatureExtractor

    return FeatureExtractor(feature_size=80, sampling_rate=RATE, chunk_length=WINDOW_S)


def log_mel(audio: np.ndarray) -> np.ndarray:
    """Whisper log-mel features (80 x 800) of the last 8 s of 16 kHz float audio, as the model was trained:
    zeros before a shorter turn, then zero-mean unit-variance over the whole window."""
    n = RATE * WINDOW_S
    x = np.asarray(audio, np.float32).reshape(-1)[-n:]
    x = np.pad(x, (n - len(x), 0))
    x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
    return _feature_extractor()(x, padding=0)  # 128,000 samples, hop 160 -> exactly 800 frames


@functools.lru_cache(maxsize=None)
def _session(path: str):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    # One decision per pause per session: a single thread each keeps sessions from fighting over the cores.
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    try:
        session = ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - onnxruntime raises several kinds for a truncated or foreign file
        raise TurnModelError(f"the end-of-turn model {path} could not be loaded ({e}); delete it to fetch it "
                             f"again, or use turn_detection server_vad") from e
    inputs = {i.name: i.shape for i in session.get_inputs()}
    if list(inputs) != ["input_features"] or list(inputs["input_features"])[1:] != [80, 800]:
        raise TurnModelError(f"{path} is not a Smart Turn v3 model (inputs {inputs})")
    return session


class SmartTurn:
    """P(turn complete) for the audio of a turn so far. Thread-safe: sessions share one InferenceSession."""

    sample_rate = RATE

    def __init__(self, turn_model: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None):
        self.model_path = resolve_model(turn_model, cache_dir)
        self.session = _session(str(self.model_path))

    def probability(self, audio: np.ndarray) -> float:
        """`audio`: 16 kHz float32 in [-1, 1], the turn from its start up to now (only the last 8 s count)."""
        features = log_mel(audio)[None]
        return float(self.session.run(None, {"input_features": features})[0].reshape(-1)[0])

    def timed_probability(self, audio: np.ndarray) -> tuple[float, float]:
        """(P(complete), CPU seconds this thread spent on it): the cost of one decision."""
        started = time.thread_time()
        p = self.probability(audio)
        return p, time.thread_time() - started

    def warmup(self) -> None:
        self.probability(np.zeros(RATE, np.float32))
