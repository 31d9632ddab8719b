"""What the user heard: transcript cuts from audio positions."""
from livehost.server.turn import Segment, text_until

SEGMENTS = [Segment(0, 1000, "one two three four"), Segment(1000, 3000, "five six seven eight")]


def test_whole_segments_before_the_cut():
    assert text_until(SEGMENTS, 1000) == "one two three four"
    assert text_until(SEGMENTS, 5000) == "one two three four five six seven eight"


def test_a_segment_cut_midway_keeps_the_share_heard():
    assert text_until(SEGMENTS, 500) == "one two"
    assert text_until(SEGMENTS, 2000) == "one two three four five six"


def test_nothing_heard():
    assert text_until(SEGMENTS, 0) == ""
    assert text_until([], 1234) == ""
