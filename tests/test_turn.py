"""What the user heard: transcript cuts from audio positions."""
import pytest

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


@pytest.mark.e2e
async def test_a_held_reply_sends_nothing_until_released_or_the_hold_expires(engines):
    """Voice heard (not yet a turn): no more audio leaves; a false alarm resumes; a stuck hold expires."""
    import asyncio
    import time

    from livehost.server.turn import HOLD_MAX_S, Reply, ReplyPlan
    from livehost.speech.audio import AudioFormat

    from livehost.server.reply_events import Audio

    sent: list[float] = []

    def emit(event):
        if isinstance(event, Audio):  # a WebSocket audio delta
            sent.append(time.perf_counter())
    plan = ReplyPlan(messages=[], output_format=AudioFormat("audio/pcm", 24000), lead_ms=0,
                     script="One two three four five six seven eight nine ten eleven twelve.")
    reply = Reply(plan, engines.llm, engines.tts, emit)
    reply.start()

    async def first_audio():
        while not sent:
            await asyncio.sleep(0.005)
    await asyncio.wait_for(first_audio(), 30)
    reply.hold(True)
    await asyncio.sleep(0.01)  # the piece in flight may still go
    count, held_at = len(sent), time.perf_counter()
    await asyncio.sleep(0.2)
    assert len(sent) == count  # nothing while held
    reply.hold(False)
    await asyncio.sleep(0.25)
    assert len(sent) > count  # a false alarm: it goes on
    reply.hold(True)
    await asyncio.wait_for(reply.done.wait(), 10)  # never released: the hold expires by itself
    assert reply.status == "completed"
    gaps = [b - a for a, b in zip(sent, sent[1:])]
    # the hold, plus at most one 100 ms piece and a busy machine's scheduling
    assert HOLD_MAX_S * 0.9 < max(gaps) < HOLD_MAX_S + 0.4 and held_at, gaps


class _WordsLLM:
    """Test double: streams fixed words as tokens."""

    def __init__(self, words):
        self.words = words

    async def stream(self, messages, *, max_tokens, temperature):
        for w in self.words[:max_tokens]:
            yield w


@pytest.mark.e2e
async def test_a_reply_cut_by_max_tokens_ends_on_its_last_whole_sentence(engines):
    from livehost.server.reply_events import Chunk
    from livehost.server.turn import Reply, ReplyPlan
    from livehost.speech.audio import AudioFormat

    words = ["Hello ", "there, ", "my ", "good ", "friend. ", "I ", "think ", "that ", "the ", "best ", "part ", "is"]
    said = []

    async def speak(max_tokens):
        said.clear()
        plan = ReplyPlan(messages=[{"role": "user", "content": "hi"}], output_format=AudioFormat("audio/pcm", 24000),
                         lead_ms=10_000, max_tokens=max_tokens)
        reply = Reply(plan, _WordsLLM(words), engines.tts,
                      lambda e: said.append(e.text) if isinstance(e, Chunk) else None)
        reply.start()
        await reply.done.wait()
        return " ".join(said).strip()

    assert await speak(len(words)) == "Hello there, my good friend."  # cut off by max_tokens: the fragment is not spoken
    assert (await speak(100)).endswith("the best part is")  # the model ended by itself: every word is kept


def test_rounding_of_the_sent_audio_never_drops_the_last_word():
    segments = [Segment(0, 1000 / 3, "all of you")]
    sent = sum(1000 * 800 / 24000 for _ in range(10))  # ten 800-sample pieces, summed as floats
    assert sent < 1000 / 3 * 1.0000001 and text_until(segments, sent - 1e-9) == "all of you"
