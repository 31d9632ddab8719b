"""The livestream host: one per stream. Chat goes into a prioritised queue; the host answers one event at a time in
character through the program out (the voice and the avatar that the RTMP stream carries), talks about its own
topics when chat has been quiet, and falls silent while the streamer speaks. Operators pause, skip and inject lines
(REST routes in routes.py).

Every answer is an ordinary `Reply` (server/turn.py), planned inside it, so skipping, pausing, the streamer's voice
and shutdown all cancel it the same way barge-in does in a conversation, in every phase (planning included) until
its last word has played; the host subscribes to the reply's events like a session does.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np

from livehost.persona.dialogue import Dialogue
from livehost.persona.voices import character_voice
from livehost.server import metrics
from livehost.server.reply_events import Chunk, Created, Done, ReplyEvent, Started, audio_delta, to_realtime, with_ids
from livehost.server.turn import Reply, ReplyPlan
from livehost.speech.audio import AudioFormat, Resampler

from .events import ChatEvent, Message
from .prompts import Addressed, chat_messages, idle_messages, lead_for, viewer_name
from .queue import LOW, PAID, PRIORITY_NAMES, ChatQueue, QueuedItem

log = logging.getLogger("livehost.stream")
MAX_TURNS = 8  # exchanges kept as context; the 135M default model loses the thread beyond that anyway


class _VoiceTap:
    """The reply's voice out (server/voice_out.py) is the program out's clock; overlays subscribed to the host's
    events get a copy as Realtime audio deltas (pcm16, 24 kHz), so a browser overlay can play and lip-sync the host
    as a stream source."""
    OVERLAY = AudioFormat("audio/pcm", 24000)

    def __init__(self, program: Any, publish: Callable[[dict], None], has_listeners: Callable[[], bool]):
        self.program, self.publish, self.has_listeners = program, publish, has_listeners
        self.rate = program.rate
        self._resampler = Resampler(program.rate, self.OVERLAY.rate)
        self.response_id = ""

    def write(self, pcm: np.ndarray) -> None:
        self.program.write(pcm)
        if self.has_listeners():
            self.publish(with_ids([audio_delta({"response_id": self.response_id}, self._resampler.process(pcm),
                                               self.OVERLAY)])[0])

    def clear(self) -> int:
        return self.program.clear()

    @property
    def queued_ms(self) -> float:
        return self.program.queued_ms


@dataclass
class Turn:
    kind: str                      # "chat", "idle" or "line" (an operator's)
    item: Optional[QueuedItem] = None
    text: str = ""                 # the topic (idle) or the line (line)


class StreamHost:
    def __init__(self, engines: Any, settings: Any, program: Any, character: Optional[str] = None):
        s = settings.stream
        self.engines, self.settings, self.program = engines, settings, program
        self.character = engines.characters.get(character or s.character or settings.persona.character)
        self.queue = ChatQueue(max_chars=s.max_chars, rate_limit=s.rate_limit, rate_window_s=s.rate_window_s,
                               blocklist=s.blocklist)
        self.dialogue = Dialogue(self.character, engines.llm)  # emotion tags -> prosody and expressions
        self.tts = character_voice(self.character, engines.tts, settings.tts)  # None: not installed, text only
        card = self.character.livestream
        self.idle_after_s = s.idle_after_s or (card.idle_after_s if card else 20.0)
        self._topics = itertools.cycle(card.idle_topics) if card and card.idle_topics else None
        # The stream's recent exchanges, as sent to the LLM and as it answered: the next prompt starts with exactly
        # the same messages, so llama.cpp's prompt cache holds and only the new chat line is read. Trimmed by half
        # at a time (one cache miss every few turns), never one turn at a time (a miss every turn).
        self._turns: list[list[dict]] = []
        self.reply: Optional[Reply] = None
        self.turn: Optional[Turn] = None
        self.paused = False
        self.streamer_speaking = False
        self._quiet_until = 0.0  # after the streamer stops talking, the host waits a moment
        self._lines: deque[str] = deque()
        self._wake = asyncio.Event()
        self._last_activity = time.monotonic()
        self._greeted: set[str] = set()
        self._writes: set[asyncio.Task] = set()
        self.subscribers: set[asyncio.Queue] = set()
        self._voice = _VoiceTap(program, self._publish, lambda: bool(self.subscribers))
        self.spoken = {"chat": 0, "idle": 0, "line": 0}
        self._first_audio_pending = False
        self._warm: Optional[asyncio.Task] = None

    # ---- in: chat, operators, the streamer's voice ------------------------------------------------------------------

    def ingest(self, event: ChatEvent) -> str:
        """Offer one chat event; returns what became of it ("queued", "collapsed" or why it was dropped)."""
        outcome = self.queue.push(event)
        metrics.STREAM_CHAT.labels(outcome).inc()
        metrics.STREAM_QUEUE_DEPTH.set(len(self.queue))
        self._last_activity = time.monotonic()
        self._wake.set()
        if outcome == "queued":
            self._give_way()
        return outcome

    def _give_way(self) -> None:
        """Idle talk gives way to chat (not to joins or follows), and an answer to a paid message
        (stream.paid_interrupts): the host ends the sentence it is saying, then turns to the queue."""
        turn, reply, item = self.turn, self.reply, self.queue.peek()
        if turn is None or reply is None or item is None or reply.status != "in_progress":
            return
        paid_waits = self.settings.stream.paid_interrupts and item.priority == PAID and \
            turn.kind == "chat" and turn.item.priority != PAID
        if (turn.kind == "idle" and item.priority < LOW) or paid_waits:
            log.info("wrapping up the current %s for %s's %s", turn.kind, item.event.user_name, item.event.kind)
            reply.wrap_up()

    async def pump(self, source: Any) -> None:
        """Feed a platform adapter's events (TwitchChat, BilibiliChat: anything with `events()`) into the queue."""
        async for event in source.events():
            self.ingest(event)

    def pause(self, now: bool = False) -> None:
        """Stop taking chat; `now` also cuts the current answer."""
        self.paused = True
        if now:
            self._cancel("paused")
        self._publish({"type": "livehost.stream.state", **self.state()})

    def resume(self) -> None:
        self.paused = False
        self._last_activity = time.monotonic()
        self._wake.set()
        self._publish({"type": "livehost.stream.state", **self.state()})

    def skip(self) -> bool:
        """Cut the current answer; the host moves on to the next event. False when nothing was being said."""
        return self._cancel("skipped")

    def say(self, text: str) -> int:
        """An operator's line, spoken as written before any more chat. Returns its place in line (1 = next)."""
        self._lines.append(" ".join(text.split()))
        self._wake.set()
        return len(self._lines)

    def streamer_voice(self, speaking: bool) -> None:
        """The streamer's microphone heard speech start or stop: the host never talks over them."""
        self.streamer_speaking = speaking
        if speaking:
            self._cancel("streamer_speaking")
            if self.program.stage:
                self.program.stage.mode("listening")
        else:
            self._quiet_until = time.monotonic() + self.settings.stream.mic_hold_s
            self._last_activity = time.monotonic()
            self._wake.set()

    def streamer_said(self, text: str) -> None:
        """What the streamer said goes into the context, so the host's next words can follow on from it."""
        if text:
            self._add_turn([{"role": "user", "content": f"(The streamer said: «{text}»)"}])

    def _cancel(self, reason: str) -> bool:
        if self.reply is None or self.reply.status != "in_progress":
            return False
        self.reply.cancel(reason)  # stops planning, the LLM, TTS, the voice not yet played and the mouth at once
        return True

    # ---- the host's loop ---------------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Answer, talk, wait: forever, until cancelled."""
        log.info("%s is hosting (idle talk after %.0f s of quiet chat)", self.character.name, self.idle_after_s)
        try:
            while True:
                turn = self._next_turn()
                if turn is None:
                    self._wake.clear()
                    try:
                        await asyncio.wait_for(self._wake.wait(), self._seconds_to_wait())
                    except asyncio.TimeoutError:
                        pass
                    continue
                await self._speak(turn)
        finally:
            self._cancel("stream_ended")
            if self._warm:
                self._warm.cancel()
            await asyncio.gather(*self._writes, return_exceptions=True)

    def _next_turn(self) -> Optional[Turn]:
        now = time.monotonic()
        if self.paused or self.streamer_speaking or now < self._quiet_until:
            return None
        if self._lines:
            return Turn("line", text=self._lines.popleft())
        stale = self.queue.dropped.get("stale", 0)
        item = self.queue.next()
        metrics.STREAM_QUEUE_DEPTH.set(len(self.queue))
        if self.queue.dropped.get("stale", 0) > stale:  # too old to answer: dropped on the way out
            metrics.STREAM_CHAT.labels("stale").inc(self.queue.dropped["stale"] - stale)
        if item is not None:
            return Turn("chat", item=item)
        if self._topics and now - self._last_activity >= self.idle_after_s:
            return Turn("idle", text=next(self._topics))
        return None

    def _seconds_to_wait(self) -> Optional[float]:
        """Until the next moment the host may speak on its own; None: only a wake-up (chat, resume) can change it."""
        if self.paused or self.streamer_speaking:
            return None
        now = time.monotonic()
        deadlines = [self._quiet_until] + ([self._last_activity + self.idle_after_s] if self._topics else [])
        ahead = [d - now for d in deadlines if d > now]
        return max(0.05, min(ahead)) if ahead else None

    async def _speak(self, turn: Turn) -> None:
        self.turn = turn
        s, asked = self.settings, []
        plan = ReplyPlan(messages=[], output_format=AudioFormat("audio/pcm", self.program.rate),
                         max_tokens=s.llm.max_tokens, temperature=s.llm.temperature, lead_ms=s.server.output_lead_ms,
                         audio_out=self._voice, dialogue=self.dialogue, avatar=self.program.stage,
                         audio=self.tts is not None)

        async def prepare(plan: ReplyPlan) -> None:
            asked.extend(await self._plan(turn, plan))
        reply = self.reply = Reply(plan, self.engines.llm, self.tts, self._on_reply, prepare)
        self._voice.response_id = reply.id
        self._first_audio_pending = turn.item is not None  # for the chat-to-speech latency
        reply.start()
        self._warm = asyncio.get_running_loop().create_task(self._warm_next(reply, asked))  # runs on past done
        await reply.done.wait()  # played to the end, or cut
        self.program.set_caption(None)
        result = reply.result
        metrics.STREAM_SPOKEN.labels(turn.kind, result.status).inc()
        self.spoken[turn.kind] += 1
        if result.heard:  # what the LLM wrote when all of it was said (the cache holds it), else what was heard
            said = result.generated if result.status == "completed" and result.generated and not result.wrapped \
                else result.heard
            self._add_turn(asked + [{"role": "assistant", "content": said}])
        if turn.item is not None:
            self._remember(turn.item.event)
        self._publish({"type": "livehost.stream.said", "kind": turn.kind, "status": result.status,
                       "text": result.heard, **self._about(turn)})
        self.reply, self.turn = None, None
        self._last_activity = time.monotonic()
        await asyncio.sleep(self.settings.stream.gap_s)

    async def _plan(self, turn: Turn, plan: ReplyPlan) -> list[dict]:
        """Planning, inside the reply: what it says (the plan's messages or line, and its LLM); returns the
        messages this turn adds to the history."""
        history = self.history
        if turn.kind == "line":
            plan.script = turn.text
            return [{"role": "user", "content": "(Make an announcement.)"}]
        if turn.kind == "idle":
            plan.messages = idle_messages(self.character, history, turn.text)
            return plan.messages[1 + len(history):]
        event = turn.item.event
        memories, regular = await asyncio.to_thread(self._viewer, event)
        plan.messages = chat_messages(self.character, history, event, memories, regular)
        plan.llm = Addressed(self.engines.llm, *lead_for(event))
        return plan.messages[1 + len(history):]

    async def _warm_next(self, reply: Reply, asked: list[dict]) -> None:
        """While this answer is still being spoken, have the LLM read the prompt of the next chat answer (one token),
        so its prompt cache holds it when that turn comes: the next answer then starts after a short read."""
        written = asyncio.ensure_future(reply.written.wait())
        ended = asyncio.ensure_future(reply.done.wait())
        await asyncio.wait({written, ended}, return_when=asyncio.FIRST_COMPLETED)
        written.cancel(), ended.cancel()
        item = self.queue.peek()
        if not reply.written.is_set():  # cut before the LLM was done: nothing to build on
            return
        if item is None or not reply.generated or self.engines.llm is None:
            return
        event = item.event
        memories, regular = await asyncio.to_thread(self._viewer, event)
        turns = self._with_turn(asked + [{"role": "assistant", "content": reply.generated}])
        history = [m for turn in turns for m in turn]
        stream = self.engines.llm.stream(chat_messages(self.character, history, event, memories, regular),
                                         max_tokens=1, temperature=0.0)
        try:
            async for _ in stream:
                pass
        finally:
            await stream.aclose()

    @property
    def history(self) -> list[dict]:
        return [m for turn in self._turns for m in turn]

    def _with_turn(self, messages: list[dict]) -> list[list[dict]]:
        turns = self._turns + [messages]
        return turns[MAX_TURNS // 2:] if len(turns) > MAX_TURNS else turns

    def _add_turn(self, messages: list[dict]) -> None:
        self._turns = self._with_turn(messages)

    def _on_reply(self, event: ReplyEvent) -> None:
        """The reply's events, as a session gets them: captions and the latency metric here, and the Realtime form
        for overlays, so the overlay page plays the host like a session's reply."""
        if isinstance(event, Started) and self.turn:  # planned: who is being answered, as it starts
            self._publish({"type": "livehost.stream.turn", "kind": self.turn.kind, **self._about(self.turn)})
        if isinstance(event, Chunk):
            if self._first_audio_pending and self.turn and self.turn.item:
                self._first_audio_pending = False
                metrics.STREAM_CHAT_TO_SPEECH.observe(self.queue.clock() - self.turn.item.enqueued_at)
            self.program.set_caption(event.text.strip())
        if isinstance(event, (Created, Chunk, Done)):  # what an overlay needs: words, mouth, feeling, start and end
            self._publish_all([w for w in with_ids(to_realtime(event)) if w["type"] != "error"])

    # ---- viewers' memory ---------------------------------------------------------------------------------------------

    def _key(self, event: ChatEvent) -> str:
        return f"{event.platform}:{event.user_id}"

    def _viewer(self, event: ChatEvent) -> tuple[list[str], bool]:
        """What is known about this viewer, and whether they are a regular from earlier streams (not yet greeted)."""
        memory = self.engines.memory
        if memory is None or not self.character.memory.enabled:
            return [], False
        key, text = self._key(event), getattr(event, "text", "")
        found = [m.text for m in memory.core(key, n=2)]
        if text:
            found += [m.text for m in memory.search(key, text, k=3) if m.text not in found]
        regular = key not in self._greeted and memory.count(key) > 0
        return found[: self.character.memory.max_memories_in_prompt], regular

    def _remember(self, event: ChatEvent) -> None:
        """After answering: this viewer has now been here (a regular next time), plus facts they stated."""
        memory, key = self.engines.memory, self._key(event)
        if memory is None or not self.character.memory.enabled or key in self._greeted:
            self._greeted.add(key)
            return
        self._greeted.add(key)
        from livehost.persona.memory import extract_facts
        facts = extract_facts(event.text) if isinstance(event, Message) and self.character.memory.remember_facts \
            else []
        name = viewer_name(event)

        def write() -> None:
            memory.add(key, f"{name} has watched {self.character.name}'s streams before", kind="visit",
                       importance=0.3)
            for fact, importance in facts:
                memory.add(key, fact.replace("The user", name), kind="fact", importance=importance)
        task = asyncio.get_running_loop().create_task(asyncio.to_thread(write))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    # ---- out: state and events for overlays and operators ----------------------------------------------------------

    def _about(self, turn: Turn) -> dict:
        if turn.item is None:
            return {"text_in": turn.text}
        e = turn.item.event
        return {"viewer": e.user_name, "platform": e.platform, "event": e.kind,
                "priority": PRIORITY_NAMES[turn.item.priority], "text_in": getattr(e, "text", "")}

    def state(self) -> dict:
        now = None if self.turn is None else {"kind": self.turn.kind, **self._about(self.turn),
                                              "phase": self.reply.phase if self.reply else None,
                                              "all_sent": bool(self.reply and self.reply.sent_all)}
        return {"character": self.character.id, "paused": self.paused, "streamer_speaking": self.streamer_speaking,
                "speaking": bool(self.program.speaking), "now": now, "lines_waiting": len(self._lines),
                "spoken": dict(self.spoken), "queue": self.queue.stats()}

    def subscribe(self, size: int = 500) -> asyncio.Queue:
        q: asyncio.Queue = asyncio.Queue(maxsize=size)
        self.subscribers.add(q)
        return q

    def _publish_all(self, events: list[dict]) -> None:
        for event in events:
            self._publish(event)

    def _publish(self, event: dict) -> None:
        for q in list(self.subscribers):
            if q.full():  # a slow overlay loses old events, never stalls the host
                q.get_nowait()
            q.put_nowait(event)
