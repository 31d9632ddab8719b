"""Voice activity: one Silero VAD model shared by every session, and the rule that ends a user's turn."""
from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import onnxruntime as ort

from livehost.speech.registry import Registry

VAD: Registry = Registry("vad")


def _bundled_model() -> Path:
    # find_spec locates the package without importing it (its __init__ pulls in torch).
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the silero-vad package is not installed")
    return Path(spec.submodule_search_locations[0]) / "data" / "silero_vad.onnx"


@functools.lru_cache(maxsize=None)
def _load(path: str) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    # Many sessions call a tiny model every 32 ms: one thread each beats contending thread pools.
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])


@VAD.register("silero")
class SileroVAD:
    """Silero VAD v6 at 16 kHz. The model is stateless; each VADStream carries its own recurrent state."""

    sample_rate = 16000
    frame_samples = 512  # 32 ms
    context_samples = 64  # the model sees the previous frame's last 64 samples before each frame

    def __init__(self, model_path: str | Path | None = None):
        self.model_path = str(model_path or _bundled_model())
        self.session = _load(self.model_path)

    def stream(self) -> VADStream:
        return VADStream(self)


class VADStream:
    """Speech probability frame by frame for one audio stream.

    A stream belongs to one session; streams of different sessions may run in different threads,
    since they share only the InferenceSession, whose run() is thread-safe.
    """

    def __init__(self, vad: SileroVAD):
        self._session = vad.session
        self._frame = vad.frame_samples
        self._context_len = vad.context_samples
        self._sr = np.array(vad.sample_rate, dtype=np.int64)
        self.reset()

    def reset(self) -> None:
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._context = np.zeros((1, self._context_len), dtype=np.float32)

    def probability(self, frame: np.ndarray) -> float:
        """P(speech) for the next 512 float32 samples in [-1, 1] at 16 kHz."""
        x = np.asarray(frame, dtype=np.float32).reshape(1, -1)
        if x.shape[1] != self._frame:
            raise ValueError(f"VAD frames are {self._frame} samples at 16 kHz, got {x.shape[1]}")
        x = np.concatenate([self._context, x], axis=1)
        out, self._state = self._session.run(None, {"input": x, "state": self._state, "sr": self._sr})
        self._context = x[:, -self._context_len:]
        return float(out[0, 0])


EndpointEvent = Literal["start", "stop"]


class Endpointer:
    """Turns per-frame speech probabilities into "start" and "stop" of a user's turn.

    Hysteresis: a frame is voiced at prob >= threshold and unvoiced below threshold - 0.15;
    in between it keeps the previous frame's state, so a wavering probability does not flap.
    """

    hysteresis = 0.15

    def __init__(self, threshold: float = 0.5, min_speech_ms: float = 96, silence_ms: float = 400,
                 frame_ms: float = 32.0):
        self.threshold = threshold
        self.min_speech_ms = min_speech_ms
        self.silence_ms = silence_ms
        self.frame_ms = frame_ms
        self.reset()

    def reset(self) -> None:
        self.in_speech = False
        self.start_lag_ms = 0.0  # on "start": how long after the onset's first voiced frame it fired
        self.silence_run_ms = 0.0  # trailing silence while in speech
        self._voiced = False
        self._onset_ms: float | None = None  # time since the first voiced frame of a candidate onset
        self._voiced_ms = 0.0
        self._gap_frames = 0

    @property
    def onset(self) -> bool:
        """Voice heard but not yet long enough to be a turn: a reply should hold its breath, not stop."""
        return self._onset_ms is not None and not self.in_speech

    def update(self, prob: float) -> EndpointEvent | None:
        if prob >= self.threshold:
            self._voiced = True
        elif prob < self.threshold - self.hysteresis:
            self._voiced = False
        return self._in_speech(self._voiced) if self.in_speech else self._waiting(self._voiced)

    def _waiting(self, voiced: bool) -> EndpointEvent | None:
        if self._onset_ms is None:
            if not voiced:
                return None
            self._onset_ms = self._voiced_ms = 0.0
            self._gap_frames = 0
        self._onset_ms += self.frame_ms
        if not voiced:
            self._gap_frames += 1
            if self._gap_frames > 1:  # one unvoiced frame may split an onset; two end it
                self._onset_ms = None
            return None
        self._gap_frames = 0
        self._voiced_ms += self.frame_ms
        if self._voiced_ms < self.min_speech_ms - 1e-6:
            return None
        self.in_speech = True
        self.start_lag_ms = self._onset_ms
        self.silence_run_ms = 0.0
        self._onset_ms = None
        return "start"

    def _in_speech(self, voiced: bool) -> EndpointEvent | None:
        if voiced:
            self.silence_run_ms = 0.0
            return None
        self.silence_run_ms += self.frame_ms
        if self.silence_run_ms < self.silence_ms - 1e-6:
            return None
        self.in_speech = False
        self.silence_run_ms = 0.0
        return "stop"


@dataclass(frozen=True)
class Eagerness:
    """How soon semantic_vad ends a turn: at the first pause the model judges complete with P >= threshold, once
    it has lasted min_silence_ms, else after max_wait_ms of silence whatever it judged (a thought left hanging
    still gets an answer)."""
    threshold: float
    max_wait_ms: int
    min_silence_ms: int = 256


# Tuned on bench/turns.py (its RESULTS.md section has the figures); "auto" is OpenAI's name for the middle one.
# Asked early the model separates best: the longer the silence, the surer it gets that any pause is an end, the
# ones inside a thought too. Its answer ends the turn only after min_silence_ms, so the short breaths of someone
# reading a list aloud survive. The max wait is what a turn the model doubts costs (p95 of the wait).
EAGERNESS = {"low": Eagerness(0.9, 3000), "medium": Eagerness(0.9, 2000), "high": Eagerness(0.5, 1000, 128)}
EAGERNESS["auto"] = EAGERNESS["medium"]
SEMANTIC_GATE_MS = 128  # the VAD's silence before the end-of-turn model is asked: the VAD stays the first gate


class SemanticEndpointer(Endpointer):
    """An Endpointer whose turn may end early: after gate_ms of silence it sets `ask`, the caller runs the
    end-of-turn model on the turn so far and passes its answer to `judged(p)`: True means end the turn now
    (`end_now()`). A "complete" that comes before min_silence_ms of silence ends the turn when the silence gets
    there (update() returns "stop"), unless speech resumes first. If the model never says complete, the turn ends
    after the eagerness's max wait, as a server_vad turn does after silence_ms."""

    def __init__(self, threshold: float = 0.5, min_speech_ms: float = 96, eagerness: Eagerness = EAGERNESS["auto"],
                 frame_ms: float = 32.0, gate_ms: float = SEMANTIC_GATE_MS, min_silence_ms: float | None = None):
        super().__init__(threshold, min_speech_ms, eagerness.max_wait_ms, frame_ms)
        self.eagerness, self.gate_ms = eagerness, gate_ms
        self.min_silence_ms = eagerness.min_silence_ms if min_silence_ms is None else min_silence_ms
        self.ask = False
        self.approved = False  # the model said complete during this pause; the silence is still too short
        self.stopped_by_model = False  # the last "stop" came from the model, not the max wait

    def update(self, prob: float) -> EndpointEvent | None:
        before = self.silence_run_ms
        event = super().update(prob)
        if self.in_speech and self.silence_run_ms == 0:
            self.approved = False  # speech resumed: the answer was about a pause that is over
        if event == "stop":
            self.stopped_by_model, self.approved = False, False
        elif self.approved and self.in_speech and self.silence_run_ms >= self.min_silence_ms - 1e-6:
            self.end_now()
            self.stopped_by_model = True
            return "stop"
        # Once per pause: the frame on which the silence reaches the gate.
        self.ask = self.in_speech and before < self.gate_ms - 1e-6 <= self.silence_run_ms
        return event

    def complete(self, p: float) -> bool:
        return p >= self.eagerness.threshold

    def judged(self, p: float) -> bool:
        """The model's answer for the current pause: True if the turn ends now."""
        if not self.in_speech or not self.complete(p):
            return False
        if self.silence_run_ms >= self.min_silence_ms - 1e-6:
            self.stopped_by_model = True
            return True
        self.approved = True
        return False

    def end_now(self) -> None:
        """The model judged the turn complete: it ends here, as if the max wait had passed."""
        self.in_speech = False
        self.silence_run_ms = 0.0
        self.ask = self.approved = False
