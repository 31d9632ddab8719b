"""Does a character copy its own earlier replies in a warm session? (issue 11: replies that repeat themselves)

Each conversation is one session's worth of turns, in text, with the bundled LLM (auto: SmolLM2 for lumi's English,
Qwen for nuomi's Chinese). Counted per reply after the first: `copy` = its first sentence is a first sentence of one
of the replies before it; `opening` = its first five words (or eight Chinese characters) open an earlier reply;
`empty` = it said nothing. Run twice: the reply filter as shipped, and without its earlier-replies check
(reply_filter.CHECK_EARLIER_REPLIES = False), so the figure is the check's own.

    python bench/warm_repeats.py [--rounds 2] [--write]
"""
from __future__ import annotations

import argparse
import asyncio
import re

from common import load_avg, machine, table, write_section

CONVERSATIONS = {  # the bench's own lines, not taken from any prompt or test
    ("lumi", "chat_en"): ["hi Lumi, how are you today?", "what game are we playing tonight?", "I just got a new puppy!",
                          "do you like rainy days?", "tell me about your favourite food",
                          "my exams start tomorrow, wish me luck", "what music do you listen to?",
                          "have you ever been to the sea?", "who is your best friend?", "I'm going to sleep now, good night"],
    ("lumi", "speech_fragments_en"): ["And so, my fellow Americans,", "ask not what your country can do for you,",
                                      "ask what you can do for your country.", "My fellow citizens of the world,",
                                      "ask not what America will do for you,",
                                      "but what together we can do for the freedom of man."],
    ("nuomi", "chat_zh"): ["糯米晚上好！", "今天玩什么游戏呀？", "我刚下班，好累啊", "你喜欢吃什么？", "推荐一首歌吧",
                           "明天要考试了，紧张", "你去过海边吗？", "主播几点下播？", "我先去睡了，晚安"],
}


def _first(text: str) -> str:
    return re.split(r"(?<=[.!?。！？])\s*", text.strip())[0].lower()


def _opening(text: str) -> str:
    t = text.strip().lower()
    return t[:8] if re.search(r"[\u4e00-\u9fff]", t[:4]) else " ".join(t.split()[:5])


async def _conversation(llm, library, character: str, lines: list[str]) -> list[str]:
    from livehost.persona.dialogue import Dialogue
    dialogue, conversation, replies = Dialogue(library.get(character), llm), [], []
    for line in lines:
        conversation.append({"role": "user", "content": line, "status": "completed"})
        plan = await dialogue.plan(conversation)
        text = "".join([t async for t in llm.stream(plan.messages, max_tokens=60, temperature=0.6)]).strip()
        replies.append(text)
        conversation.append({"role": "assistant", "content": text, "status": "completed"})
    return replies


def _score(replies: list[str]) -> dict:
    later = range(1, len(replies))
    return {"n": len(later),
            "copy": sum(_first(replies[i]) in {_first(r) for r in replies[:i] if r} for i in later if replies[i]),
            "opening": sum(_opening(replies[i]) in {_opening(r) for r in replies[:i] if r} for i in later if replies[i]),
            "empty": sum(not r for r in replies)}


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=2, help="each conversation this many times (sampling varies)")
    ap.add_argument("--write", action="store_true", help="write the table to bench/RESULTS.md")
    args = ap.parse_args()
    from livehost.persona import reply_filter
    from livehost.persona.character import BUILTIN_DIR, CharacterLibrary
    from livehost.persona.llm import LLM
    llm, library = LLM.create("llama-cpp", model="auto"), CharacterLibrary([BUILTIN_DIR])
    before = load_avg()
    rows, examples = [], []
    for label, check in (("shipped", True), ("without the check", False)):
        reply_filter.CHECK_EARLIER_REPLIES = check
        for (character, name), lines in CONVERSATIONS.items():
            total = {"n": 0, "copy": 0, "opening": 0, "empty": 0}
            for round_ in range(args.rounds):
                replies = await _conversation(llm, library, character, lines)
                for k, v in _score(replies).items():
                    total[k] += v
                if round_ == 0 and label == "shipped":
                    examples.append(f"- {character}/{name}: " + " | ".join(r[:50] for r in replies))
            rows.append([label, f"{character}/{name}", total["n"], total["copy"], total["opening"], total["empty"]])
            print(rows[-1], flush=True)
    body = (f"### warm_repeats — replies copied from earlier replies in one session\n\n{machine()}. LLM {llm.name}; "
            f"max_tokens 60, temperature 0.6; {args.rounds} rounds a conversation. Load average before: {before}; "
            f"after: {load_avg()}.\n\n"
            + table(["reply filter", "conversation", "replies after the first", "copy (same first sentence)",
                     "same opening", "empty"], rows)
            + "\n\nFirst round's replies (shipped filter, first 50 characters each):\n\n" + "\n".join(examples))
    print(body)
    if args.write:
        write_section("warm-repeats", body)


if __name__ == "__main__":
    asyncio.run(main())
