"""The ears: 16 kHz audio in; speech start/stop, partial transcripts and the final transcript out.

Latency tricks: partial transcripts while the user speaks, and a speculative final transcript started the moment
silence begins, so that by the time the silence wait ends the transcript is usually ready.

End of turn: server_vad ends it after silence_ms of silence; semantic_vad (config.eagerness set) asks the
end-of-turn model (Smart Turn) after a short silence and ends it at once if the model judges it complete.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

log = logging.getLogger("livehost.listener")

RATE = 16000
FRAME = 512  # Silero's frame at 16 kHz (32 ms)


@dataclass
class ListenerConfig:
    threshold: float = 0.5
    min_speech_ms: int = 96
    silence_ms: int = 400
    prefix_padding_ms: int = 300
    partial_interval_ms: int = 900
    max_buffer_s: float = 60.0
    language: Optional[str] = None
    eagerness: Optional[str] = None  # semantic_vad: "low" | "medium" | "high" | "auto"; None: server_vad


@dataclass
class _Utterance:
    item_id: str
    start: int  # sample index (session clock) where the item's audio begins (prefix padding included)
    voice_end: int = 0  # sample index where the last voiced frame ended
    last_partial: int = 0
    partial_text: str = ""
    speculative: Optional[tuple[int, asyncio.Task]] = None  # (end sample, transcription task)
    timings: dict[str, float] = field(default_factory=dict)


class Listener:
    def __init__(self, vad_model: Any, asr: Any, config: ListenerConfig, emit: Callable[[str, dict], None],
                 make_id: Callable[[], str], turn_model: Any = None):
        self.asr, self.config, self.emit, self.make_id = asr, config, emit, make_id
        self.turn_model = turn_model  # SmartTurn, shared by every session; needed for semantic_vad only
        self.vad = vad_model.stream()
        self.endpointer = self._endpointer(config)
        self.auto = True  # server VAD on; off means the client commits
        self.total = 0  # samples heard this session
        self._heard = 0  # sample index where the last VAD frame ended
        self._buffer = np.zeros(0, np.float32)  # audio since buffer_start, bounded
        self._buffer_start = 0
        self._tail = np.zeros(0, np.float32)  # samples not yet a whole VAD frame
        self._utterance: Optional[_Utterance] = None
        self._asr_lock = asyncio.Lock()  # one transcription at a time per session: two would only halve the speed
        self._tasks: set[asyncio.Task] = set()
        self._idle: Optional[asyncio.Task] = None

    # ---- audio in ------------------------------------------------------------------------------------------------

    async def feed(self, samples: np.ndarray) -> None:
        """Add 16 kHz float32 audio. In auto mode, runs VAD and emits events as speech starts and stops."""
        self._buffer = np.concatenate([self._buffer, samples])
        self.total += len(samples)
        if not self.auto:
            self._trim(max(0, self.total - int(self.config.max_buffer_s * RATE)))
            return
        frames = np.concatenate([self._tail, samples])
        whole = len(frames) // FRAME * FRAME
        self._tail = frames[whole:]
        if not whole:
            return
        blocks = frames[:whole].reshape(-1, FRAME)
        probs = await asyncio.to_thread(lambda: [self.vad.probability(b) for b in blocks])
        end = self.total - len(self._tail) - whole  # sample index where the first block starts
        for prob in probs:
            end += FRAME
            self._on_frame(prob, end)
        if self._utterance is None:  # keep only what prefix padding may need
            self._trim(self.total - int((self.config.prefix_padding_ms + 1000) * RATE / 1000))

    def _endpointer(self, config: ListenerConfig):
        from livehost.speech.vad import EAGERNESS, Endpointer, SemanticEndpointer
        if config.eagerness is None:
            return Endpointer(config.threshold, config.min_speech_ms, config.silence_ms, 1000 * FRAME / RATE)
        if self.turn_model is None:
            raise ValueError("semantic_vad needs the end-of-turn model; none was loaded")
        return SemanticEndpointer(config.threshold, config.min_speech_ms, EAGERNESS[config.eagerness],
                                  1000 * FRAME / RATE)

    def _on_frame(self, prob: float, end: int) -> None:
        ep, utt, ms = self.endpointer, self._utterance, RATE // 1000
        self._heard = end
        was_onset = ep.onset
        event = ep.update(prob)
        if ep.onset != was_onset and event != "start":  # the first voiced frame, or a false alarm ending
            self.emit("onset" if ep.onset else "onset_lost", {})
        if event == "start":
            self.disarm_idle()
            start = max(self._buffer_start, end - int((ep.start_lag_ms + self.config.prefix_padding_ms) * ms))
            self._utterance = utt = _Utterance(self.make_id(), start, voice_end=end, last_partial=end)
            utt.timings["onset_wall"] = time.perf_counter()
            self.emit("speech_started", {"item_id": utt.item_id, "audio_start_ms": start // ms})
        elif event == "stop" and utt is not None:
            self._stop(utt, end)
        elif utt is not None and ep.in_speech:
            if ep.silence_run_ms == 0:
                utt.voice_end = end
                if utt.speculative:  # speech resumed: an earlier guess is stale
                    log.debug("speech resumed after %.0f ms: the speculative transcript is dropped",
                              1000 * (end - utt.speculative[0]) / RATE)
                    utt.speculative = None
                    self.emit("resumed", {"item_id": utt.item_id})
                if end - utt.last_partial >= self.config.partial_interval_ms * ms and not self._asr_lock.locked():
                    utt.last_partial = end
                    self._spawn(self._partial(utt, end))
            else:
                if utt.speculative is None:
                    speech_end = utt.voice_end
                    task = self._spawn(self._speculate(utt, speech_end, self._audio(utt.start, speech_end)))
                    utt.speculative = (speech_end, task)
                if getattr(ep, "ask", False):  # semantic_vad: has the speaker finished?
                    audio = self._audio(max(utt.start, end - 8 * RATE), end)  # the model hears the last 8 s
                    self._spawn(self._judge(ep, utt, utt.voice_end, audio))

    def _stop(self, utt: _Utterance, end: int) -> None:
        ms = RATE // 1000
        speech_end = utt.voice_end  # the same end the speculation used, so its transcript can be the final one
        self._utterance = None
        self.emit("speech_stopped", {"item_id": utt.item_id, "audio_end_ms": speech_end // ms,
                                     "endpointing_s": (end - speech_end) / RATE})
        self._spawn(self._finish(utt, speech_end, self._audio(utt.start, speech_end)))

    async def _judge(self, ep: Any, utt: _Utterance, speech_end: int, audio: np.ndarray) -> None:
        try:
            p, cpu_s = await asyncio.to_thread(self.turn_model.timed_probability, audio)
        except Exception:  # noqa: BLE001 - the max wait still ends the turn
            log.exception("end-of-turn model failed")
            return
        # Only if nothing happened meanwhile: the same turn, no speech since it was asked, same rule.
        current = self._utterance is utt and utt.voice_end == speech_end and self.endpointer is ep and ep.in_speech
        self.emit("turn_judged", {"item_id": utt.item_id, "p_complete": p, "cpu_s": cpu_s, "current": current})
        if current and ep.judged(p):
            ep.end_now()
            self._stop(utt, self._heard)

    def reconfigure(self, config: ListenerConfig, auto: bool) -> None:
        self.endpointer = self._endpointer(config)  # first: a config it cannot serve changes nothing
        self.config, self.auto = config, auto
        self._utterance = None
        self.disarm_idle()

    # ---- idle timeout ----------------------------------------------------------------------------------------------

    def arm_idle(self, timeout_ms: int) -> None:
        """A reply has just played: emit "idle_timeout" if nobody starts speaking within timeout_ms (wall clock:
        a client that stops sending audio is idle too)."""
        self.disarm_idle()
        armed_at = self.total

        async def wait() -> None:
            await asyncio.sleep(timeout_ms / 1000)
            self._idle = None
            if self._utterance is None and not self.endpointer.onset:  # someone just began to speak: not idle
                self.emit("idle_timeout", {"audio_start_ms": armed_at * 1000 // RATE,
                                           "audio_end_ms": self.total * 1000 // RATE})
        self._idle = self._spawn(wait())

    def disarm_idle(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None

    # ---- manual mode -----------------------------------------------------------------------------------------------

    def commit(self) -> tuple[str, np.ndarray]:
        """Take the whole buffer as one user item (turn detection off, or a client commit)."""
        audio = self._audio(self._buffer_start, self.total)
        self.clear()
        return self.make_id(), audio

    def clear(self) -> None:
        self._trim(self.total)
        self._utterance = None
        self.endpointer.reset()

    def cancel_utterance(self) -> None:
        self._utterance = None

    @property
    def buffered_ms(self) -> int:
        return (self.total - self._buffer_start) * 1000 // RATE

    # ---- transcription ---------------------------------------------------------------------------------------------

    async def transcribe(self, audio: np.ndarray):
        return await self._transcribe(audio, "commit")

    async def _transcribe(self, audio: np.ndarray, why: str):
        asked = time.perf_counter()
        # an engine may offer a cheaper draft for captions (faster-whisper: no full-window re-decode of a loop)
        transcribe = getattr(self.asr, "transcribe_draft", None) if why == "partial" else None
        async with self._asr_lock:
            began = time.perf_counter()
            result = await asyncio.to_thread(transcribe or self.asr.transcribe, audio, self.config.language)
        # why a turn's transcript came late: it waited behind a partial, or the run itself was slow (CPU taken)
        log.debug("asr %s: %.1f s of audio, waited %.0f ms, ran %.0f ms", why, len(audio) / RATE,
                  1000 * (began - asked), 1000 * (time.perf_counter() - began))
        return result

    async def _speculate(self, utt: _Utterance, speech_end: int, audio: np.ndarray):
        """Transcribe what was said before this silence; if the silence holds, it is the final transcript."""
        result = await self._transcribe(audio, "speculative")
        if utt.speculative and utt.speculative[0] == speech_end and result.text.strip():
            self.emit("speculative", {"item_id": utt.item_id, "transcript": result.text.strip()})
        return result

    async def _partial(self, utt: _Utterance, end: int) -> None:
        result = await self._transcribe(self._audio(utt.start, end), "partial")
        text = result.text.strip()
        if text.startswith(utt.partial_text) and len(text) > len(utt.partial_text):  # deltas only ever append
            delta, utt.partial_text = text[len(utt.partial_text):], text
            self.emit("partial", {"item_id": utt.item_id, "delta": delta})

    async def _finish(self, utt: _Utterance, speech_end: int, audio: np.ndarray) -> None:
        started = time.perf_counter()
        try:
            if utt.speculative and utt.speculative[0] == speech_end:
                result = await utt.speculative[1]
            else:
                result = await self._transcribe(audio, "final")
        except Exception as exc:  # noqa: BLE001 - a failed transcription must not end the session
            log.exception("transcription failed")
            self.emit("failed", {"item_id": utt.item_id, "error": str(exc), "audio": audio})
            return
        self.emit("final", {"item_id": utt.item_id, "transcript": result.text.strip(), "audio": audio,
                            "asr_wait_s": time.perf_counter() - started})

    # ---- buffer ----------------------------------------------------------------------------------------------------

    def _audio(self, start: int, end: int) -> np.ndarray:
        a, b = max(0, start - self._buffer_start), max(0, end - self._buffer_start)
        return self._buffer[a:b].copy()

    def _trim(self, new_start: int) -> None:
        if new_start > self._buffer_start:
            self._buffer = self._buffer[new_start - self._buffer_start:]
            self._buffer_start = new_start

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
