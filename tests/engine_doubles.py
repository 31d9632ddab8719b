"""Test doubles for the engines (tests only): a session or a stream host runs its real decision code on them in
milliseconds. Speech is a short tone per word, so "played" and "cut" can be checked exactly."""
from __future__ import annotations

import asyncio
import json
import re
import threading
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from livehost.persona.character import BUILTIN_DIR, CharacterLibrary
from livehost.speech.tts import SpeechChunk

WORD_MS = 20  # the double voice says a word in 20 ms


class WordsLLM:
    """Writes the given text, a word per token. `gate`, when given, must be set before the first word."""

    def __init__(self, text: str = "Hello there. This is a short reply.", gate: Optional[asyncio.Event] = None):
        self.text, self.gate, self.calls = text, gate, 0

    async def stream(self, messages, *, max_tokens, temperature):
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        for token in re.findall(r"\S+\s*", self.text)[:max_tokens]:
            await asyncio.sleep(0)
            yield token


class ToneTTS:
    """Speaks WORD_MS of a tone per word, at 24 kHz, without phoneme timings."""
    rate = 24000

    def synthesize(self, text: str, prosody=None) -> list[SpeechChunk]:
        n = max(1, len(text.split())) * self.rate * WORD_MS // 1000
        tone = (np.sin(np.arange(n) * 2 * np.pi * 220 / self.rate) * 8000).astype(np.int16)
        return [SpeechChunk(tone, self.rate, text)]


class SilentVAD:
    """Never hears speech; the tests drive the listener's events themselves."""

    def stream(self):
        return self

    def reset(self) -> None:
        pass

    def probability(self, frame) -> float:
        return 0.0


class FixedASR:
    def __init__(self, text: str = "hello"):
        self.text = text

    def transcribe(self, audio, language=None):
        from livehost.speech.asr import Transcript
        return Transcript(self.text, language, len(audio) / 16000)


class SlowMemory:
    """A long-term memory store whose look-ups wait until `release` is set (a slow disk or embedding model)."""

    def __init__(self):
        self.release = threading.Event()
        self.entered = threading.Event()
        self.added: list[tuple[str, str]] = []

    def core(self, user, n=2):
        self.entered.set()
        self.release.wait(10)
        return []

    def search(self, user, text, k=3):
        return []

    def count(self, user) -> int:
        return 0

    def add(self, user, text, **kw):
        self.added.append((user, text))


@dataclass
class DoubleEngines:
    vad: Any
    asr: Any
    llm: Any
    tts: Any
    characters: Any = None
    memory: Any = None
    knowledge: Any = None


_CHARACTERS: Optional[CharacterLibrary] = None


def engines(llm: Any = None, memory: Any = None) -> DoubleEngines:
    global _CHARACTERS
    _CHARACTERS = _CHARACTERS or CharacterLibrary([BUILTIN_DIR])
    return DoubleEngines(SilentVAD(), FixedASR(), llm or WordsLLM(), ToneTTS(), _CHARACTERS, memory)


class GatedPlan:
    """Wraps a dialogue's `plan` so that planning waits until `release()`: a reply caught while it plans."""

    def __init__(self, dialogue: Any):
        self._plan, self.entered, self.gate = dialogue.plan, asyncio.Event(), asyncio.Event()
        dialogue.plan = self

    async def __call__(self, *args, **kwargs):
        self.entered.set()
        await self.gate.wait()
        return await self._plan(*args, **kwargs)

    def release(self) -> None:
        self.gate.set()


async def send(session: Any, **event: Any) -> None:
    await session.handle(json.dumps(event))


async def events_until(session: Any, kind: str, timeout: float = 5.0, seen: Optional[list] = None) -> list[dict]:
    """Events from the session's outbox up to and including the first of `kind`."""
    out = seen if seen is not None else []

    async def read():
        while True:
            event = await session.outbox.get()
            out.append(event)
            if event["type"] == kind:
                return out
    return await asyncio.wait_for(read(), timeout)


def drain(session: Any) -> list[dict]:
    out = []
    while not session.outbox.empty():
        out.append(session.outbox.get_nowait())
    return out


def user_text(text: str) -> dict:
    return {"type": "conversation.item.create",
            "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}}
