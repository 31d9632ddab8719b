"""Twitch/IRC chat adapter against a real IRC server (Debian's ngircd) with scripted viewers, and against a scripted
Twitch-style server for what plain IRCds lack (IRCv3 tags, bits, PING, RECONNECT-style drops)."""
from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import time

import pytest

from livehost.server.livestream.events import Gift, Join, Message
from livehost.server.livestream.queue import PAID, ChatQueue
from livehost.server.livestream.twitch import TwitchChat, parse_line
from conftest import _free_port

NGIRCD = shutil.which("ngircd") or next((p for p in ("/usr/sbin/ngircd",) if shutil.os.path.exists(p)), None)



@pytest.fixture(scope="module")
def ircd(tmp_path_factory):
    if NGIRCD is None:
        pytest.fail("ngircd is not installed (apt-get install -y ngircd)")
    port = _free_port()
    conf = tmp_path_factory.mktemp("ngircd") / "ngircd.conf"
    conf.write_text(f"""[Global]
Name = irc.test.local
Info = livehost test server
AdminInfo1 = test
AdminInfo2 = test
AdminEMail = test@example.invalid
Listen = 127.0.0.1
Ports = {port}
MotdPhrase = test
[Limits]
MaxConnectionsIP = 0
MaxJoins = 0
MaxNickLength = 30
[Options]
PAM = no
DNS = no
Ident = no
""")
    proc = subprocess.Popen([NGIRCD, "-n", "-f", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail("ngircd did not start: " + proc.stdout.read().decode(errors="replace")[-2000:])
            time.sleep(0.05)
    yield port
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()


class Viewer:
    """A raw asyncio IRC client: register, join, send lines."""

    def __init__(self, nick: str):
        self.nick = nick

    async def connect(self, port: int, channel: str) -> "Viewer":
        self.r, self.w = await asyncio.open_connection("127.0.0.1", port)
        self.w.write(f"NICK {self.nick}\r\nUSER {self.nick} 0 * :{self.nick}\r\nJOIN {channel}\r\n".encode())
        while True:  # 366 = end of NAMES: we are in the channel
            line = await asyncio.wait_for(self.r.readline(), 10)
            if line.startswith(b"PING"):
                self.w.write(line.replace(b"PING", b"PONG", 1))
            if b" 366 " in line:
                return self

    async def say(self, channel: str, *texts: str) -> None:
        for t in texts:
            self.w.write(f"PRIVMSG {channel} :{t}\r\n".encode())
        await self.w.drain()

    def close(self):
        self.w.close()


async def _collect(chat: TwitchChat, n: int, timeout: float = 15.0, into: list | None = None) -> list:
    out = [] if into is None else into
    it = chat.events().__aiter__()

    async def run():
        while len(out) < n:
            out.append(await it.__anext__())
    try:
        await asyncio.wait_for(run(), timeout)
    finally:
        await it.aclose()
    return out


def test_parse_line_tags_and_escapes():
    m = parse_line("@badges=moderator/1,subscriber/12;bits=100;display-name=Ann\\sB;user-id=42;emotes= "
                   ":ann!ann@ann.tmi.twitch.tv PRIVMSG #chan :cheer100 great stream: really\r\n")
    assert m.command == "PRIVMSG" and m.params == ["#chan", "cheer100 great stream: really"]
    assert m.tags == {"badges": "moderator/1,subscriber/12", "bits": "100", "display-name": "Ann B",
                      "user-id": "42", "emotes": ""}
    assert m.nick == "ann"
    assert parse_line("PING :tmi.twitch.tv").params == ["tmi.twitch.tv"]
    assert parse_line(":srv 001 me :Welcome").params == ["me", "Welcome"]
    with pytest.raises(ValueError):
        parse_line("@a=b ")


async def test_plain_irc_viewers_become_messages(ircd):
    chat = TwitchChat("#Stream", host="127.0.0.1", port=ircd, mention_names=["HostBot"], platform="irc")
    got: list = []
    done = asyncio.Event()

    async def pump():
        async for ev in chat.events():
            got.append(ev)
            if sum(isinstance(e, Message) for e in got) == 4:
                done.set()
    task = asyncio.create_task(pump())
    await asyncio.wait_for(chat.joined.wait(), 10)
    ann, bob = await asyncio.gather(Viewer("ann").connect(ircd, "#stream"), Viewer("bob").connect(ircd, "#stream"))
    await ann.say("#stream", "hello everyone", "@hostbot what game is this?")
    await bob.say("#stream", "\x01ACTION waves\x01", "\x01VERSION\x01", "hostbot: hi!")
    await asyncio.wait_for(done.wait(), 10)
    msgs = [e for e in got if isinstance(e, Message)]
    assert {j.user_name for j in got if isinstance(j, Join)} == {"ann", "bob"}
    assert {(m.user_name, m.text, m.is_mention) for m in msgs} == {
        ("ann", "hello everyone", False), ("ann", "@hostbot what game is this?", True),
        ("bob", "waves", False),          # /me action, CTCP framing stripped; CTCP VERSION is not chat
        ("bob", "hostbot: hi!", True)}
    assert all(m.platform == "irc" and m.channel == "stream" and m.user_id == m.user_name for m in msgs)
    ann.close(), bob.close()
    await chat.close()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _twitch_like_server(script):
    """A scripted Twitch-style server: each connection runs the next coroutine in `script`."""
    conns = iter(script)

    async def handle(r, w):
        try:
            await next(conns)(r, w)
        finally:
            w.close()
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def _login(r, w) -> list[str]:
    """Read the client's login until JOIN, answering 001 after NICK as Twitch does."""
    lines = []
    while True:
        line = (await asyncio.wait_for(r.readline(), 5)).decode().strip()
        lines.append(line)
        if line.startswith("NICK "):
            w.write(f":tmi.twitch.tv 001 {line[5:]} :Welcome, GLHF!\r\n".encode())
        if line.startswith("JOIN "):
            nick = next(x[5:] for x in lines if x.startswith("NICK "))
            w.write(f":{nick}!{nick}@{nick}.tmi.twitch.tv JOIN {line[5:]}\r\n".encode())
            return lines


async def test_twitch_tags_bits_ping_and_reconnect():
    seen: dict = {}

    async def first(r, w):
        seen["login"] = await _login(r, w)
        w.write(b"PING :tmi.twitch.tv\r\n")
        seen["pong"] = (await asyncio.wait_for(r.readline(), 5)).decode().strip()
        w.write(b"@badges=subscriber/6;display-name=Ann;user-id=1001;tmi-sent-ts=1700000000000 "
                b":ann!ann@ann.tmi.twitch.tv PRIVMSG #chan :hi @LiveHost\r\n"
                b"@bits=250;display-name=Big\\sSpender;user-id=7 :big!big@big.tmi.twitch.tv PRIVMSG #chan "
                b":Cheer250 keep going\r\n")
        await w.drain()
        await asyncio.sleep(0.1)  # then drop the connection: the adapter must reconnect

    async def second(r, w):
        await _login(r, w)
        w.write(b"@display-name=Cy;user-id=3 :cy!cy@cy.tmi.twitch.tv PRIVMSG #chan :back again\r\n")
        await w.drain()
        await r.read()  # until the client hangs up

    server, port = await _twitch_like_server([first, second])
    chat = TwitchChat("chan", host="127.0.0.1", port=port, mention_names=["livehost"], backoff_initial_s=0.05)
    got = await _collect(chat, 3, timeout=10)
    server.close()
    assert seen["login"][0] == "CAP REQ :twitch.tv/tags twitch.tv/commands twitch.tv/membership"
    assert "NICK justinfan12345" in seen["login"] and "JOIN #chan" in seen["login"]
    assert not any(x.startswith("PASS") for x in seen["login"])  # anonymous: no token sent
    assert seen["pong"] == "PONG :tmi.twitch.tv"
    ann, big, cy = got
    assert isinstance(ann, Message) and ann.user_name == "Ann" and ann.user_id == "1001" and ann.is_mention
    assert ann.badges == ("subscriber/6",) and ann.ts == 1700000000.0
    assert isinstance(big, Gift) and big.amount == 250 and big.currency == "bits" and big.user_name == "Big Spender"
    assert big.text == "Cheer250 keep going"
    assert isinstance(cy, Message) and cy.text == "back again"
    assert chat.connects == 2


async def test_burst_of_200_then_paid_message_is_next(ircd):
    """40 scripted viewers flood a real IRC channel with 200 lines (some repeated); a bits cheer arrives last on
    the Twitch connection; the host's queue must offer the cheer first and have dropped the repeats."""
    queue = ChatQueue(rate_limit=10, max_size=1000)
    irc = TwitchChat("#burst", host="127.0.0.1", port=ircd, platform="irc")
    received = 0
    done = asyncio.Event()

    async def pump(chat):
        nonlocal received
        async for ev in chat.events():
            queue.push(ev)
            if isinstance(ev, Message):
                received += 1
                if received == 200:
                    done.set()
    pumps = [asyncio.create_task(pump(irc))]
    await asyncio.wait_for(irc.joined.wait(), 10)
    viewers = await asyncio.gather(*(Viewer(f"viewer{i}").connect(ircd, "#burst") for i in range(40)))
    # each viewer: 3 distinct lines + the same line twice (a duplicate) = 5 lines, 200 in all
    await asyncio.gather(*(v.say("#burst", f"line one from {i}", f"line two from {i}", f"so fun {i}!!",
                                 f"so fun {i}") for i, v in enumerate(viewers)))
    await asyncio.gather(*(v.say("#burst", f"line three from {i}") for i, v in enumerate(viewers)))
    await asyncio.wait_for(done.wait(), 20)

    async def cheer(r, w):
        await _login(r, w)
        w.write(b"@bits=100;display-name=Paid;user-id=99 :paid!paid@paid.tmi.twitch.tv PRIVMSG #burst "
                b":what do you think of my cheer?\r\n")
        await w.drain()
        await r.read()  # until the client hangs up
    server, port = await _twitch_like_server([cheer])
    tw = TwitchChat("burst", host="127.0.0.1", port=port)
    pumps.append(asyncio.create_task(pump(tw)))
    deadline = time.monotonic() + 5
    while not queue.peek() or queue.peek().priority != PAID:
        assert time.monotonic() < deadline, "the cheer never reached the queue"
        await asyncio.sleep(0.01)
    first = queue.next()
    assert isinstance(first.event, Gift) and first.event.user_name == "Paid"
    stats = queue.stats()
    assert received == 200
    assert stats["dropped"].get("duplicate") == 40      # "so fun 3!!" and "so fun 3" normalise alike
    assert stats["depth_by_priority"]["chat"] == 160  # 200 lines less 40 duplicates
    assert stats["depth_by_priority"]["low"] == 40    # the viewers' joins
    for p in pumps:
        p.cancel()
    for v in viewers:
        v.close()
    server.close()
    await irc.close(), await tw.close()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.gather(*pumps)
