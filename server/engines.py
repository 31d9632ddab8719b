"""The engines of a process, loaded once and shared by every session."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from livehost.persona.llm import LLM
from livehost.persona.retrieval import open_stores, sync_character_knowledge
from livehost.persona.character import BUILTIN_DIR, CharacterError, CharacterLibrary
from livehost.server.config import ConfigError, Settings
from livehost.speech.asr import ASR
from livehost.speech.tts import TTS
from livehost.speech.vad import VAD

log = logging.getLogger("livehost.engines")


@dataclass
class Engines:
    vad: Any
    asr: Any
    llm: Any
    tts: Any
    characters: Any = None
    memory: Any = None
    knowledge: Any = None
    turn: Any = None  # the end-of-turn model (semantic_vad); None where it could not be had

    @classmethod
    def load(cls, settings: Settings, progress: bool = True) -> "Engines":
        s = settings
        if s.memory.enabled and s.storage.url:  # unreachable shared storage stops the start before minutes of models
            from livehost.persona.store_postgres import PostgresDatabase
            PostgresDatabase(s.storage.url, "memory").close()
        llm_options: dict[str, Any] = {"model": s.llm.model}
        if s.llm.engine == "llama-cpp":
            llm_options.update(context_tokens=s.llm.context_tokens, threads=s.llm.threads,
                               cache_dir=str(s.model_cache()))  # where split bundled models are joined
        else:
            llm_options.update(base_url=s.llm.base_url, api_key=s.llm.api_key, timeout_s=s.llm.timeout_s)
        steps = [
            ("vad", f"VAD {s.vad.engine}", lambda: VAD.shared(s.vad.engine)),
            ("asr", f"ASR {s.asr.engine} {s.asr.model}", lambda: ASR.shared(
                s.asr.engine, model=s.asr.model, device=s.asr.device, compute_type=s.asr.compute_type,
                cpu_threads=s.asr.cpu_threads, beam_size=s.asr.beam_size, cache_dir=s.model_cache(),
                short_window=s.asr.short_window)),
            ("llm", f"LLM {s.llm.engine} {s.llm.model or '(auto: bundled SmolLM2-135M, Qwen2.5-0.5B for Chinese)'}",
             lambda: LLM.shared(s.llm.engine, **llm_options)),
            ("tts", f"TTS {s.tts.engine} {s.tts.voice or '(bundled voice)'}",
             lambda: TTS.shared(s.tts.engine, voice=s.tts.voice, speed=s.tts.speed)),
        ]
        loaded: dict[str, Any] = {}
        bar = tqdm(steps, desc="loading models", unit="model", disable=not progress)
        for key, label, load in bar:
            bar.set_postfix_str(label)
            started = time.perf_counter()
            engine = load()
            if hasattr(engine, "warmup"):
                engine.warmup()  # so the first user does not pay for lazy initialisation
            loaded[key] = engine
            log.info("%s ready in %.1f s", label, time.perf_counter() - started)
        loaded["turn"] = load_turn_model(s)
        loaded["characters"] = characters = load_characters(s)
        if hasattr(loaded["asr"], "prepare"):  # asr.model auto: the ears the server's own characters need, now
            for name in {s.persona.character, s.stream.character or s.persona.character}:
                loaded["asr"].prepare(s.asr.language_for(characters.get(name)))
        if s.memory.enabled:
            started = time.perf_counter()
            languages = sorted({lang for c in characters.list() for lang in c.languages})
            loaded["memory"], loaded["knowledge"] = open_stores(Path(s.data_dir), s.memory.embeddings, languages,
                                                                s.storage.url, s.storage.max_queued_writes)
            for character in characters.list():
                if character.knowledge.sources:
                    sync_character_knowledge(loaded["knowledge"], character)
            log.info("memory and knowledge ready in %.1f s (%s)", time.perf_counter() - started,
                     loaded["memory"].db.where)
        return cls(**loaded)

    def close(self) -> None:
        for store in (self.memory, self.knowledge):
            if store is not None:
                store.close()


def load_turn_model(settings: Settings) -> Any:
    """Smart Turn for semantic_vad. Where it is the default, a missing or corrupt model stops the start (the error
    says how to get it); otherwise the server starts without it and semantic_vad is refused with that reason."""
    from livehost.speech.smart_turn import SmartTurn, TurnModelError
    started = time.perf_counter()
    try:
        model = SmartTurn(settings.vad.turn_model, settings.model_cache())
        model.warmup()
    except TurnModelError as exc:
        if settings.vad.turn_detection == "semantic_vad":
            raise
        log.warning("semantic_vad is not available: %s", exc)
        return None
    log.info("end-of-turn model Smart Turn v3.2 ready in %.1f s (%s)", time.perf_counter() - started, model.model_path)
    return model


def load_characters(settings: Settings) -> CharacterLibrary:
    """The shipped cards plus the user's own folders (theirs win on the same id)."""
    p = settings.persona
    try:
        library = CharacterLibrary([BUILTIN_DIR, *p.character_dirs], hot_reload=p.hot_reload)
        library.get(p.character)
    except (CharacterError, KeyError) as exc:
        raise ConfigError(f"persona: {str(exc).strip(chr(39))}") from None
    return library
