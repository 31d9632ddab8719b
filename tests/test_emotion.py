import pytest

from livehost.persona.emotion import EMOTIONS, PROSODY, EmotionTagger, classify, prosody_for, to_emotion
from livehost.speech.chunker import SentenceChunker
from livehost.speech.tts import Prosody


@pytest.mark.parametrize("chunk,emotion,text", [
    ("[happy] Hello there!", "happy", "Hello there!"),
    ("(sad) I will miss you.", "sad", "I will miss you."),
    ("*excited* The show starts now.", "excited", "The show starts now."),
    ("<surprised> Oh, a new viewer.", "surprised", "Oh, a new viewer."),
    ("[Thinking] Let me look.", "thinking", "Let me look."),
    ("[very calm] Breathe in.", "calm", "Breathe in."),
    ("It is done [angry].", "angry", "It is done."),
    ("【开心】你好呀！", "happy", "你好呀！"),
    ("【难过】我明白。", "sad", "我明白。"),
    ("【伤心】真可惜。", "sad", "真可惜。"),
    ("【生气】不行。", "angry", "不行。"),
    ("【惊讶】真的吗？", "surprised", "真的吗？"),
    ("【思考】我看看。", "thinking", "我看看。"),
    ("【兴奋】开始吧！", "excited", "开始吧！"),
    ("【平静】慢慢说。", "calm", "慢慢说。"),
    ("（开心）欢迎！", "happy", "欢迎！"),
    ("happy Hello again.", "happy", "Hello again."),  # '*happy*' after speakable() removed the stars
])
def test_tags_are_removed_and_mapped(chunk, emotion, text):
    assert EmotionTagger().feed(chunk) == (emotion, text)


def test_unknown_and_citation_tags_are_removed_but_kept_aside():
    t = EmotionTagger()
    emotion, text = t.feed("[smug] Our store opens at ten [faq:1]. <break> Really.")
    assert text == "Our store opens at ten. Really." and emotion == "neutral"
    assert t.other_tags == ["smug", "faq:1", "break"]


def test_parentheses_that_are_text_stay():
    t = EmotionTagger()
    assert t.feed("Bring a mug (or two) along.")[1] == "Bring a mug (or two) along."
    assert t.feed("(laughs) That was funny.")[1] == "That was funny."  # a stage direction is not spoken
    assert t.feed("sorry I missed it.")[1] == "sorry I missed it."  # a bare word that is not an emotion name


def test_tag_split_across_chunks():
    t = EmotionTagger()
    assert t.feed("Right, [hap") == ("neutral", "Right,")
    assert t.feed("py] See you soon.") == ("happy", "See you soon.")
    # The chunker drops a lone ']' at the start of a chunk: the carried tag is closed anyway.
    assert t.feed("Well, [sad") == ("happy", "Well,")
    assert t.feed("That is a shame.") == ("sad", "That is a shame.")
    assert t.feed("Then 【兴") == ("sad", "Then")
    assert t.feed("奋】 Go!") == ("excited", "Go!")
    t.feed("Bye [calm")
    assert t.flush() == ("excited", "")  # never closed: dropped, not spoken


def test_with_the_real_chunker_no_tag_is_ever_spoken():
    reply = ("[happy] Welcome back to the stream, everyone! [thinking] Hmm, what should we play tonight? "
             "[sad] Sorry, the quiz is cancelled. 【开心】不过我们可以聊天！ [excited] Let's go!")
    chunker, tagger, out = SentenceChunker(), EmotionTagger(), []
    for i in range(0, len(reply), 3):  # three-character tokens cut tags anywhere
        out += [tagger.feed(c) for c in chunker.push(reply[i:i + 3])]
    out += [tagger.feed(c) for c in chunker.flush()]
    spoken = " ".join(text for _, text in out)
    assert not any(ch in spoken for ch in "[]【】")
    assert [e for e, text in out if text] == ["happy", "happy", "thinking", "sad", "happy", "excited"]


def test_tokens_in_text_mode():
    t = EmotionTagger()
    tokens = ["[", "ha", "ppy", "]", " Hello", " there", ".", " [s", "ad]", " Bye", " *calm*", " now"]
    out = [t.feed_token(tok) for tok in tokens]
    assert "".join(text for _, text in out) == "Hello there. Bye now"
    assert [e for e, text in out if text.strip()] == ["happy", "happy", "happy", "sad", "calm"]


@pytest.mark.parametrize("text,emotion", [
    ("Thank you so much, that is wonderful!", "happy"),
    ("This is amazing!! I can't wait!", "excited"),
    ("Sorry, that item is out of stock.", "sad"),
    ("Unfortunately we are closed today.", "sad"),
    ("Hmm, let me think... which one was it?", "thinking"),
    ("Wow, I did not expect that.", "surprised"),
    ("Take your time, there is no rush.", "calm"),
    ("对不起，我没听清。", "sad"),
    ("太好了！", "happy"),
    ("The store opens at ten.", None),
])
def test_fallback_classifier(text, emotion):
    assert classify(text) == emotion


def test_untagged_chunks_keep_the_previous_emotion():
    t = EmotionTagger()
    assert t.feed("The store opens at ten.")[0] == "neutral"
    assert t.feed("[surprised] A new record.")[0] == "surprised"
    assert t.feed("It has ten items.")[0] == "surprised"
    assert t.feed("Unfortunately one is broken.")[0] == "sad"


def test_emotions_outside_the_card_map_to_the_nearest_allowed():
    t = EmotionTagger(allowed=["neutral", "happy", "sad"])
    assert t.feed("[excited] Go!")[0] == "happy"
    assert t.feed("[surprised] Oh.")[0] == "happy"
    assert t.feed("[calm] Easy.")[0] == "neutral"
    assert t.feed("[angry] No.")[0] == "sad"
    assert to_emotion("非常开心") == "happy" and to_emotion("bored") is None


def test_prosody_differs_per_emotion():
    values = {e: (PROSODY[e].rate, PROSODY[e].pitch, PROSODY[e].energy) for e in EMOTIONS}
    assert len(set(values.values())) == len(EMOTIONS)
    assert values["neutral"] == (1.0, 1.0, 1.0)
    assert PROSODY["excited"].rate > PROSODY["happy"].rate > 1 > PROSODY["calm"].rate
    assert PROSODY["sad"].rate < 1 and PROSODY["sad"].energy < 1
    assert PROSODY["angry"].energy > 1.15


def test_prosody_for_shades_the_base():
    base = Prosody(rate=1.2, pitch=1.0, energy=0.5)
    p = prosody_for("sad", base)
    assert p.rate == pytest.approx(1.2 * PROSODY["sad"].rate) and p.energy == pytest.approx(0.5 * PROSODY["sad"].energy)
    assert base.rate == 1.2  # not modified
    assert prosody_for("nonsense", base) == base and prosody_for("neutral") == Prosody()
