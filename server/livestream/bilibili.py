"""Bilibili live danmaku: the binary WebSocket packet codec and the mapping of its commands to chat events.

Every WebSocket frame holds one or more packets, each a 16-byte big-endian header then a body:
    uint32 packet length (header included) | uint16 header length (16) | uint16 protocol version
    | uint32 operation | uint32 sequence (1)
Versions: 0 raw JSON, 1 a 4-byte integer (heartbeat reply: popularity), 2 zlib, 3 brotli; a compressed body is
itself a run of packets. Operations: 2 heartbeat, 3 heartbeat reply, 5 command, 7 auth, 8 auth reply.
"""
from __future__ import annotations

import json
import logging
import struct
import zlib
from dataclasses import dataclass
from typing import Any

from .events import ChatEvent, Follow, Gift, Join, Message, SuperChat

try:
    import brotli  # optional: only protocol-3 packets need it, and clients may ask the server for zlib instead
except ImportError:  # pragma: no cover - depends on the environment
    brotli = None

log = logging.getLogger(__name__)

HEADER = struct.Struct(">IHHII")
HEADER_LEN = 16
VER_JSON, VER_INT, VER_ZLIB, VER_BROTLI = 0, 1, 2, 3
OP_HEARTBEAT, OP_HEARTBEAT_REPLY, OP_COMMAND, OP_AUTH, OP_AUTH_REPLY = 2, 3, 5, 7, 8
MAX_PACKET = 16 * 1024 * 1024  # bounds decompression too: a malicious "zip bomb" frame must not eat the host's RAM
MAX_DEPTH = 2                  # compressed packets hold plain ones; deeper nesting is malformed


class PacketError(ValueError):
    """A frame or packet that does not follow the format; the message says which part and why."""


@dataclass(slots=True)
class Packet:
    ver: int
    op: int
    body: bytes
    seq: int = 1

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise PacketError(f"packet op {self.op}: body is not JSON ({e})") from None

    def int(self) -> int:
        if len(self.body) != 4:
            raise PacketError(f"packet op {self.op}: integer body must be 4 bytes, got {len(self.body)}")
        return struct.unpack(">I", self.body)[0]


def _compress(ver: int, data: bytes) -> bytes:
    if ver == VER_ZLIB:
        return zlib.compress(data)
    if brotli is None:
        raise PacketError("protocol version 3 (brotli) needs the 'brotli' package: pip install brotli")
    return brotli.compress(data)


def _decompress(ver: int, data: bytes) -> bytes:
    if ver == VER_BROTLI:
        if brotli is None:
            raise PacketError("protocol version 3 (brotli) packet, but the 'brotli' package is not installed "
                              "(pip install brotli, or authenticate with protover 2 for zlib)")
        try:
            return brotli.decompress(data)
        except brotli.error as e:
            raise PacketError(f"brotli body does not decompress: {e}") from None
    d = zlib.decompressobj()
    try:
        out = d.decompress(data, MAX_PACKET)
    except zlib.error as e:
        raise PacketError(f"zlib body does not decompress: {e}") from None
    if d.unconsumed_tail:
        raise PacketError(f"zlib body inflates past {MAX_PACKET} bytes")
    return out


def encode_packet(op: int, body: bytes | str | dict | list | int = b"", ver: int = VER_JSON, seq: int = 1) -> bytes:
    """One packet. Dicts/lists are JSON-encoded; ints become the 4-byte body of version 1."""
    if isinstance(body, (dict, list)):
        body = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    elif isinstance(body, str):
        body = body.encode()
    elif isinstance(body, int):
        body, ver = struct.pack(">I", body), VER_INT
    return HEADER.pack(HEADER_LEN + len(body), HEADER_LEN, ver, op, seq) + body


def encode_batch(packets: list[bytes], ver: int = VER_ZLIB, op: int = OP_COMMAND) -> bytes:
    """Several packets compressed into one outer packet, as the server batches commands."""
    return encode_packet(op, _compress(ver, b"".join(packets)), ver=ver)


def decode(data: bytes, _depth: int = 0) -> list[Packet]:
    """All packets in a frame, compressed ones expanded in place. Raises PacketError on any malformed part."""
    out: list[Packet] = []
    pos, n = 0, len(data)
    while pos < n:
        if n - pos < HEADER_LEN:
            raise PacketError(f"truncated header at byte {pos}: {n - pos} bytes left, need {HEADER_LEN}")
        length, hlen, ver, op, seq = HEADER.unpack_from(data, pos)
        if hlen < HEADER_LEN or length < hlen:
            raise PacketError(f"bad header at byte {pos}: packet length {length}, header length {hlen}")
        if length > MAX_PACKET or pos + length > n:
            raise PacketError(f"packet at byte {pos} claims {length} bytes but {n - pos} remain")
        body = bytes(data[pos + hlen:pos + length])
        pos += length
        if ver in (VER_ZLIB, VER_BROTLI):
            if _depth >= MAX_DEPTH:
                raise PacketError("compressed packets nested too deep")
            out.extend(decode(_decompress(ver, body), _depth + 1))
        elif ver in (VER_JSON, VER_INT):
            out.append(Packet(ver, op, body, seq))
        else:
            raise PacketError(f"unknown protocol version {ver} at byte {pos - length}")
    return out


def auth_packet(room_id: int, uid: int = 0, key: str | None = None, buvid: str | None = None,
                protover: int | None = None) -> bytes:
    """The first frame a client sends. protover 3 (brotli) when the package is there, else 2 (zlib)."""
    body: dict[str, Any] = {"uid": uid, "roomid": room_id,
                            "protover": protover or (VER_BROTLI if brotli else VER_ZLIB),
                            "platform": "web", "type": 2}
    if key:
        body["key"] = key
    if buvid:
        body["buvid"] = buvid
    return encode_packet(OP_AUTH, body, ver=VER_INT)


def heartbeat_packet() -> bytes:
    return encode_packet(OP_HEARTBEAT, b"[object Object]", ver=VER_INT)


def _num(x: Any, default: float = 0.0) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return default


def command_to_event(cmd: dict, room: str) -> ChatEvent | None:
    """Map one command (op 5 JSON) to an event; None for commands that are not chat (there are dozens)."""
    name = str(cmd.get("cmd", "")).split(":", 1)[0]  # DANMU_MSG arrives as e.g. "DANMU_MSG:4:0:2:2:2:0"
    data = cmd.get("data") or {}
    if name == "DANMU_MSG":
        info = cmd.get("info")
        if not isinstance(info, list) or len(info) < 3 or not isinstance(info[2], list) or len(info[2]) < 2:
            raise PacketError("DANMU_MSG without info[1] text and info[2] [uid, name]")
        meta, text, user = info[0], str(info[1]), info[2]
        ts = _num(meta[4]) / 1000 if isinstance(meta, list) and len(meta) > 4 and _num(meta[4]) else None
        badges = ["moderator"] if len(user) > 2 and user[2] else []
        medal = info[3] if len(info) > 3 else None
        if isinstance(medal, list) and len(medal) >= 2:
            badges.append(f"medal:{medal[1]}:{medal[0]}")
        extra = {"ts": ts} if ts else {}
        return Message("bilibili", room, str(user[0]), str(user[1]), text=text, badges=tuple(badges), **extra)
    if name == "SEND_GIFT":
        coins = _num(data.get("total_coin")) or _num(data.get("price")) * _num(data.get("num"), 1)
        gold = data.get("coin_type", "gold") == "gold"  # silver gifts are free
        num = int(_num(data.get("num"), 1))
        gname = str(data.get("giftName", "gift"))
        return Gift("bilibili", room, str(data.get("uid", "")), str(data.get("uname", "")),
                    amount=coins / 1000 if gold else 0.0, currency="CNY" if gold else "silver",
                    text=f"{data.get('action', '投喂')} {gname} x{num}", gift_name=gname, count=num)
    if name == "GUARD_BUY":  # captain / admiral / governor membership: price in gold coins (1000 = 1 CNY)
        return Gift("bilibili", room, str(data.get("uid", "")), str(data.get("username", "")),
                    amount=_num(data.get("price")) * _num(data.get("num"), 1) / 1000, currency="CNY",
                    text=str(data.get("gift_name", "guard")), gift_name=str(data.get("gift_name", "guard")),
                    count=int(_num(data.get("num"), 1)))
    if name == "SUPER_CHAT_MESSAGE":
        user = data.get("user_info") or {}
        extra = {"ts": _num(data["start_time"])} if _num(data.get("start_time")) else {}
        return SuperChat("bilibili", room, str(data.get("uid", "")), str(user.get("uname", "")),
                         amount=_num(data.get("price")), currency="CNY", text=str(data.get("message", "")), **extra)
    if name == "INTERACT_WORD":  # msg_type 1 entered the room, 2 followed, 3 shared, 4/5 special/mutual follow
        kind = {1: Join, 2: Follow, 4: Follow, 5: Follow}.get(int(_num(data.get("msg_type"))))
        if kind is None:
            return None
        extra = {"ts": _num(data["timestamp"])} if _num(data.get("timestamp")) else {}
        return kind("bilibili", room, str(data.get("uid", "")), str(data.get("uname", "")), **extra)
    return None


class DanmakuStream:
    """Turns received frames into events. A malformed frame or command is logged and counted, never raised:
    one bad packet must not end a stream that runs for hours."""

    def __init__(self, room: str | int):
        self.room = str(room)
        self.popularity = 0
        self.authenticated = False
        self.errors = 0
        self.last_error = ""

    def _error(self, e: Exception) -> None:
        self.errors += 1
        self.last_error = str(e)
        log.warning("bilibili room %s: skipped malformed data: %s", self.room, e)

    def feed(self, frame: bytes) -> list[ChatEvent]:
        try:
            packets = decode(frame)
        except PacketError as e:
            self._error(e)
            return []
        events: list[ChatEvent] = []
        for p in packets:
            try:
                if p.op == OP_HEARTBEAT_REPLY:
                    self.popularity = p.int()
                elif p.op == OP_AUTH_REPLY:
                    code = p.json().get("code", 0)
                    self.authenticated = code == 0
                    if code:
                        self._error(PacketError(f"auth rejected with code {code}"))
                elif p.op == OP_COMMAND:
                    cmd = p.json()
                    if not isinstance(cmd, dict):
                        raise PacketError("command body is not a JSON object")
                    event = command_to_event(cmd, self.room)
                    if event is not None:
                        events.append(event)
            except (PacketError, TypeError, ValueError, AttributeError, KeyError, IndexError) as e:
                self._error(e)  # one bad command; the rest of the frame still counts
        return events
