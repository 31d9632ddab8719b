import pytest

from livehost.speech.chunker import SentenceChunker, speakable, speakable_chunks


def chunk(text: str, **kw) -> list[str]:
    c = SentenceChunker(**kw)
    return c.push(text) + c.flush()


def chunk_by_chars(text: str, **kw) -> list[str]:
    c = SentenceChunker(**kw)
    out = [x for ch in text for x in c.push(ch)]
    return out + c.flush()


def test_english_sentences():
    assert chunk("Hello there. How are you today? I am great! Thanks.") == [
        "Hello there.", "How are you today?", "I am great!", "Thanks."]


def test_sentence_end_waits_for_the_next_token():
    c = SentenceChunker()
    assert c.push("It costs about 3.") == []  # could be 3.14
    assert c.push("14 dollars. And") == ["It costs about 3.14 dollars."]
    assert c.flush() == ["And"]


@pytest.mark.parametrize("text", [
    "I saw Dr. Smith and Mrs. Jones at the U.S. embassy yesterday.",
    "Bring fruit, e.g. apples, i.e. the red ones, at 9 a.m. sharp please.",
    "He met John F. Kennedy in person and vs. all odds won.",
])
def test_abbreviations_and_initials_do_not_split(text):
    assert chunk(text, first_min_chars=1000) == [text]


def test_a_long_first_sentence_starts_after_a_few_words():
    text = "The story of a dragon who learned to bake bread is a tale of magic. It ends well."
    assert chunk(text, first_max_words=7) == ["The story of a dragon who learned", "to bake bread is a tale of magic.",
                                              "It ends well."]
    assert chunk(text, first_max_words=0)[0] == "The story of a dragon who learned to bake bread is a tale of magic."


def test_numbers_do_not_split():
    text = "Pi is 3.14 and the bill came to $1,000.50 in total. Wow."
    assert chunk(text, first_min_chars=1000) == ["Pi is 3.14 and the bill came to $1,000.50 in total.", "Wow."]


def test_first_chunk_splits_early_at_a_clause():
    text = "Well, as I was saying earlier, the weather today is lovely, and tomorrow too. Then, we go out, ok."
    assert chunk(text) == [
        "Well, as I was saying earlier,",  # "Well," is shorter than first_min_chars
        "the weather today is lovely, and tomorrow too.",  # no clause splits after the first chunk
        "Then, we go out, ok."]


def test_no_clause_split_below_first_min_chars():
    assert chunk("Yes, sure, ok, fine.", first_min_chars=16) == ["Yes, sure, ok, fine."]
    assert chunk("Yes, sure, ok, fine.", first_min_chars=14) == ["Yes, sure, ok,", "fine."]


def test_chinese_splits_immediately():
    c = SentenceChunker()
    assert c.push("你好。今天天气") == ["你好。"]  # no space or next token needed
    assert c.push("很好！") == ["今天天气很好！"]
    assert c.flush() == []


def test_chinese_first_clause():
    assert chunk("我们今天下午一起去公园散步吧，然后去吃饭。好吗？") == [
        "我们今天下午一起去公园散步吧，", "然后去吃饭。", "好吗？"]
    # a Chinese comma ends the first chunk from the second Chinese character on (the voice says each clause
    # alone anyway): heard sooner; an English clause still waits for first_min_chars
    assert chunk("好的，我知道了。") == ["好的，", "我知道了。"]
    assert chunk_by_chars("哦，你好呀，今天吃了吗？") == ["哦，你好呀，", "今天吃了吗？"]
    assert chunk("[happy] 哦，好的。") == ["[happy] 哦，好的。"]  # a tag's letters are no words
    assert chunk("好的，我知道了，谢谢。") == ["好的，", "我知道了，谢谢。"]  # the first chunk only
    assert chunk("Yes, sure.") == ["Yes, sure."]


def test_mixed_english_and_chinese():
    assert chunk("I love Python.我也是！Really? 真的吗？") == ["I love Python.", "我也是！", "Really?", "真的吗？"]


def test_closing_quotes_stay_with_their_sentence():
    assert chunk('He said "stop." Then he left.') == ['He said "stop."', "Then he left."]
    assert chunk("他说：“你好。”然后走了。") == ["他说：“你好。", "然后走了。"]


def test_newlines_split_and_empty_chunks_drop():
    assert chunk("Here is the list:\n\n1. First item\n2. Second item\n---\n") == [
        "Here is the list:", "1. First item", "2. Second item"]


def test_max_chars_force_split():
    words = " ".join(f"word{k}" for k in range(60))  # about 400 chars, no punctuation
    out = chunk(words, max_chars=100)
    assert len(out) > 3 and all(len(c) <= 100 for c in out)
    assert " ".join(out) == words  # cut between words, nothing lost
    assert chunk("字" * 250, max_chars=100) == ["字" * 100, "字" * 100, "字" * 50]


def test_force_split_prefers_a_clause():
    text = "a" * 40 + ", " + "b " * 40 + "end."
    out = chunk(text, max_chars=60, first_min_chars=1000)
    assert out[0] == "a" * 40 + ","


TEXT = ("Hello Dr. Smith, how are you today? I paid $1,000.50 for it... Really?! 你好。今天天气很好！"
        "我们去公园吧，好吗？ The U.S. economy grew at 9 a.m. today.\n1. First **item.** Done 🎉 ok. "
        + " ".join(["long"] * 80) + ". End")


@pytest.mark.parametrize("max_chars", [220, 50])
def test_token_by_token_equals_one_push(max_chars):
    expected = chunk(TEXT, max_chars=max_chars)
    assert len(expected) > 8
    assert chunk_by_chars(TEXT, max_chars=max_chars) == expected
    tokens = [TEXT[i:i + 3] for i in range(0, len(TEXT), 3)]
    c = SentenceChunker(max_chars=max_chars)
    assert [x for t in tokens for x in c.push(t)] + c.flush() == expected


def test_speakable_strips_markdown_and_emoji():
    assert speakable("## **Bold** and _italic_ with `code` 🎉🚀 ok ✅  now") == "Bold and italic with code ok now"
    assert speakable("see https://example.com/a_b#c*d now") == "see https://example.com/a_b#c*d now"
    assert speakable("家人👨‍👩‍👧好") == "家人好"


def test_markdown_and_emoji_only_chunks_are_dropped():
    assert chunk("**Great news!** 🎉🎉\n---\nWe *won*.") == ["Great news!", "We won."]


def test_flush_resets_for_the_next_reply():
    c = SentenceChunker()
    c.push("First reply, which is long enough")
    c.flush()
    assert c.push("Second, reply here, longer") == ["Second, reply here,"]  # early split again


async def test_speakable_chunks_adapter():
    async def tokens():
        for t in ["Hello", " there", ".", " **How**", " are you", "?"]:
            yield t

    assert [c async for c in speakable_chunks(tokens())] == ["Hello there.", "How are you?"]
