"""The reply filter every LLM engine's output goes through: whole sentences, no repeats, no prompt echo, grounded
claims only where the prompt carries facts."""
from __future__ import annotations

import asyncio
import re

from livehost.persona.reply_filter import EXTRA_TOKENS, Prompt, clean_reply

SYSTEM = [{"role": "system", "content": "You are Mika. A shop helper.\nYou speak out loud: one to three short "
                                        "sentences, no lists, no markdown, no emoji.\nBegin each sentence with one "
                                        "emotion tag: [neutral], [happy]."},
          {"role": "user", "content": "Hi"}]


async def _tokens(text: str, log: list | None = None):
    for token in re.findall(r"\S+\s*", text):
        if log is not None:
            log.append(token)
        yield token


def said(text: str, messages=SYSTEM, max_tokens: int = 60) -> str:
    async def run():
        return "".join([piece async for piece in clean_reply(_tokens(text), messages, max_tokens)])
    return asyncio.run(run())


def test_a_sentence_is_never_said_twice():
    out = said("[happy] The shop is closed on Mondays. The shop is closed on Mondays. I'm sorry. I'm sorry. "
               "I'm sorry. See you soon.")
    assert out.count("closed on Mondays") == 1 and out.count("I'm sorry") == 1 and out.endswith("See you soon.")


def test_the_prompts_instructions_are_never_said():
    out = said("Sure! One to three short sentences, no lists, no markdown, no emoji. How can I help?")
    assert "short sentences" not in out and out.strip() == "Sure! How can I help?"


def test_budget_ends_at_a_sentence_end_not_mid_sentence():
    # 10 tokens of budget: the sentence being written when it runs out is finished, and nothing after it is said
    text = "We open at ten every day. The online shop never closes and you can order anything at any hour " \
           "of the night. Next sentence is never said."
    out = said(text, max_tokens=10)
    assert out.endswith("of the night.") and "Next" not in out


def test_a_sentence_that_never_ends_is_not_said():
    words = " ".join(["word"] * (EXTRA_TOKENS + 30))
    out = said(f"Hello there friend, how are you. {words}", max_tokens=8)
    assert out.strip() == "Hello there friend, how are you."


def test_a_reply_the_model_ends_without_a_stop_gets_one():
    assert said("Hi Kai, welcome to the stream") == "Hi Kai, welcome to the stream."


def test_words_stream_before_the_sentence_ends():
    async def run():
        log: list = []
        gen = clean_reply(_tokens("Welcome back to the shop, it is good to see you again today.", log), SYSTEM, 60)
        first = await gen.__anext__()
        await gen.aclose()
        return first, len(log)
    first, read = asyncio.run(run())
    assert first.startswith("Welcome") and read < 5  # the first words left after a few tokens, not the sentence


def test_grounded_prompt_drops_unsupported_claims_and_falls_back():
    prompt = Prompt(SYSTEM, facts="We are open Tuesday to Saturday. Engraving costs 8.00.",
                    fallback="Shall I pass you to a colleague?")
    assert said("Hello! We have 20 percent off on Monday. Engraving costs 8.00.", prompt) == \
        "Hello! Engraving costs 8.00."
    assert said("Yes, we ship to Canada.", prompt) == "Shall I pass you to a colleague?"


def test_a_reply_of_only_a_tag_is_asked_for_again():
    from livehost.persona.llm import cleaned
    outputs = iter(["[calm]", "[calm] Glad you liked the book."])
    asked: list[int] = []

    def raw(n: int, messages):
        asked.append((n, messages[-1]["content"]))
        return _tokens(next(outputs))

    async def run():
        return "".join([t async for t in cleaned(raw, SYSTEM, 60)])
    assert re.sub(r"\[\w+\]", "", asyncio.run(run())).strip() == "Glad you liked the book."
    assert [n for n, _ in asked] == [60 + EXTRA_TOKENS] * 2
    assert asked[0][1] == "Hi" and "words" in asked[1][1]  # the second time it is told to use words


def test_the_users_words_are_not_said_back():
    chat = SYSTEM[:1] + [{"role": "user", "content": 'Viewer "Kai" wrote in chat: «keep up the great work, you '
                                                     'always make my evening»'}]
    assert said("Kai, thanks! Keep up the great work, you always make my evening! See you.", chat) == \
        "Kai, thanks! See you."


def test_trailing_emoji_or_tag_is_not_left_hanging():
    assert said("I love new gadgets too.\n\n🌟💡🎮").rstrip() == "I love new gadgets too."
    assert said("I love new gadgets too. [happy]").strip() == "I love new gadgets too. [happy]"


def test_stage_directions_are_not_said():
    out = said("Hi Rin! What music do you like? [Rin says goodbye to the stream and thanks viewers for their gifts.]")
    assert out.strip() == "Hi Rin! What music do you like?"


def test_no_condolences_for_a_user_who_is_not_sad():
    walk = SYSTEM[:1] + [{"role": "user", "content": "I just got back from a long walk in the rain."}]
    assert said("I'm sorry for your loss. Rain walks are the best!", walk).strip() == "Rain walks are the best!"
    assert said("Sorry, I missed that. Say again?", walk) == "Sorry, I missed that. Say again?"
    assert said("I'm so sorry for your family. Rain walks are the best!", walk).strip() == "Rain walks are the best!"
    loss = SYSTEM[:1] + [{"role": "user", "content": "My grandmother passed away yesterday."}]
    assert said("I'm sorry for your loss.", loss) == "I'm sorry for your loss."


def test_a_held_sentence_leaves_with_the_space_that_ended_it():
    """A sentence held whole ("I'm so sorry ..." waits to be judged) goes out with the space after its full stop,
    so the chunker can cut it at once instead of waiting for the next sentence's words (held too, maybe)."""
    async def run():
        gen = clean_reply(_tokens("I'm so sorry for the misunderstanding. I would love to talk about games."), SYSTEM, 60)
        first = await gen.__anext__()
        await gen.aclose()
        return first
    assert asyncio.run(run()) == "I'm so sorry for the misunderstanding. "


def test_chinese_words_stream_after_two_characters_unless_they_may_become_condolences():
    zh = [{"role": "system", "content": "You are 糯米.\nReply in Chinese."}, {"role": "user", "content": "晚上好呀"}]

    async def first_out(tokens: list[str]) -> tuple[str, int]:
        read: list[str] = []

        async def gen():
            for t in tokens:
                read.append(t)
                yield t
        out = clean_reply(gen(), zh, 60)
        first = await out.__anext__()
        await out.aclose()
        return first, len(read)

    # Qwen writes Chinese a character or two a token: the first words go once a word is known
    assert asyncio.run(first_out(["你", "好", "呀", "，", "欢迎", "来", "玩", "！"])) == ("你好", 2)
    # ... but not while they may still become 抱歉 / 遗憾 to a viewer who is not sad, nor while they are the user's
    assert asyncio.run(first_out(["真", "遗", "憾", "，", "下次", "再", "来", "！"]))[1] == 8  # held whole
    assert asyncio.run(first_out(["好", "遗", "憾", "哦"]))[1] == 4  # '好遗' is not let go either
    assert asyncio.run(first_out(["晚上", "好", "呀", "，", "欢迎", "来", "玩", "！"]))[1] == 5


def test_a_sentence_from_one_of_the_last_replies_is_not_said_again():
    """A small model in a warm session copies its previous reply; the copy is dropped, new words are said."""
    history = SYSTEM + [{"role": "assistant", "content": "I'm so sorry for the misunderstanding. I'd be happy to "
                                                         "talk about politics with you."},
                        {"role": "user", "content": "ask what you can do for your country"}]
    out = said("I'm so sorry for the misunderstanding. I'd be happy to talk about politics with you! "
               "That line is a famous one.", history)
    assert out.strip() == "That line is a famous one.", out
    assert said("Thanks! That line is a famous one.", history + [
        {"role": "assistant", "content": "Thanks!"}, {"role": "user", "content": "more"}]).startswith("Thanks!")
    again = history[:-1] + [{"role": "user", "content": "Hi"}]  # asked the same again: the same answer may come
    assert "misunderstanding" in said("I'm so sorry for the misunderstanding. Hello!", again)


def test_the_users_words_said_back_with_an_interjection_are_not_an_answer():
    """Where sentences are judged whole (a livestream's viewers, grounded answers): a viewer's line said back with
    an "哎呀，" or "Oh," before it is no answer."""
    nothing = re.compile(r"(?!x)x")

    def host(reply: str, viewer: str) -> str:
        prompt = Prompt(SYSTEM[:1] + [{"role": "user", "content": viewer}], avoid=nothing)

        async def run():
            chars = (c for c in reply)  # Qwen writes Chinese a character or two at a time

            async def tokens():
                for c in chars:
                    yield c
            return "".join([piece async for piece in clean_reply(tokens(), prompt, 60)])
        return asyncio.run(run()).strip()

    assert host("哎呀，推荐一首歌吧！我最近爱听《晴天》。", "推荐一首歌吧") == "我最近爱听《晴天》。"
    assert host("Oh, what music do you listen to? I love lo-fi.", "what music do you listen to?") == "I love lo-fi."
    assert host("推荐一首歌吧，比如周杰伦的《晴天》，旋律很美。", "推荐一首歌吧").startswith("推荐一首歌吧")  # more than an echo


def test_a_lead_in_every_earlier_reply_opened_with_is_not_said_again():
    """SmolLM2 in a warm session opened 16 replies in a row with "Here's a revised version:"; the rest is said."""
    history = SYSTEM + [{"role": "assistant", "content": "Here's a revised version: Free of charge."},
                        {"role": "user", "content": "and to permit persons to whom the software is furnished"}]
    out = said("Here's a revised version: You may share the software freely.", history)
    assert out.strip() == "You may share the software freely.", out
    assert said("Here's a revised one: the words stay.", history).startswith("Here's a revised one:")  # not the same
    assert said("Note: the words stay.", history).startswith("Note:")
    fresh = SYSTEM + [{"role": "user", "content": "fix this line"}]  # the first time, a lead-in is said
    assert said("Here's a revised version: You may share it.", fresh).startswith("Here's a revised version:")


def test_the_reply_ends_where_the_model_writes_the_next_speakers_turn():
    """Small models go on to write the chat's next line themselves; that is not the character speaking."""
    assert said("Thank you, Bo! I'm so glad you're here!\nBo: **.").strip() == "Thank you, Bo! I'm so glad you're here!"
    assert said("Sure thing.\nUser: and what about Monday?\nAssistant: Closed.").strip() == "Sure thing."
    assert said("User: I am so sorry for the misunderstanding.").strip() == ""
    assert said("Note: the shop opens at ten.").strip() == "Note: the shop opens at ten."
    assert said("We open at 10:30 on Sundays.").strip() == "We open at 10:30 on Sundays."
    assert said("Two things.\nFirst, the mugs are stoneware.").strip() == "Two things.\nFirst, the mugs are stoneware."
