"""One assistant reply as a cancellable object: LLM -> speakable chunks -> TTS -> audio paced out to the client.

Cancelling it (barge-in, response.cancel, truncate) stops every stage at once: the LLM generator is closed, queued
speech is dropped, nothing more is sent. The reply knows exactly which audio left, so the conversation keeps only
the words the user heard.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional


from livehost.avatar.visemes import VisemeTrack, to_event
from livehost.server import metrics
from livehost.server.protocol import new_id
from livehost.speech.audio import AudioFormat, Resampler, encode_audio
from livehost.speech.chunker import speakable_chunks
from livehost.speech.tts import Prosody

log = logging.getLogger("livehost.turn")
PIECE_MS = 100  # audio delta size: barge-in can stop between two pieces
_SENTENCE_END = (".", "!", "?", "…", "。", "！", "？", "~", '"', "»", ")")
HOLD_MAX_S = 0.5  # a hold (voice heard, not yet a turn) always resolves sooner; never let one stall a reply


@dataclass
class Segment:
    """A span of sent audio and the words it speaks."""
    start_ms: float
    end_ms: float
    text: str


def text_until(segments: list[Segment], audio_end_ms: float) -> str:
    """The words spoken up to audio_end_ms; a segment cut midway keeps the share of words that was heard."""
    words: list[str] = []
    for seg in segments:
        if audio_end_ms >= seg.end_ms - 0.5:  # sent_ms is a float sum of pieces: never lose a word to rounding
            words.append(seg.text)
        elif audio_end_ms > seg.start_ms:
            parts = seg.text.split()
            share = (audio_end_ms - seg.start_ms) / max(1.0, seg.end_ms - seg.start_ms)
            words.append(" ".join(parts[: int(len(parts) * share)]))
    return " ".join(w for w in words if w).strip()


@dataclass
class ReplyPlan:
    messages: list[dict]
    output_format: AudioFormat
    audio: bool = True
    voice: str = "default"
    speed: float = 1.0
    max_tokens: int = 120
    temperature: float = 0.6
    lead_ms: int = 400
    speech_end_wall: Optional[float] = None  # perf_counter() when the user stopped speaking, for the latency metric
    audio_out: Optional[Any] = None  # a media transport's speaker (WebRTC): write(pcm), clear() -> samples dropped
    dialogue: Optional[Any] = None  # the persona: emotion tags -> prosody and expressions
    avatar: Optional[Any] = None  # the session's AvatarStage when it draws a face (WebRTC video)
    script: Optional[str] = None  # a fixed line to say instead of asking the LLM (a handoff)
    sources: list = field(default_factory=list)  # knowledge chunks that ground the reply
    handoff: Optional[str] = None  # why a human is offered, if one is


class Reply:
    def __init__(self, plan: ReplyPlan, llm: Any, tts: Any, emit: Callable[[dict], None],
                 previous_item_id: Optional[str] = None):
        self.plan, self.llm, self.tts, self._emit = plan, llm, tts, emit
        self.id, self.item_id = new_id("resp"), new_id("item")
        self.previous_item_id = previous_item_id
        self.status, self.status_details = "in_progress", None
        self.segments: list[Segment] = []
        self.text = ""  # text mode: everything sent
        self.generated = ""  # the LLM's own words, tags and all: the next prompt repeats them so its cache holds
        self.sent_ms = 0.0
        self.item = {"id": self.item_id, "object": "realtime.item", "type": "message", "role": "assistant",
                     "status": "in_progress", "content": []}
        self.task: Optional[asyncio.Task] = None
        self.cancelled_at: Optional[float] = None
        self._last_emotion: Optional[str] = None
        self._cut_short = False
        self.wrapped = False  # asked to end after the sentence being said
        self.released_at = 0.0
        self._released = asyncio.Event()
        self._go = asyncio.Event()  # cleared while held: the user may be starting to talk
        self._go.set()
        self.done = asyncio.Event()
        self.written = asyncio.Event()  # the LLM has written all of it (the voice may still be speaking it)

    # ---- control ---------------------------------------------------------------------------------------------------

    def release(self, previous_item_id: Optional[str] = None, speech_end_wall: Optional[float] = None) -> None:
        """Let a held (speculative) reply speak: its events start now, after the user's item."""
        self.previous_item_id = previous_item_id
        self.plan.speech_end_wall = speech_end_wall
        self._released.set()

    def start(self, held: bool = False) -> asyncio.Task:
        if not held:
            self._released.set()
        self.task = asyncio.get_running_loop().create_task(self._run(), name=f"reply {self.id}")
        return self.task

    def hold(self, on: bool) -> None:
        """Voice was heard but is not yet a turn: send nothing more until it is (cancel) or is not (resume).
        The client still has the lead's audio to play, so a false alarm is never heard as a gap."""
        (self._go.clear if on else self._go.set)()

    def wrap_up(self) -> None:
        """End after the sentence being said (something more urgent waits): never a cut mid-word, and what was not
        yet said is not sent. The reply completes with what was heard."""
        self.wrapped = True

    def cancel(self, reason: str) -> None:
        """Stop everywhere at once. Safe to call more than once."""
        if self.status == "in_progress":
            self.status, self.status_details = "cancelled", {"type": "cancelled", "reason": reason}
            self.cancelled_at = time.perf_counter()
            if self.plan.audio_out:  # audio queued in the media track was never heard: drop it, and un-count it
                dropped = self.plan.audio_out.clear()
                self.sent_ms = max(0.0, self.sent_ms - 1000 * dropped / self.plan.output_format.rate)
            if self.plan.avatar:
                self.plan.avatar.clear()
            if self.task and not self.task.done():
                self.task.cancel()

    @property
    def heard(self) -> str:
        return text_until(self.segments, self.sent_ms) if self.plan.audio else self.text

    # ---- the pipeline ----------------------------------------------------------------------------------------------

    def emit(self, kind: str, **fields: Any) -> None:
        self._emit({"type": kind, "event_id": new_id("event"), **fields})

    def _ids(self) -> dict:
        return {"response_id": self.id, "item_id": self.item_id, "output_index": 0, "content_index": 0}

    async def _run(self) -> None:
        self.created = time.perf_counter()
        queue: asyncio.Queue = asyncio.Queue(maxsize=4)  # a few sentences ahead, no more
        producer = asyncio.get_running_loop().create_task(
            self._synthesize(queue) if self.plan.audio else self._write(queue))
        try:
            await self._released.wait()  # a speculative reply prepares in silence until the turn is confirmed
            self.released_at = time.perf_counter()
            self.emit("response.created", response=self.response())
            self.emit("response.output_item.added", response_id=self.id, output_index=0, item=self.item)
            self.emit("conversation.item.added", previous_item_id=self.previous_item_id, item=self.item)
            part = {"type": "audio", "transcript": ""} if self.plan.audio else {"type": "text", "text": ""}
            self.emit("response.content_part.added", **self._ids(), part=part)
            if self.plan.sources:  # extension: what grounds this answer (customer-service mode)
                self.emit("livehost.knowledge", response_id=self.id, item_id=self.item_id, sources=self.plan.sources)
            if self.plan.handoff:  # extension: offer a human; the embedding page can hook this
                self.emit("livehost.handoff", response_id=self.id, item_id=self.item_id, reason=self.plan.handoff)
            await (self._send(queue) if self.plan.audio else self._send_text(queue))
            self.status = "completed"
        except asyncio.CancelledError:
            if self.status == "in_progress":  # cancelled from outside without cancel(): the connection went away
                self.status, self.status_details = "cancelled", {"type": "cancelled", "reason": "client_cancelled"}
        except Exception as exc:  # noqa: BLE001 - an engine failure ends this reply, never the session
            log.warning("reply failed: %s", exc)
            self.emit("error", error={"type": "server_error", "code": "engine_error", "message": str(exc),
                                      "param": None, "event_id": None})
            self.status = "failed"
            self.status_details = {"type": "failed", "error": {"type": "server_error", "code": type(exc).__name__,
                                                                "message": str(exc)}}
        finally:
            producer.cancel()
            await asyncio.gather(producer, return_exceptions=True)
            self._finish()

    async def _tokens(self):
        if self.plan.script is not None:
            yield self.plan.script
            return
        count = 0
        async for token in self.llm.stream(self.plan.messages, max_tokens=self.plan.max_tokens,
                                           temperature=self.plan.temperature):
            self.generated += token
            if count == 0:
                metrics.LLM_FIRST_TOKEN.observe(time.perf_counter() - self.created)
            count += 1
            yield token
        self._cut_short = count >= self.plan.max_tokens - 1  # stopped by max_tokens, likely mid-sentence
        self.written.set()

    async def _write(self, queue: asyncio.Queue) -> None:
        """Text mode producer: tokens as they come."""
        tokens = self._tokens()
        try:
            async for token in tokens:
                await queue.put(token)
            await queue.put(None)
        except Exception as exc:  # noqa: BLE001 - handed to the sender, which ends the reply as failed
            await queue.put(exc)
        finally:
            await tokens.aclose()

    async def _send_text(self, queue: asyncio.Queue) -> None:
        tagger = self.plan.dialogue.tagger() if self.plan.dialogue else None
        while (token := await queue.get()) is not None:
            if isinstance(token, Exception):
                raise token
            if tagger:  # emotion tags are never shown
                emotion, token = tagger.feed_token(token)
                self._emotion(emotion, 0.0)
                if not token:
                    continue
            self.text += token
            self.emit("response.output_text.delta", **self._ids(), delta=token)

    async def _synthesize(self, queue: asyncio.Queue) -> None:
        """Audio mode producer: LLM tokens -> speakable chunks -> TTS, while the sender paces earlier audio out."""
        resampler: Optional[Resampler] = None
        dialogue = self.plan.dialogue
        tagger = dialogue.tagger() if dialogue else None
        tokens = self._tokens()
        chunks = speakable_chunks(tokens)
        try:
            spoke = 0  # words said so far
            async for chunk in chunks:
                emotion, text = tagger.feed(chunk) if tagger else ("neutral", chunk)
                if not text:  # a chunk that was only a tag
                    continue
                if self._cut_short and spoke >= 4 and len(text.split()) <= 12 and \
                        not text.rstrip().endswith(_SENTENCE_END):
                    break  # the max_tokens cut left a short half sentence: end on the last whole one instead
                spoke += len(text.split())
                prosody = dialogue.prosody(emotion, self.plan.speed) if dialogue else Prosody(rate=self.plan.speed)
                started = time.perf_counter()
                # mouth shapes from the exact phoneme timings, made in the same worker thread as the audio
                pieces = await asyncio.to_thread(lambda: [(p, VisemeTrack.from_chunk(p))
                                                          for p in self.tts.synthesize(text, prosody)])
                metrics.TTS_CHUNK.observe(time.perf_counter() - started)
                for piece, track in pieces:
                    resampler = resampler or Resampler(piece.sample_rate, self.plan.output_format.rate)
                    await queue.put((piece.text or text, resampler.process(piece.audio), emotion, track))
            await queue.put(None)
        except Exception as exc:  # noqa: BLE001 - handed to the sender, which ends the reply as failed
            await queue.put(exc)
        finally:  # close the LLM stream now, not when the garbage collector gets to it
            await chunks.aclose()
            await tokens.aclose()

    async def _send(self, queue: asyncio.Queue) -> None:
        rate = self.plan.output_format.rate
        step = rate * PIECE_MS // 1000
        playout_end = time.perf_counter()  # when the client will have played everything sent so far
        while not (self.wrapped and self.segments) and (item := await queue.get()) is not None:
            if isinstance(item, Exception):
                raise item
            text, pcm, emotion, track = item
            start_ms = self.sent_ms
            if self.sent_ms == 0 and self.plan.avatar:
                self.plan.avatar.begin()
            self._emotion(emotion, start_ms)
            track = track.shifted(start_ms)
            self._emit({"event_id": new_id("event"), **to_event(track, response_id=self.id, item_id=self.item_id)})
            if self.plan.avatar:
                self.plan.avatar.push(track)
            for i in range(0, len(pcm), step):
                now = time.perf_counter()
                if playout_end - now > self.plan.lead_ms / 1000:  # pace to real time, a small lead ahead
                    await asyncio.sleep(playout_end - now - self.plan.lead_ms / 1000)
                if not self._go.is_set():  # checked last, right before the send
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._go.wait(), HOLD_MAX_S)
                    self._go.set()
                piece = pcm[i:i + step]
                if self.sent_ms == 0:
                    self._first_audio()
                if self.plan.audio_out:
                    self.plan.audio_out.write(piece)
                else:
                    self.emit("response.output_audio.delta", **self._ids(),
                              delta=base64.b64encode(encode_audio(piece, self.plan.output_format)).decode())
                if i == 0:
                    self.emit("response.output_audio_transcript.delta", **self._ids(),
                              delta=(" " if self.segments else "") + text)
                    # the segment spans the chunk's whole audio, so a cut midway keeps only the share heard
                    self.segments.append(Segment(start_ms, start_ms + 1000 * len(pcm) / rate, text))
                duration = len(piece) / rate
                playout_end = max(playout_end, time.perf_counter()) + duration
                self.sent_ms += 1000 * duration

    def _emotion(self, emotion: str, at_ms: float) -> None:
        """Extension event `livehost.emotion`: the feeling of what is said from audio_start_ms of this reply on."""
        if emotion != self._last_emotion:
            self._last_emotion = emotion
            expression = self.plan.dialogue.expression(emotion) if self.plan.dialogue else emotion
            self.emit("livehost.emotion", response_id=self.id, item_id=self.item_id, emotion=emotion,
                      expression=expression, audio_start_ms=round(at_ms))
            if self.plan.avatar:
                self.plan.avatar.emotion(expression, at_ms)

    def _first_audio(self) -> None:
        now = time.perf_counter()
        metrics.TTS_FIRST_AUDIO.observe(now - self.released_at)
        if self.plan.speech_end_wall is not None:
            metrics.SPEECH_END_TO_AUDIO.observe(now - self.plan.speech_end_wall)

    # ---- ending ----------------------------------------------------------------------------------------------------

    def _finish(self) -> None:
        if not self._released.is_set():  # a speculation that was never confirmed: the client never saw it
            self.done.set()
            return
        text = self.heard
        if self.plan.audio:
            content = {"type": "output_audio", "transcript": text}
            self.emit("response.output_audio.done", **self._ids())
            self.emit("response.output_audio_transcript.done", **self._ids(), transcript=text)
            part = {"type": "audio", "transcript": text}
        else:
            content = {"type": "output_text", "text": text}
            self.emit("response.output_text.done", **self._ids(), text=text)
            part = {"type": "text", "text": text}
        self.item["content"] = [content]
        self.item["status"] = "completed" if self.status == "completed" else "incomplete"
        self.emit("response.content_part.done", **self._ids(), part=part)
        self.emit("response.output_item.done", response_id=self.id, output_index=0, item=self.item)
        self.emit("conversation.item.done", item=self.item)
        self.emit("response.done", response=self.response())
        if self.status == "cancelled" and self.cancelled_at:
            metrics.BARGE_IN.observe(time.perf_counter() - self.cancelled_at)
        self.done.set()

    def response(self) -> dict:
        return {"id": self.id, "object": "realtime.response", "status": self.status,
                "status_details": self.status_details, "conversation_id": "conv_default",
                "output": [self.item] if self.status != "in_progress" else [],
                "output_modalities": ["audio"] if self.plan.audio else ["text"],
                "audio": {"output": {"format": self.plan.output_format.to_dict(), "voice": self.plan.voice}},
                "max_output_tokens": self.plan.max_tokens, "usage": None}
