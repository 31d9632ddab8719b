"""One conversation: its config, its items, the listener (ears) and the active reply (voice).

Transports (WebSocket, WebRTC) feed client events into `handle()` and drain `outbox`; all decisions live here.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
from dataclasses import replace
from typing import Any, Optional

import numpy as np

from livehost.server import metrics
from livehost.avatar.stage import AvatarStage, stream_frames
from livehost.persona.dialogue import Dialogue
from livehost.persona.voices import character_voice
from livehost.server.limits import RealTimePacer, SessionGuard
from livehost.server.outbox import Outbox
from livehost.server.protocol import (ProtocolError, SessionConfig, TurnDetection, apply_session_update,
                                      decode_message, new_id, parse_client_event)
from livehost.server.hearing import idle_cue, prime_prompt_cache
from livehost.server.conversation import Conversation, client_item, item_text, user_audio_item
from livehost.server.reply_events import Calls, Done, ReplyEvent, Started, assistant_item, to_realtime
from livehost.server.speculation import Speculation
from livehost.server.tool_calls import TOOL_ITEMS, SessionTools, check_client_item
from livehost.server.turn import Reply, ReplyPlan
from livehost.speech.audio import AudioFormat, AudioFormatError, Resampler, decode_audio, int16_to_float32
from livehost.speech.listener import Listener, ListenerConfig

log = logging.getLogger("livehost.session")


class RealtimeSession:
    def __init__(self, engines: Any, settings: Any, transport: str = "websocket", model: str = "livehost",
                 audio_out: Optional[Any] = None, media_format: Optional[AudioFormat] = None,
                 guard: Optional[SessionGuard] = None, intent: Optional[str] = None):
        self.engines, self.settings, self.transport, self.model = engines, settings, transport, model
        self.guard = guard or SessionGuard(None, settings.server)  # what its credential allows, and its limits
        self.guard.session = self
        self.audio_out = audio_out  # a media transport's speaker: has write(pcm) and clear(); None sends events
        self.avatar: Optional[Any] = None  # an AvatarStage when the transport shows a face (WebRTC video)
        self.id = new_id("sess")
        vad, asr = settings.vad, settings.asr
        self.media_format = media_format  # media transports fix the audio format; session.update cannot change it
        self.config = self.guard.initial(SessionConfig(
            character=settings.persona.character,
            **({"input_format": media_format, "output_format": media_format} if media_format else {}),
            language=None if asr.language in ("auto", "character") else asr.language,  # None: the server's choice
            turn_detection=TurnDetection(vad.threshold, vad.prefix_padding_ms, vad.silence_ms, type=vad.turn_detection,
                                         eagerness=vad.eagerness),
            kind="transcription" if intent == "transcription" else "realtime"))
        self.outbox = Outbox(settings.server.max_outbox_bytes, transport)  # bounded: a client that does not read is let go
        self.conversation = Conversation()
        self.tools = SessionTools(self)
        self.reply: Optional[Reply] = None
        self._pending: dict[str, asyncio.Task] = {}  # user items still being transcribed
        self._tasks: set[asyncio.Task] = set()
        self._resampler = Resampler(self.config.input_format.rate, 16000)
        self._pacer = RealTimePacer(settings.server.max_ahead_of_realtime_s, self.send)
        self._speech_end_wall: Optional[float] = None
        self._speculation = Speculation()
        self._frames_task: Optional[asyncio.Task] = None
        self.dialogue = self._make_dialogue()
        self.listener = Listener(engines.vad, engines.asr, self._listener_config(), self._on_listener,
                                 lambda: new_id("item"), turn_model=getattr(engines, "turn", None))
        metrics.SESSIONS_ACTIVE.labels(transport).inc()
        metrics.SESSIONS_TOTAL.labels(transport).inc()

    def _reply_turns(self) -> Optional[TurnDetection]:
        """Turn detection as far as replies go: a transcription session (captions only) never replies."""
        return self.config.turn_detection if self.config.kind == "realtime" else None

    def _listener_config(self) -> ListenerConfig:
        td, s = self.config.turn_detection or TurnDetection(), self.settings
        return ListenerConfig(td.threshold, s.vad.min_speech_ms, td.silence_duration_ms, td.prefix_padding_ms,
                              s.asr.partial_interval_ms, s.server.max_buffer_seconds,
                              self.config.language or s.asr.language_for(self.dialogue.character),
                              eagerness=td.eagerness if td.type == "semantic_vad" else None)

    # ---- out -------------------------------------------------------------------------------------------------------

    def send(self, event: dict) -> None:
        event.setdefault("event_id", new_id("event"))
        if event["type"] == "error":
            metrics.ERRORS.labels(event["error"].get("code") or "error").inc()
        self.outbox.put_nowait(event)

    def emit(self, kind: str, **fields: Any) -> None:
        self.send({"type": kind, **fields})

    def _make_dialogue(self) -> Dialogue:
        e, llm = self.engines, self.settings.llm
        return Dialogue(e.characters.get(self.config.character), e.llm, user_id=self.config.user_id,
                        memory=None if self.guard.identity.anonymous else e.memory, knowledge=e.knowledge,
                        budget_tokens=max(256, llm.context_tokens - llm.max_tokens - 400))

    def _session_dict(self) -> dict:
        return self.config.to_dict(self.id, self.model, self.dialogue.character.system_prompt())

    def start(self) -> None:
        self.emit("session.created", session=self._session_dict())
        self._prime_llm()

    def _prime_llm(self) -> None:
        if self.config.kind == "realtime":  # the system prompt as Dialogue.plan starts it
            self._spawn(prime_prompt_cache(self.engines.llm, self.config.instructions
                                           or self.dialogue.character.persona_prompt()))

    # ---- in --------------------------------------------------------------------------------------------------------

    async def handle(self, raw: str | bytes) -> None:
        """One client message. Every client mistake becomes an `error` event; the session goes on."""
        try:
            event = parse_client_event(decode_message(raw))
            handler = getattr(self, "_on_" + event.type.replace(".", "_"))
            try:
                await handler(event)
            except ProtocolError as exc:
                exc.event_id = exc.event_id or event.event_id
                raise
        except ProtocolError as exc:
            self.send(exc.event())
        except Exception as exc:  # noqa: BLE001 - a server bug on one event must not end the session
            log.exception("session %s: the event failed", self.id)
            self.send(ProtocolError(f"the server could not handle this event ({type(exc).__name__})",
                                    code="server_error").event())

    async def _on_session_update(self, event) -> None:
        old = self.config
        config = apply_session_update(old, event.session)
        if self.media_format:
            config = replace(config, input_format=self.media_format, output_format=self.media_format)
        self.guard.check_update(old, config, self.engines.characters, self.listener.turn_model)
        if (config.character, config.user_id) != (old.character, old.user_id):
            self.config = config
            await self.dialogue.close()
            self.dialogue = self._make_dialogue()
            if self.avatar:  # the new character's face on the same clock
                self.avatar.recast(self.dialogue.character, self.settings.avatar)
        self.config = config
        if self.config.input_format != old.input_format:
            self._resampler = Resampler(self.config.input_format.rate, 16000)
        self.listener.reconfigure(self._listener_config(), auto=self.config.turn_detection is not None)
        if config.avatar_frames != old.avatar_frames:
            self._stream_frames(config.avatar_frames)
        self.emit("session.updated", session=self._session_dict())
        if (config.instructions, config.character, config.kind) != (old.instructions, old.character, old.kind):
            self._prime_llm()

    async def _on_input_audio_buffer_append(self, event) -> None:
        try:
            data = base64.b64decode(event.audio, validate=True)
        except (binascii.Error, ValueError):
            raise ProtocolError("input_audio_buffer.append: audio is not valid base64", code="invalid_base64",
                                param="audio") from None
        try:
            pcm = decode_audio(data, self.config.input_format)
        except AudioFormatError as exc:
            raise ProtocolError(f"input_audio_buffer.append: {exc}", code="invalid_audio", param="audio") from None
        await self.feed_audio(pcm)

    async def feed_audio(self, pcm: np.ndarray) -> None:
        """Input audio (int16 at the session's input rate) from any transport."""
        if not len(pcm):
            return
        if self.listener.auto:  # manual commits may send a recording at once
            await self._pacer.pace(len(pcm) / self.config.input_format.rate)
        await self.listener.feed(int16_to_float32(self._resampler.process(pcm)))

    async def _on_input_audio_buffer_commit(self, event) -> None:
        if self.listener.buffered_ms < 100:
            raise ProtocolError(f"buffer too small: expected at least 100 ms of audio, have "
                                f"{self.listener.buffered_ms} ms", code="input_audio_buffer_commit_empty")
        item_id, audio = self.listener.commit()
        self.emit("input_audio_buffer.committed", previous_item_id=self.conversation.last_id(), item_id=item_id)
        self._add_item(user_audio_item(item_id))
        self._pending[item_id] = self._spawn(self._transcribe_committed(item_id, audio))

    async def _transcribe_committed(self, item_id: str, audio: np.ndarray) -> None:
        try:
            result = await self.listener.transcribe(audio)
            self._complete_transcript(item_id, result.text.strip(), len(audio) / 16000)
        except Exception as exc:  # noqa: BLE001
            log.exception("transcription failed")
            self.emit("conversation.item.input_audio_transcription.failed", item_id=item_id, content_index=0,
                      error={"type": "transcription_error", "message": str(exc)})
        finally:
            self._pending.pop(item_id, None)

    async def _on_input_audio_buffer_clear(self, event) -> None:
        self.listener.clear()
        self.emit("input_audio_buffer.cleared")

    async def _on_conversation_item_create(self, event) -> None:
        item = check_client_item(event.item, self.conversation.items) if event.item.get("type") in TOOL_ITEMS \
            else client_item(event.item)
        if event.previous_item_id and event.previous_item_id not in self.conversation.items:
            raise ProtocolError(f"previous_item_id {event.previous_item_id!r} does not exist",
                                code="item_not_found", param="previous_item_id")
        self.guard.fit_item(item_text(item), self.conversation)
        self._add_item(item)
        if item.get("role") == "user":
            self.dialogue.heard_user(item_text(item))
        self.emit("conversation.item.done", item=item)

    async def _on_conversation_item_retrieve(self, event) -> None:
        self.emit("conversation.item.retrieved", item=self.conversation.get(event.item_id))

    async def _on_conversation_item_delete(self, event) -> None:
        self.conversation.delete(event.item_id)
        self.emit("conversation.item.deleted", item_id=event.item_id)

    async def _on_conversation_item_truncate(self, event) -> None:
        if self.reply and self.reply.item_id == event.item_id:
            await self._stop_reply("client_cancelled")
        self.conversation.truncate(event.item_id, event.audio_end_ms)
        self.emit("conversation.item.truncated", item_id=event.item_id, content_index=event.content_index,
                  audio_end_ms=event.audio_end_ms)

    async def _on_response_create(self, event) -> None:
        if self.config.kind == "transcription":
            raise ProtocolError("a transcription session makes no responses", code="invalid_value", param="type")
        if self.reply and self.reply.status == "in_progress":
            raise ProtocolError("the conversation already has an active response",
                                code="conversation_already_has_active_response")
        self.guard.admit_response()
        if self.reply:  # cancelled a moment ago (response.cancel, then response.create): it is winding down
            await self.reply.done.wait()
        options = event.response or {}
        self._start_reply(instructions=options.get("instructions"), offer=self.tools.offer(options),
                          modalities=options.get("output_modalities") or options.get("modalities"),
                          max_tokens=self.guard.response_tokens(options))

    async def _on_response_cancel(self, event) -> None:
        if not self.reply or (event.response_id and event.response_id != self.reply.id):
            raise ProtocolError("there is no active response to cancel", code="response_cancel_not_active")
        self.reply.cancel("client_cancelled")  # not awaited: reading the client's audio must go on meanwhile

    async def _on_output_audio_buffer_clear(self, event) -> None:
        reply = self.reply  # also one whose last words are still playing: they are dropped from the speaker
        if reply:
            reply.cancel("client_cancelled")
        self.emit("output_audio_buffer.cleared", response_id=reply.id if reply else None)

    def _stream_frames(self, frames: Optional[tuple[int, str]]) -> None:
        """The avatar as encoded frames on the WebSocket, for clients that cannot use WebRTC video."""
        if self._frames_task:
            self._frames_task.cancel()
            self._frames_task = None
        if frames is None or self.media_format:  # media transports have a video track instead
            if not self.media_format:
                self.avatar = None
            return
        started = time.perf_counter()
        self.avatar = AvatarStage.for_settings(self.dialogue.character, lambda: 1000 * (time.perf_counter() - started),
                                               self.settings.avatar)
        self._frames_task = self._spawn(stream_frames(lambda: self.avatar, self.emit, *frames))

    # ---- listener events -------------------------------------------------------------------------------------------

    def _on_listener(self, kind: str, data: dict) -> None:
        if kind == "speech_started":
            td = self.config.turn_detection
            if self.reply and td and td.interrupt_response:  # barge-in
                self.reply.cancel("turn_detected")
            if self.avatar:
                self.avatar.mode("listening")
            self.emit("input_audio_buffer.speech_started", item_id=data["item_id"],
                      audio_start_ms=data["audio_start_ms"])
        elif kind in ("onset", "onset_lost"):  # maybe the user: send no more reply audio until we know
            td = self.config.turn_detection
            if self.reply and td and td.interrupt_response:
                self.reply.hold(kind == "onset")
        elif kind == "partial":
            self.emit("conversation.item.input_audio_transcription.delta", item_id=data["item_id"], content_index=0,
                      delta=data["delta"])
        elif kind == "speech_stopped":
            self._speech_end_wall = time.perf_counter() - data["endpointing_s"]
            metrics.ENDPOINTING.observe(data["endpointing_s"])
            self.emit("input_audio_buffer.speech_stopped", item_id=data["item_id"], audio_end_ms=data["audio_end_ms"])
            if self.avatar:
                self.avatar.mode("thinking")
            self.emit("input_audio_buffer.committed", previous_item_id=self.conversation.last_id(), item_id=data["item_id"])
            self._add_item(user_audio_item(data["item_id"]))
        elif kind == "speculative":
            td = self._reply_turns()
            if td and td.create_response and not self.reply and not self._pending and self.guard.has_room():
                self._speculation.guess(data["item_id"], data["transcript"],
                                        lambda text: self._start_reply(user_text=text))
        elif kind == "resumed":
            self._speculation.drop()
        elif kind == "final":
            metrics.ASR_FINAL.observe(data["asr_wait_s"])
            self._complete_transcript(data["item_id"], data["transcript"], len(data["audio"]) / 16000)
            td = self._reply_turns()
            held = self._speculation.take(data["item_id"], data["transcript"], usable=not self.reply)
            if held:
                self.reply = held  # the guess was right: the reply prepared in the silence speaks now
                held.release(data["item_id"], self._speech_end_wall)
            elif td and td.create_response and data["transcript"] and not self.reply and self.guard.admit_turn():
                self._start_reply(speech_end_wall=self._speech_end_wall)
        elif kind == "idle_timeout":
            td = self.config.turn_detection
            if td and td.idle_timeout_ms and not self.reply and self.config.kind == "realtime":
                self.emit("input_audio_buffer.timeout_triggered", item_id=new_id("item"),
                          audio_start_ms=data["audio_start_ms"], audio_end_ms=data["audio_end_ms"])
                self._start_reply(cue=idle_cue(td.idle_timeout_ms))
        elif kind == "failed":
            self.emit("conversation.item.input_audio_transcription.failed", item_id=data["item_id"],
                      content_index=0, error={"type": "transcription_error", "message": data["error"]})

    # ---- replies ----------------------------------------------------------------------------------------------------

    def _start_reply(self, instructions: Optional[str] = None, modalities: Optional[list] = None,
                     max_tokens: Optional[int] = None, speech_end_wall: Optional[float] = None,
                     user_text: Optional[str] = None, cue: Optional[str] = None,
                     offer: Optional[tuple] = None) -> Reply:
        """Start a reply (it plans, then speaks); with user_text it is a held speculation on a turn not yet
        confirmed."""
        tts = character_voice(self.dialogue.character, self.engines.tts, self.settings.tts)
        audio = "audio" in (modalities or self.config.output_modalities) and tts is not None  # None: no voice
        plan = ReplyPlan(messages=[], output_format=self.config.output_format, audio=audio,
                         voice=self.config.voice, speed=self.config.speed,
                         max_tokens=max_tokens or self.config.max_output_tokens or self.settings.llm.max_tokens,
                         temperature=self.settings.llm.temperature, lead_ms=self.settings.server.output_lead_ms,
                         speech_end_wall=speech_end_wall, audio_out=self.audio_out, avatar=self.avatar)
        plan.tools, plan.tool_choice = offer or self.tools.offer({})
        dialogue = self.dialogue

        async def prepare(plan: ReplyPlan) -> None:
            if self._pending:  # a reply needs the words of every user item before it (wait never cancels them)
                await asyncio.wait(list(self._pending.values()))
            conversation = self.conversation.for_llm()
            if user_text is not None or cue:  # a guess at the user's words not yet confirmed, or a cue (idle)
                conversation.append({"role": "user", "content": cue or user_text, "status": "completed"})
            if self.tools.prepare(plan, conversation, dialogue):  # it speaks from what tools returned
                return
            decided = await dialogue.plan(conversation, instructions or self.config.instructions or None)
            plan.messages, plan.script = decided.messages, decided.script
            plan.sources, plan.handoff, plan.dialogue = decided.sources, decided.handoff, dialogue

        reply = Reply(plan, self.engines.llm, tts, self._on_reply, prepare)
        if user_text is None:
            self.reply = reply
            self.listener.disarm_idle()
        self._tasks.add(reply.start(held=user_text is not None))
        reply.task.add_done_callback(self._tasks.discard)
        return reply

    def _on_reply(self, event: ReplyEvent) -> None:
        """The reply's events: the conversation keeps what it said, the client hears of it."""
        reply = event.reply
        if isinstance(event, Started):
            reply.previous_item_id = self.conversation.add(assistant_item(reply))
        elif isinstance(event, Calls):
            event.previous_ids = [self.conversation.add(item) for item in event.items if event.kind == "added"]
        elif isinstance(event, Done):
            if event.result.calls:
                self.tools.after(reply)
            if reply.started:
                self.conversation.record(assistant_item(reply, event.result), event.result)
            if reply.announced:
                metrics.REPLIES.labels(event.result.status).inc()
                if self.avatar and event.result.status != "cancelled":
                    self.avatar.mode("idle")
            if self.reply is reply:
                self.reply = None
                td = self.config.turn_detection
                if td and td.type == "server_vad" and td.idle_timeout_ms and event.result.status == "completed":
                    self.listener.arm_idle(td.idle_timeout_ms)  # its audio has played: is the user still there?
        for wire in to_realtime(event):
            self.send(wire)

    async def _stop_reply(self, reason: str) -> None:
        reply = self.reply
        if reply:
            reply.cancel(reason)
            await reply.done.wait()

    # ---- items -----------------------------------------------------------------------------------------------------

    def _complete_transcript(self, item_id: str, text: str, seconds: float) -> None:
        self.dialogue.heard_user(text)
        items = self.conversation.items
        if item_id in items:
            items[item_id]["content"][0]["transcript"] = text
        self.emit("conversation.item.input_audio_transcription.completed", item_id=item_id, content_index=0,
                  transcript=text, usage={"type": "duration", "seconds": round(seconds, 3)})
        if item_id in items:
            self.emit("conversation.item.done", item=items[item_id])

    def _add_item(self, item: dict) -> None:
        previous = self.conversation.add(item)
        self.emit("conversation.item.added", previous_item_id=previous, item=item)

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self) -> None:
        """The client went away: stop the reply and every task; nothing is left running."""
        if self.reply:
            self.reply.cancel("client_cancelled")
        self._speculation.drop()
        await self.listener.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.dialogue.close()
        await self.tools.close()
        self.guard.close()
        metrics.SESSIONS_ACTIVE.labels(self.transport).dec()

