"""Twitch chat over IRC (plain IRC servers work too): connect, log in, join, and yield typed chat events.

Twitch's chat is IRC with IRCv3 message tags (`@display-name=Ann;user-id=1;bits=100 :ann!ann@... PRIVMSG #ch :hi`).
A server without tags (any standard IRCd) gives plain PRIVMSGs, which become Messages named after the nick.
"""
from __future__ import annotations

import asyncio
import logging
import random
import re
import ssl as _ssl
from dataclasses import dataclass, field
from typing import AsyncIterator

from .events import ChatEvent, Gift, Join, Message

log = logging.getLogger(__name__)

_TAG_UNESCAPE = {":": ";", "s": " ", "\\": "\\", "r": "\r", "n": "\n"}
_TAG_ESC_RE = re.compile(r"\\(.?)")


@dataclass(slots=True)
class IrcLine:
    command: str
    params: list[str] = field(default_factory=list)
    prefix: str = ""
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def nick(self) -> str:
        return self.prefix.split("!", 1)[0]


def _unescape(value: str) -> str:
    return _TAG_ESC_RE.sub(lambda m: _TAG_UNESCAPE.get(m.group(1), m.group(1)), value)


def parse_line(line: str) -> IrcLine:
    """Parse one IRC line (RFC 1459 + IRCv3 tags). Raises ValueError on a line with no command."""
    line = line.rstrip("\r\n")
    tags: dict[str, str] = {}
    if line.startswith("@"):
        raw, _, line = line[1:].partition(" ")
        for item in raw.split(";"):
            key, _, value = item.partition("=")
            if key:
                tags[key] = _unescape(value)
    line = line.lstrip(" ")
    prefix = ""
    if line.startswith(":"):
        prefix, _, line = line[1:].partition(" ")
    trailing = None
    if " :" in line:
        line, _, trailing = line.partition(" :")
    elif line.startswith(":"):
        line, trailing = "", line[1:]
    parts = line.split()
    if not parts:
        raise ValueError(f"IRC line has no command: {line!r}")
    params = parts[1:] + ([trailing] if trailing is not None else [])
    return IrcLine(parts[0].upper(), params, prefix, tags)


class TwitchChat:
    """One channel's chat. `async for event in chat.events()` runs until `close()`, reconnecting with backoff.

    `mention_names`: names that count as addressing the host ("@name" anywhere, or "name," / "name:" first).
    Anonymous read-only login (`justinfan…`) is used unless `nick` and `token` ("oauth:…") are given.
    """

    def __init__(self, channel: str, *, host: str = "irc.chat.twitch.tv", port: int | None = None,
                 tls: bool = False, nick: str | None = None, token: str | None = None,
                 mention_names: list[str] | tuple[str, ...] = (), platform: str = "twitch",
                 backoff_initial_s: float = 0.5, backoff_max_s: float = 30.0, idle_timeout_s: float = 360.0):
        self.channel = "#" + channel.lstrip("#").lower()
        self.host, self.tls = host, tls
        self.port = port if port is not None else (6697 if tls else 6667)
        self.nick = (nick or "justinfan12345").lower()
        self.token = token
        self.platform = platform
        self.backoff_initial_s, self.backoff_max_s = backoff_initial_s, backoff_max_s
        self.idle_timeout_s = idle_timeout_s
        names = [re.escape(n.lstrip("@").lower()) for n in mention_names if n.strip("@ ")]
        self._mention_re = re.compile(
            rf"(?:@(?:{'|'.join(names)})\b|^(?:{'|'.join(names)})\s*[,:])", re.IGNORECASE) if names else None
        self.joined = asyncio.Event()     # set while joined to the channel; tests and health checks wait on it
        self.connects = 0                 # successful connections, for metrics and tests
        self._closed = False
        self._welcomed = False
        self._writer: asyncio.StreamWriter | None = None

    async def close(self) -> None:
        self._closed = True
        if self._writer is not None:
            self._writer.close()

    async def send(self, line: str) -> None:
        if self._writer is None:
            raise ConnectionError("not connected")
        self._writer.write((line.replace("\r", " ").replace("\n", " ") + "\r\n").encode())
        await self._writer.drain()

    async def events(self) -> AsyncIterator[ChatEvent]:
        delay = self.backoff_initial_s
        while not self._closed:
            try:
                async for event in self._session():
                    yield event
            except (OSError, asyncio.IncompleteReadError, ConnectionError, ValueError) as e:
                log.warning("twitch chat %s: connection lost (%s)", self.channel, e)
            finally:
                self.joined.clear()
                if self._writer is not None:
                    self._writer.close()
                    self._writer = None
            if self._closed:
                break
            if self._welcomed:  # logged in before dropping: the backoff starts afresh
                delay = self.backoff_initial_s
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))  # jitter: many bots must not reconnect in step
            delay = min(delay * 2, self.backoff_max_s)

    async def _session(self) -> AsyncIterator[ChatEvent]:
        ctx = _ssl.create_default_context() if self.tls else None
        reader, self._writer = await asyncio.open_connection(self.host, self.port, ssl=ctx,
                                                             limit=64 * 1024)
        self.connects += 1
        self._welcomed = False
        nick = self.nick
        # CAP REQ before NICK suspends registration until CAP END on IRCv3 servers; others answer 421 and go on.
        await self.send("CAP REQ :twitch.tv/tags twitch.tv/commands twitch.tv/membership")
        if self.token:
            await self.send(f"PASS {self.token if self.token.startswith('oauth:') else 'oauth:' + self.token}")
        await self.send(f"NICK {nick}")
        await self.send(f"USER {nick} 0 * :{nick}")  # required by standard IRCds, ignored by Twitch
        await self.send("CAP END")
        pinged = False
        while not self._closed:
            try:
                raw = await asyncio.wait_for(reader.readline(), self.idle_timeout_s)
            except asyncio.TimeoutError:
                if pinged:
                    raise ConnectionError("server silent after PING")
                pinged = True
                await self.send("PING :livehost")
                continue
            if not raw:
                raise ConnectionError("server closed the connection")
            pinged = False
            try:
                msg = parse_line(raw.decode("utf-8", "replace"))
            except ValueError:
                continue
            cmd = msg.command
            if cmd == "PING":
                await self.send("PONG :" + (msg.params[-1] if msg.params else ""))
            elif cmd == "001":
                nick = msg.params[0] if msg.params else nick
                self._welcomed = True
                await self.send(f"JOIN {self.channel}")
            elif cmd == "433":  # nickname in use (only on plain IRCds): anonymous nicks just pick another
                nick = f"justinfan{random.randint(10000, 99999)}"
                await self.send(f"NICK {nick}")
            elif cmd in ("464", "465") or (cmd == "NOTICE" and "authentication failed" in " ".join(msg.params).lower()):
                raise ConnectionError("login failed: " + " ".join(msg.params))
            elif cmd == "RECONNECT":
                raise ConnectionError("server asked to reconnect")
            elif cmd == "JOIN" and msg.nick.lower() == nick.lower():
                self.joined.set()
            else:
                event = self.to_event(msg, own_nick=nick)
                if event is not None:
                    yield event

    def to_event(self, msg: IrcLine, own_nick: str = "") -> ChatEvent | None:
        """Map one parsed line to an event, or None for lines that are not chat."""
        if msg.command == "PRIVMSG" and len(msg.params) >= 2:
            text = msg.params[-1]
            if text.startswith("\x01ACTION ") and text.endswith("\x01"):  # /me
                text = text[8:-1]
            elif text.startswith("\x01"):
                return None  # other CTCP (VERSION, ...) is not chat
            t = msg.tags
            name = t.get("display-name") or msg.nick
            uid = t.get("user-id") or msg.nick.lower()
            ts = int(t["tmi-sent-ts"]) / 1000 if t.get("tmi-sent-ts", "").isdigit() else None
            extra = {"ts": ts} if ts is not None else {}
            channel = msg.params[0].lstrip("#")
            bits = t.get("bits", "")
            if bits.isdigit() and int(bits) > 0:
                return Gift(self.platform, channel, uid, name, amount=float(bits), currency="bits", text=text,
                            gift_name="bits", count=int(bits), **extra)
            badges = tuple(b for b in t.get("badges", "").split(",") if b)
            mention = bool(self._mention_re and self._mention_re.search(text))
            return Message(self.platform, channel, uid, name, text=text, is_mention=mention, badges=badges, **extra)
        if msg.command == "JOIN" and msg.params and msg.nick.lower() != own_nick.lower():
            return Join(self.platform, msg.params[0].lstrip("#"), msg.nick.lower(), msg.nick)
        return None
