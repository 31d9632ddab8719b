"""Chinese is written without spaces: the Mandarin voice speaks a reply clause by clause (a chunk each, the first
one cut once more), and neither the transcript deltas nor what was heard may put spaces between them."""
from __future__ import annotations

from types import SimpleNamespace

from livehost.server.reply_events import Chunk, to_realtime
from livehost.server.voice_out import Segment, spoken_join, text_until


def test_no_space_where_chinese_meets_either_side():
    assert spoken_join("这款耳机", "的价格是299元，") == ""
    assert spoken_join("好的，", "记得点个关注我。") == ""
    assert spoken_join("好的！", "Thanks for the gift.") == ""
    assert spoken_join("Thanks for the gift.", "谢谢！") == ""
    assert spoken_join("Hello there.", "How are you?") == " "
    assert spoken_join("", "你好") == ""


def test_what_was_heard_of_a_chinese_reply_has_no_spaces_and_keeps_a_partly_heard_clause():
    segments = [Segment(0, 500, "这"), Segment(500, 2000, "款耳机的价格是299元，"), Segment(2000, 3000, "很便宜哦。")]
    assert text_until(segments, 3000) == "这款耳机的价格是299元，很便宜哦。"
    assert text_until(segments, 2500) == "这款耳机的价格是299元，很便"  # half of the last clause's 5 characters
    assert text_until(segments, 1250) == "这款耳机的价格"  # half of the second clause's 13
    english = [Segment(0, 1000, "one two three four"), Segment(1000, 2000, "five six")]
    assert text_until(english, 2000) == "one two three four five six" and text_until(english, 500) == "one two"


def test_transcript_deltas_of_chinese_chunks_join_without_spaces():
    reply = SimpleNamespace(id="resp_1", item_id="item_1", plan=SimpleNamespace(audio=True), segments=[])
    deltas = []
    for k, text in enumerate(["这", "款耳机的价格是299元，", "很便宜哦。", "See you!", "And bye."]):
        events = to_realtime(Chunk(reply, text, first=not reply.segments))
        deltas += [e["delta"] for e in events if e["type"] == "response.output_audio_transcript.delta"]
        reply.segments.append(Segment(k * 1000, (k + 1) * 1000, text))  # as Reply._send does, after telling
    assert "".join(deltas) == "这款耳机的价格是299元，很便宜哦。See you! And bye."
