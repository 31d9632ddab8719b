"""How much one client may take: sessions, replies, events and text. The server keeps serving the others.

ServerLimits is the app's: open sessions (server.max_sessions, WebSocket and WebRTC together), replies in progress
across all sessions (server.max_replies: more get `server_busy` at once instead of a long wait for the one LLM),
and new sessions per client address per minute. SessionGuard is one session's: its identity (what its credential
allows, see auth.py), its event and response.create rates, and the size of its conversation.
"""
from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import replace
from typing import Any, Optional

from livehost.server import metrics
from livehost.server.auth import Identity
from livehost.server.protocol import ProtocolError, SessionConfig


class RateLimit:
    """At most `count` events per `per_s` seconds per key (a token bucket); remembers a bounded number of keys."""

    def __init__(self, count: int, per_s: float, max_keys: int = 10_000):
        self.count, self.per_s, self.max_keys = count, per_s, max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)

    def _refill(self, key: str, now: Optional[float]) -> tuple[float, float]:
        now = time.monotonic() if now is None else now
        tokens, at = self._buckets.pop(key, (float(self.count), now))
        while len(self._buckets) >= self.max_keys:
            self._buckets.popitem(last=False)
        return min(float(self.count), tokens + (now - at) * self.count / self.per_s), now

    def allow(self, key: str = "", now: Optional[float] = None) -> bool:
        tokens, now = self._refill(key, now)
        allowed = tokens >= 1
        self._buckets[key] = (tokens - 1 if allowed else tokens, now)
        return allowed

    def delay(self, key: str = "", now: Optional[float] = None) -> float:
        """Take one now and say how long to wait before acting on it (0: at once): a flood is slowed, not lost."""
        tokens, now = self._refill(key, now)
        self._buckets[key] = (tokens - 1, now)
        return max(0.0, 1 - tokens) * self.per_s / self.count


class Refused(Exception):
    """A session could not open: `code` (session_limit_reached, rate_limit_exceeded) and the reason."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message

    def event(self) -> dict:
        return ProtocolError(self.message, code=self.code).event()


class ServerLimits:
    def __init__(self, server_settings: Any):
        self.s = server_settings
        self.guards: set[SessionGuard] = set()
        self.opens = RateLimit(server_settings.sessions_per_minute, 60.0)
        self.mints = RateLimit(server_settings.sessions_per_minute, 60.0)
        metrics.REPLIES_ACTIVE.set_function(self.active_replies)

    def open(self, identity: Identity, client: str = "") -> "SessionGuard":
        """A slot for a new session, taken at once (no await between the check and the taking: no race)."""
        if len(self.guards) >= self.s.max_sessions:
            metrics.SESSIONS_REFUSED.labels("session_limit_reached").inc()
            raise Refused("session_limit_reached", f"the server has its maximum of {self.s.max_sessions} sessions "
                                                   f"(server.max_sessions); try again later")
        if not self.opens.allow(client):
            metrics.SESSIONS_REFUSED.labels("rate_limit_exceeded").inc()
            raise Refused("rate_limit_exceeded", f"more than {self.s.sessions_per_minute} new sessions a minute "
                                                 f"from this address (server.sessions_per_minute)")
        guard = SessionGuard(identity, self.s, self)
        self.guards.add(guard)
        return guard

    def active_replies(self) -> int:
        return sum(1 for g in self.guards if g.replying())


class SessionGuard:
    def __init__(self, identity: Optional[Identity] = None, server_settings: Any = None,
                 limits: Optional[ServerLimits] = None):
        self.identity = identity or Identity("local")
        self.s, self.limits = server_settings, limits
        self.session: Any = None  # set by the session
        self._events = RateLimit(server_settings.events_per_second, 1.0) if server_settings else None
        self._responses = RateLimit(server_settings.responses_per_minute, 60.0) if server_settings else None
        self._told = False

    def close(self) -> None:
        if self.limits:
            self.limits.guards.discard(self)

    def replying(self) -> bool:
        reply = getattr(self.session, "reply", None)
        return reply is not None and getattr(reply, "status", None) == "in_progress"

    # ---- identity ----------------------------------------------------------------------------------------------

    def initial(self, config: SessionConfig) -> SessionConfig:
        """The session's first config: the user and character its credential binds."""
        return replace(config, user_id=self.identity.user_id, character=self.identity.character or config.character)

    def check_update(self, old: SessionConfig, new: SessionConfig, characters: Any = None,
                     turn_model: Any = None) -> None:
        """A session.update may narrow nothing and widen nothing that the credential fixes, and asks only for what
        this server has: a character it knows, semantic_vad with its end-of-turn model loaded."""
        who = self.identity
        if new.user_id != old.user_id and not who.chooses_user:
            raise ProtocolError("session.livehost.user_id is fixed by this session's credential (" +
                                ("the client token's user" if who.kind == "token" else "an anonymous visitor") +
                                "); mint a client token for the user with an API key", code="user_id_not_allowed",
                                param="session.livehost.user_id")
        if who.character and new.character != who.character:
            raise ProtocolError(f"this session's client token is for the character {who.character!r}",
                                code="character_not_allowed", param="session.livehost.character")
        td = new.turn_detection
        if td and td.type == "semantic_vad" and turn_model is None:
            raise ProtocolError("semantic_vad is not available here: the end-of-turn model could not be loaded "
                                "(see the server log)", code="invalid_value",
                                param="session.audio.input.turn_detection.type")
        if new.character != old.character and characters is not None:
            try:
                characters.get(new.character)
            except KeyError as exc:
                raise ProtocolError(str(exc).strip("'\""), code="invalid_value",
                                    param="session.livehost.character") from None

    # ---- rates -------------------------------------------------------------------------------------------------

    @staticmethod
    def response_tokens(options: dict) -> Optional[int]:
        """response.create's max_output_tokens: 1..4096, or "inf"/absent (None: the session's own limit)."""
        limit = options.get("max_output_tokens")
        if limit is not None and limit != "inf" and not (isinstance(limit, int) and 1 <= limit <= 4096):
            raise ProtocolError("response.max_output_tokens must be 1..4096 or 'inf'", code="invalid_value",
                                param="response.max_output_tokens")
        return limit if isinstance(limit, int) else None

    async def pace(self) -> None:
        """Before the transport reads the next client event: over server.events_per_second, reading slows down
        (nothing is dropped; the client's own sending backs up) and the client is told once."""
        wait = self._events.delay() if self._events else 0.0
        if wait <= 0:
            return
        metrics.RATE_LIMITED.labels("events").inc()
        if not self._told and self.session is not None:
            self._told = True
            self.session.send(ProtocolError(
                f"more than {self.s.events_per_second} events a second (server.events_per_second); reading is "
                f"slowed to that rate", code="rate_limit_exceeded").event())
        await asyncio.sleep(wait)

    def admit_response(self) -> None:
        """Before a reply starts: per-session rate, then room on the shared LLM. Raises ProtocolError."""
        if self._responses is not None and not self._responses.allow():
            metrics.REPLIES_REFUSED.labels("rate_limit_exceeded").inc()
            raise ProtocolError(f"more than {self.s.responses_per_minute} responses a minute "
                                f"(server.responses_per_minute)", code="rate_limit_exceeded")
        if self.limits and self.limits.active_replies() >= self.s.max_replies:
            metrics.REPLIES_REFUSED.labels("server_busy").inc()
            raise ProtocolError(f"the server is busy: {self.s.max_replies} replies are in progress "
                                f"(server.max_replies); try again in a moment", code="server_busy")

    def has_room(self) -> bool:
        """Room on the shared LLM for one more reply (a speculative one is not started without it)."""
        return not self.limits or self.limits.active_replies() < self.s.max_replies

    def admit_turn(self) -> bool:
        """A voice turn's reply: admitted, or the client gets the same error a response.create would."""
        try:
            self.admit_response()
            return True
        except ProtocolError as exc:
            if self.session is not None:
                self.session.send(exc.event())
            return False

    # ---- size --------------------------------------------------------------------------------------------------

    def fit_item(self, text: str, conversation: Any) -> None:
        """An item's text must fit server.max_item_chars; the oldest items leave so that the whole conversation
        stays within server.max_conversation_chars."""
        if self.s is None:
            return
        if len(text) > self.s.max_item_chars:
            raise ProtocolError(f"conversation.item.create: the item's text is {len(text)} characters, over the "
                                f"limit of {self.s.max_item_chars} (server.max_item_chars)", code="item_too_large",
                                param="item.content")
        from livehost.server.conversation import item_text
        sizes = [(item_id, len(item_text(item))) for item_id, item in conversation.items.items()]
        total = sum(n for _, n in sizes) + len(text)
        for item_id, n in sizes:
            if total <= self.s.max_conversation_chars:
                break
            conversation.delete(item_id)
            total -= n


class RealTimePacer:
    """Input audio far ahead of the wall clock is read at real time (nothing dropped); the client is told once."""

    def __init__(self, max_ahead_s: float, send: Any):
        self.max_ahead_s, self._send = max_ahead_s, send
        self._clock: Optional[float] = None  # wall time at which input audio started
        self._in_s = 0.0
        self._warned = False

    async def pace(self, seconds: float) -> None:
        now = time.perf_counter()
        # a pause earns at most 10 s of credit: a backlog after a stall is read at once, a flood is still slowed
        self._clock = max(self._clock or now, now - self._in_s - 10.0)
        self._in_s += seconds
        ahead = self._in_s - (now - self._clock) - self.max_ahead_s
        if ahead > 0:
            if not self._warned:
                self._warned = True
                self._send(ProtocolError(f"input audio arrives faster than real time (more than "
                                         f"{self.max_ahead_s:g} s ahead); reading is slowed to real time",
                                         code="input_audio_too_fast").event())
            await asyncio.sleep(ahead)
