import asyncio
import time

import pytest

from livehost.persona.window import ConversationWindow, estimate_tokens, message_tokens


def conversation(n: int, words: int = 30) -> list[dict]:
    filler = " ".join(["word"] * words)
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": f"Message {i} starts here. {filler}",
             "status": "completed"} for i in range(n)]


def total(summary, recent) -> int:
    return (estimate_tokens(summary) if summary else 0) + sum(map(message_tokens, recent))


class Recorder:
    def __init__(self, delay: float = 0.0, fail: bool = False):
        self.calls: list[str] = []
        self.delay, self.fail = delay, fail

    async def __call__(self, text: str) -> str:
        self.calls.append(text)
        await asyncio.sleep(self.delay)
        if self.fail:
            raise RuntimeError("LLM down")
        return f"SUMMARY {len(self.calls)}"


def test_estimate_tokens():
    assert estimate_tokens("") == 0
    assert estimate_tokens("abcdefgh") == 2
    assert estimate_tokens("你好世界") == 4
    assert estimate_tokens("hi 你好") == 3


async def test_short_conversation_is_sent_whole():
    window, summarize = ConversationWindow(budget_tokens=1000), Recorder()
    messages = conversation(4)
    summary, recent = await window.fit(messages, summarize)
    assert summary is None and recent == messages and summarize.calls == []


async def test_budget_respected_and_old_turns_summarized_not_dropped():
    window, summarize = ConversationWindow(budget_tokens=300, keep_recent=4), Recorder()
    messages = conversation(30)
    summary, recent = await window.fit(messages, summarize)
    assert total(summary, recent) <= 300
    assert recent == messages[-len(recent):] and 1 <= len(recent) <= 4
    # before the LLM has answered, the folded turns are there as first sentences
    assert "Message 25 starts here." in summary and "word word" not in summary
    await window.wait_summarized()
    assert len(summarize.calls) == 1 and "Message 0 starts here" in summarize.calls[0]
    summary2, recent2 = await window.fit(messages, summarize)
    assert summary2 == "SUMMARY 1" and recent2 == recent


async def test_fit_never_waits_for_a_slow_summarizer():
    window, summarize = ConversationWindow(budget_tokens=200), Recorder(delay=5.0)
    messages = conversation(20)
    started = time.perf_counter()
    summary, recent = await window.fit(messages, summarize)
    assert time.perf_counter() - started < 0.5  # the summarizer takes 5 s; the margin is for a busy machine
    assert summary and window.summarizing
    messages += conversation(6)  # more turns while the summary is still being written
    started = time.perf_counter()
    summary, recent = await window.fit(messages, summarize)
    assert time.perf_counter() - started < 0.5  # the summarizer takes 5 s; the margin is for a busy machine
    assert total(summary, recent) <= 200
    window.close()
    await asyncio.sleep(0)
    assert not window.summarizing


async def test_folding_is_in_batches_so_the_prefix_stays_stable():
    window, summarize = ConversationWindow(budget_tokens=400, keep_recent=2), Recorder()
    messages = conversation(12)
    _, recent = await window.fit(messages, summarize)
    await window.wait_summarized()
    messages.append({"role": "user", "content": "Short one.", "status": "completed"})
    summary, recent2 = await window.fit(messages, summarize)
    assert recent2[:-1] == recent and summary == "SUMMARY 1"  # nothing new folded: the prompt only grew
    await window.wait_summarized()
    assert len(summarize.calls) == 1


async def test_summary_chains_over_several_folds():
    window, summarize = ConversationWindow(budget_tokens=200, keep_recent=2), Recorder()
    messages = conversation(10)
    await window.fit(messages, summarize)
    await window.wait_summarized()
    messages += conversation(10)
    summary, _ = await window.fit(messages, summarize)
    assert summary.startswith("SUMMARY 1")  # the old LLM summary, plus first sentences of the new folds
    await window.wait_summarized()
    assert summarize.calls[1].startswith("Earlier: SUMMARY 1")
    assert (await window.fit(messages, summarize))[0] == "SUMMARY 2"


async def test_incomplete_messages_stay_as_they_are():
    window, summarize = ConversationWindow(budget_tokens=250, keep_recent=4), Recorder(delay=5.0)
    cut = {"role": "assistant", "content": "Our opening hours are", "status": "incomplete"}
    early_cut = {"role": "assistant", "content": "Let me tell you about", "status": "incomplete"}
    messages = [*conversation(20), early_cut, *conversation(6),
                {"role": "user", "content": "When do you open?", "status": "completed"}, cut]
    summary, recent = await window.fit(messages, summarize)
    assert recent[-1] is cut and cut == {"role": "assistant", "content": "Our opening hours are",
                                         "status": "incomplete"}
    assert "Assistant: Let me tell you about (interrupted)" in summary
    assert early_cut["content"] == "Let me tell you about"
    window.close()


async def test_edited_history_resets_the_summary():
    window, summarize = ConversationWindow(budget_tokens=200), Recorder()
    messages = conversation(20)
    await window.fit(messages, summarize)
    await window.wait_summarized()
    del messages[0]  # e.g. conversation.item.delete
    summary, _ = await window.fit(messages, summarize)
    assert summary != "SUMMARY 1" and "Message 0 " not in summary and "Message 16 starts" in summary
    await window.wait_summarized()
    assert len(summarize.calls) == 2 and "Message 0 " not in summarize.calls[1]


async def test_failed_summarizer_keeps_the_extractive_fallback():
    window, summarize = ConversationWindow(budget_tokens=200), Recorder(fail=True)
    messages = conversation(20)
    summary, _ = await window.fit(messages, summarize)
    await window.wait_summarized()
    assert (await window.fit(messages, summarize))[0] == summary and "Message" in summary


async def test_one_huge_message_is_clipped_to_its_end():
    window = ConversationWindow(budget_tokens=100)
    huge = {"role": "user", "content": "blah " * 500 + "so what do you think?", "status": "completed"}
    summary, recent = await window.fit([huge], Recorder())
    assert summary is None and total(summary, recent) <= 100
    assert recent[0]["content"].endswith("so what do you think?") and huge["content"].startswith("blah")


def test_bad_budget():
    with pytest.raises(ValueError):
        ConversationWindow(budget_tokens=10)
