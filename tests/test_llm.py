"""LLM engines against real models: the embedded llama.cpp engine and a real OpenAI-compatible server process."""
from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from livehost.persona.llm import LLM, LLMError, LlamaCppLLM, OpenAICompatibleLLM, bundled_gguf

CHAT = [{"role": "system", "content": "You are a helpful assistant. Answer in one short sentence."},
        {"role": "user", "content": "What is the capital of France?"}]


async def collect(stream) -> list[str]:
    return [d async for d in stream]


def generating_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "llama-cpp-generate" and t.is_alive())


# ---------------------------------------------------------------- embedded llama.cpp


@pytest.fixture(scope="module")
def llama() -> LlamaCppLLM:
    engine = LLM.shared("llama-cpp")  # the process-wide instance: the model loads once
    engine.warmup()
    return engine


@pytest.mark.e2e
async def test_embedded_streams_english(llama):
    deltas = await collect(llama.stream(CHAT, max_tokens=24, temperature=0.0))
    text = "".join(deltas)
    assert len(deltas) >= 3 and all(deltas)
    assert len(text.split()) >= 3
    letters = [c for c in text if c.isalpha()]
    assert letters and sum(c.isascii() for c in letters) / len(letters) > 0.95
    assert "paris" in text.lower()


@pytest.mark.e2e
async def test_embedded_aclose_stops_worker_and_releases_lock(llama):
    stream = llama.stream([{"role": "user", "content": "Tell me a long story about a dragon."}],
                          max_tokens=300, temperature=0.7)
    got = []
    async for delta in stream:
        got.append(delta)
        if len(got) == 2:
            break
    t0 = time.monotonic()
    await stream.aclose()
    while generating_threads() and time.monotonic() - t0 < 2:
        await asyncio.sleep(0.01)
    assert time.monotonic() - t0 < 0.5
    assert generating_threads() == 0 and not llama._lock.locked()
    # the lock was released: the next request runs
    assert "".join(await collect(llama.stream(CHAT, max_tokens=8, temperature=0.0))).strip()


@pytest.mark.e2e
async def test_embedded_task_cancel_stops_worker(llama):
    first = asyncio.Event()

    async def consume():
        async for _ in llama.stream([{"role": "user", "content": "Count from one to one hundred."}],
                                    max_tokens=300, temperature=0.0):
            first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), 30)
    t0 = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    while generating_threads() and time.monotonic() - t0 < 2:
        await asyncio.sleep(0.01)
    assert time.monotonic() - t0 < 0.5 and not llama._lock.locked()


@pytest.mark.e2e
async def test_embedded_concurrent_requests_both_complete(llama):
    a, b = await asyncio.gather(
        collect(llama.stream(CHAT, max_tokens=12, temperature=0.0)),
        collect(llama.stream([{"role": "user", "content": "Name a color."}], max_tokens=12, temperature=0.0)))
    assert "".join(a).strip() and "".join(b).strip()


async def ttft(engine, messages) -> tuple[float, str]:
    t0 = time.perf_counter()
    stream = engine.stream(messages, max_tokens=16, temperature=0.0)
    first = await stream.__anext__()
    elapsed = time.perf_counter() - t0
    rest = "".join([d async for d in stream])
    return elapsed, first + rest


@pytest.mark.e2e
async def test_embedded_reuses_prompt_prefix_across_turns(llama):
    # A long system prompt never seen before (the nonce defeats any earlier cache), then a second turn.
    system = f"Session {uuid.uuid4().hex}. " + " ".join(
        f"Rule {i}: be kind, be brief and speak plainly to the guest." for i in range(24))
    turn1 = [{"role": "system", "content": system}, {"role": "user", "content": "Hello, who are you?"}]
    prompt_tokens_evaluated(llama)  # counting starts here
    cold, reply = await ttft(llama, turn1)
    cold_eval = prompt_tokens_evaluated(llama)
    turn2 = turn1 + [{"role": "assistant", "content": reply}, {"role": "user", "content": "Nice. What can you do?"}]
    warm, _ = await ttft(llama, turn2)
    warm_eval = prompt_tokens_evaluated(llama)
    assert len(llama._llama.tokenize(system.encode())) > 300
    # Counted, not timed (a busy machine made the timing flaky): the second turn reads only its new words.
    assert cold_eval > 300 and warm_eval < cold_eval / 4, (cold_eval, warm_eval, cold, warm)


def prompt_tokens_evaluated(engine) -> int:
    """Prompt tokens llama.cpp evaluated since the last call (its own performance counters), then reset them."""
    import llama_cpp

    ctx = engine._llama._ctx.ctx
    n = llama_cpp.llama_perf_context(ctx).n_p_eval
    llama_cpp.llama_perf_context_reset(ctx)
    return n


def test_missing_model_file_is_a_clear_error():
    with pytest.raises(LLMError, match="not found"):
        LlamaCppLLM(model="/nonexistent/model.gguf")


# ---------------------------------------------------------------- OpenAI-compatible HTTP server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    port = free_port()
    logfile = tmp_path_factory.mktemp("llama_server") / "server.log"
    # output to a file: a pipe nobody reads fills up and blocks the server
    with open(logfile, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(bundled_gguf()),
                                 "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--verbose", "False"],
                                stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(f"{url}/models", timeout=1).is_success:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"llama_cpp.server did not start: {logfile.read_text(errors='replace')[-2000:]}")
        time.sleep(0.2)
    yield proc, url
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.mark.e2e
async def test_http_streams_deltas(llama_server):
    _, url = llama_server
    engine = OpenAICompatibleLLM(base_url=url)
    deltas = await collect(engine.stream(CHAT, max_tokens=24, temperature=0.0))
    assert engine.model and engine.model != "default"  # learned from GET /models
    assert len(deltas) >= 2 and "".join(deltas).strip()
    # stopping early closes the request; the server is then free for the next one
    stream = engine.stream([{"role": "user", "content": "Tell me a long story."}], max_tokens=400, temperature=0.7)
    async for _ in stream:
        break
    await stream.aclose()
    t0 = time.monotonic()
    assert "".join(await collect(engine.stream(CHAT, max_tokens=8, temperature=0.0))).strip()
    assert time.monotonic() - t0 < 5
    await engine.aclose()


async def test_http_stopped_server_is_not_reachable(llama_server):
    proc, url = llama_server
    proc.terminate()
    proc.wait(10)
    engine = OpenAICompatibleLLM(base_url=url, model="any")
    with pytest.raises(LLMError, match="not reachable"):
        await collect(engine.stream(CHAT, max_tokens=8, temperature=0.0))


async def silent_server(handler):
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"


async def test_http_silent_server_times_out():
    async def read_and_stay_silent(reader, writer):
        while await reader.read(4096):
            pass
        writer.close()

    server, url = await silent_server(read_and_stay_silent)
    engine = OpenAICompatibleLLM(base_url=url, timeout_s=1)
    t0 = time.monotonic()
    with pytest.raises(LLMError, match="timed out"):
        await collect(engine.stream(CHAT, max_tokens=8, temperature=0.0))
    assert time.monotonic() - t0 < 3
    await engine.aclose()
    server.close()


async def test_http_error_status_is_reported():
    async def not_found(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        body = b'{"error": "no such route"}'
        writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: "
                     + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
        await writer.drain()
        writer.close()

    server, url = await silent_server(not_found)
    engine = OpenAICompatibleLLM(base_url=url, model="any", timeout_s=5)
    with pytest.raises(LLMError, match="answered 404: .*no such route"):
        await collect(engine.stream(CHAT, max_tokens=8, temperature=0.0))
    await engine.aclose()
    server.close()


# ---------------------------------------------------------------- bundled models by one word


def test_bundled_model_words_and_the_joined_qwen_file(tmp_path):
    from livehost.persona import model_files
    assert model_files.resolve(None) == model_files.resolve("smollm2-135m") == bundled_gguf()
    assert model_files.resolve("/some/model.gguf") == Path("/some/model.gguf")
    joined = model_files.resolve("qwen2.5-0.5b", tmp_path)  # joined from the six packages into this cache
    parts = [model_files._package_dir(m) / "data" / n for m, n in model_files._QWEN_PARTS]
    assert joined.parent == tmp_path and joined.stat().st_size == sum(p.stat().st_size for p in parts)
    assert joined.read_bytes()[:4] == b"GGUF"
    stamp = joined.stat().st_mtime_ns
    assert model_files.resolve("qwen2.5-0.5b", tmp_path) == joined and joined.stat().st_mtime_ns == stamp  # once


def test_auto_sends_chinese_turns_and_chinese_characters_to_the_chinese_model():
    from livehost.persona.llm import ByLanguageLLM

    class Named:
        def __init__(self, name):
            self.name = name
    auto = ByLanguageLLM(Named("small"), Named("qwen"))
    english = [{"role": "system", "content": "You are Sol."}, {"role": "user", "content": "Hi there"}]
    assert auto.pick(english).name == "small"
    assert auto.pick(english[:1] + [{"role": "user", "content": "你好"}]).name == "qwen"
    assert auto.pick([{"role": "system", "content": "You are 糯米. 虚拟主播"}, {"role": "user", "content": "hi"}]).name \
        == "qwen"


async def test_the_generating_thread_waits_for_a_reader_that_is_busy():
    """While the reader synthesizes speech (it reads nothing), llama.cpp stops a few tokens ahead instead of
    taking the cores; every token still arrives, in order. A double stands in for the model."""
    from livehost.persona.llm import AHEAD_TOKENS

    made = []

    class Model:
        def create_chat_completion(self, messages, max_tokens, **kw):
            for i in range(max_tokens):
                made.append(i)
                yield {"choices": [{"delta": {"content": f"w{i} "}}]}

    engine = LlamaCppLLM.__new__(LlamaCppLLM)
    engine._llama, engine._lock, engine.name = Model(), threading.Lock(), "double"
    stream = engine._stream(CHAT, 40, 0.0)
    got = [await stream.__anext__()]
    await asyncio.sleep(0.3)  # busy elsewhere
    assert len(made) <= 1 + AHEAD_TOKENS + 1, len(made)  # the one read, those ahead, one made and waiting to be put
    got += [t async for t in stream]
    assert got == [f"w{i} " for i in range(40)] and len(made) == 40
    assert generating_threads() == 0 and not engine._lock.locked()


def test_a_reply_that_said_nothing_is_asked_again_in_the_users_language():
    """A reply dropped whole (here: it parrots the user) is asked for once more; a Chinese turn is told in Chinese."""
    from livehost.persona.llm import RETRY_NOTE, RETRY_NOTE_ZH, cleaned

    asked: list[list[dict]] = []

    async def raw(max_tokens, messages):
        asked.append(list(messages))
        yield messages[-1]["content"] if len(asked) == 1 else "好的，我们来聊聊。"

    async def reply(user: str) -> str:
        asked.clear()
        return "".join([t async for t in cleaned(raw, [{"role": "user", "content": user}], 40)])

    assert asyncio.run(reply("今天我们来聊一聊最新的游戏")) == "好的，我们来聊聊。"
    assert len(asked) == 2 and asked[1][-1] == {"role": "system", "content": RETRY_NOTE_ZH}
    asyncio.run(reply("Today we talk about the newest games"))
    assert asked[1][-1] == {"role": "system", "content": RETRY_NOTE}
