"""Bilibili danmaku packets built from the documented format: header, versions, batches, command mapping, errors."""
from __future__ import annotations

import json
import struct
import zlib

import pytest

from livehost.server.livestream import bilibili as bl
from livehost.server.livestream.events import Follow, Gift, Join, Message, SuperChat

ROOM = "21452505"


def cmd(obj) -> bytes:
    return bl.encode_packet(bl.OP_COMMAND, obj)


DANMU = {"cmd": "DANMU_MSG:4:0:2:2:2:0",
         "info": [[0, 1, 25, 16777215, 1700000000123, 0, 0, "abc", 0], "主播好！今天玩什么？",
                  [123456, "小明", 1, 0, 0, 10000, 1, ""], [12, "粉丝团", "主播", 21452505]]}
GIFT = {"cmd": "SEND_GIFT", "data": {"giftName": "小花花", "num": 5, "uname": "土豪", "uid": 42, "price": 100,
                                     "total_coin": 500, "coin_type": "gold", "action": "投喂"}}
SILVER = {"cmd": "SEND_GIFT", "data": {"giftName": "辣条", "num": 1, "uname": "路人", "uid": 7, "price": 100,
                                       "total_coin": 100, "coin_type": "silver", "action": "投喂"}}
SC = {"cmd": "SUPER_CHAT_MESSAGE", "data": {"uid": 9, "price": 30, "message": "能唱首歌吗", "start_time": 1700000001,
                                            "user_info": {"uname": "SC老板"}}}
ENTER = {"cmd": "INTERACT_WORD", "data": {"uid": 5, "uname": "进场", "msg_type": 1, "timestamp": 1700000002}}
FOLLOW = {"cmd": "INTERACT_WORD", "data": {"uid": 6, "uname": "关注", "msg_type": 2, "timestamp": 1700000003}}


def test_header_layout_and_round_trip():
    p = cmd({"cmd": "X"})
    length, hlen, ver, op, seq = struct.unpack(">IHHII", p[:16])
    assert (length, hlen, ver, op, seq) == (len(p), 16, 0, 5, 1)
    assert json.loads(p[16:]) == {"cmd": "X"}
    [back] = bl.decode(p)
    assert (back.ver, back.op, back.json()) == (0, 5, {"cmd": "X"})
    # heartbeat reply: version 1, a 4-byte popularity
    [hb] = bl.decode(bl.encode_packet(bl.OP_HEARTBEAT_REPLY, 31337))
    assert (hb.ver, hb.op, hb.int()) == (1, 3, 31337)
    auth = bl.decode(bl.auth_packet(int(ROOM), key="tok"))[0]
    assert auth.op == bl.OP_AUTH and auth.json()["roomid"] == int(ROOM) and auth.json()["key"] == "tok"
    assert bl.decode(bl.heartbeat_packet())[0].op == bl.OP_HEARTBEAT


def test_zlib_batch_of_three_and_mapping():
    frame = bl.encode_batch([cmd(DANMU), cmd(GIFT), cmd(SC)], ver=bl.VER_ZLIB)
    assert struct.unpack(">H", frame[6:8])[0] == 2
    zlib.decompress(frame[16:])  # really zlib, as the server sends it
    assert [p.json()["cmd"] for p in bl.decode(frame)] == ["DANMU_MSG:4:0:2:2:2:0", "SEND_GIFT", "SUPER_CHAT_MESSAGE"]
    stream = bl.DanmakuStream(ROOM)
    # a frame may mix plain packets with a compressed batch: the heartbeat reply and the batch
    msg, gift, sc = stream.feed(bl.encode_packet(bl.OP_HEARTBEAT_REPLY, 99) + frame)
    assert stream.popularity == 99 and stream.errors == 0
    assert isinstance(msg, Message) and (msg.user_id, msg.user_name, msg.text) == ("123456", "小明", "主播好！今天玩什么？")
    assert msg.platform == "bilibili" and msg.channel == ROOM and msg.ts == 1700000000.123
    assert msg.badges == ("moderator", "medal:粉丝团:12")
    assert isinstance(gift, Gift) and gift.amount == 0.5 and gift.currency == "CNY" and gift.count == 5
    assert gift.gift_name == "小花花" and gift.paid
    assert isinstance(sc, SuperChat) and (sc.amount, sc.text, sc.user_name) == (30, "能唱首歌吗", "SC老板")


def test_interact_word_silver_gift_and_auth_reply():
    stream = bl.DanmakuStream(ROOM)
    assert stream.feed(bl.encode_packet(bl.OP_AUTH_REPLY, {"code": 0})) == []
    assert stream.authenticated
    join, follow, silver = stream.feed(cmd(ENTER) + cmd(FOLLOW) + cmd(SILVER))
    assert isinstance(join, Join) and join.user_name == "进场" and join.ts == 1700000002
    assert isinstance(follow, Follow) and follow.user_id == "6"
    assert isinstance(silver, Gift) and not silver.paid and silver.currency == "silver"
    assert stream.feed(cmd({"cmd": "ONLINE_RANK_COUNT", "data": {"count": 3}})) == []  # not chat: ignored
    assert stream.errors == 0


@pytest.mark.parametrize("frame, words", [
    (b"\x00\x00\x00", "truncated header"),
    (struct.pack(">IHHII", 100, 16, 0, 5, 1) + b"{}", "claims 100 bytes"),
    (struct.pack(">IHHII", 20, 8, 0, 5, 1) + b"{}{}", "bad header"),
    (struct.pack(">IHHII", 20, 16, 9, 5, 1) + b"{}{}", "unknown protocol version 9"),
    (bl.encode_packet(bl.OP_COMMAND, b"not zlib at all", ver=bl.VER_ZLIB), "zlib body does not decompress"),
])
def test_malformed_frames_raise_clear_errors(frame, words):
    with pytest.raises(bl.PacketError, match=words):
        bl.decode(frame)


def test_malformed_data_does_not_kill_the_stream():
    stream = bl.DanmakuStream(ROOM)
    assert stream.feed(b"\x00\x00\x00\x10garbage") == []
    # one bad command inside a good frame: the others still come through
    events = stream.feed(cmd(DANMU) + bl.encode_packet(bl.OP_COMMAND, b"{not json") +
                         cmd({"cmd": "DANMU_MSG", "info": [[], "no user"]}) + cmd(FOLLOW))
    assert [type(e) for e in events] == [Message, Follow]
    assert stream.errors == 3 and "DANMU_MSG" in stream.last_error
    assert stream.feed(cmd(DANMU))[0].text == "主播好！今天玩什么？"  # and the next frame is fine


def test_zip_bomb_is_refused():
    bomb = bl.encode_packet(bl.OP_COMMAND, zlib.compress(b"\x00" * (bl.MAX_PACKET + 1)), ver=bl.VER_ZLIB)
    with pytest.raises(bl.PacketError, match="inflates past"):
        bl.decode(bomb)


def test_brotli_batch_or_clear_error():
    inner = [cmd(DANMU), cmd(FOLLOW)]
    if bl.brotli is None:
        fake = bl.encode_packet(bl.OP_COMMAND, b"\x1b\x00", ver=bl.VER_BROTLI)
        with pytest.raises(bl.PacketError, match="'brotli' package is not installed"):
            bl.decode(fake)
        stream = bl.DanmakuStream(ROOM)
        assert stream.feed(fake) == [] and "brotli" in stream.last_error
        assert bl.decode(bl.auth_packet(1))[0].json()["protover"] == 2  # so ask the server for zlib instead
    else:
        frame = bl.encode_batch(inner, ver=bl.VER_BROTLI)
        assert [type(e) for e in bl.DanmakuStream(ROOM).feed(frame)] == [Message, Follow]
