"""Engine registries: every engine kind (asr, tts, llm, embeddings, avatar, ...) picks its implementation by name
from config; and the folder where engines keep the models they prepare.

Heavy engines are built once per process by `shared()` and reused by every session. This module lives in speech/,
the bottom layer (it imports nothing of livehost), so that speech/, persona/ and avatar/ register their engines
without importing livehost.server: layers point one way, server -> persona/avatar -> speech.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Callable, Generic, TypeVar

T = TypeVar("T")


class UnknownEngine(ValueError):
    pass


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}
        self._shared: dict[tuple, T] = {}
        self._lock = threading.Lock()

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def add(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories:
                raise ValueError(f"{self.kind} engine {name!r} is registered twice")
            self._factories[name] = factory
            return factory
        return add

    def names(self) -> list[str]:
        return sorted(self._factories)

    def create(self, name: str, **options: Any) -> T:
        try:
            factory = self._factories[name]
        except KeyError:
            raise UnknownEngine(
                f"unknown {self.kind} engine {name!r}; choose one of: {', '.join(self.names())}") from None
        return factory(**options)

    def shared(self, name: str, **options: Any) -> T:
        """The process-wide instance for this name and options, built on first use."""
        key = (name, tuple(sorted((k, repr(v)) for k, v in options.items())))
        with self._lock:  # one load even if two sessions ask at once
            if key not in self._shared:
                self._shared[key] = self.create(name, **options)
            return self._shared[key]

    def clear(self) -> None:
        with self._lock:
            self._shared.clear()


def model_cache_dir() -> Path:
    """Where prepared models live unless `cache_dir` is set: $XDG_CACHE_HOME/livehost, else ~/.cache/livehost."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "livehost"
