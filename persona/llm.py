"""LLM engines: stream a chat reply as text deltas.

Two engines share one interface (`stream`, `warmup`, `name`):
- "llama-cpp": a GGUF model embedded in this process (default: the bundled SmolLM2-135M-Instruct).
- "openai": any OpenAI-compatible chat-completions server (vLLM, Ollama, llama.cpp server, ...).
Stopping the iteration (aclose) or cancelling the consuming task stops generation: a voice host is interrupted often.
"""
from __future__ import annotations

import asyncio
import copy
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any, AsyncIterator, Protocol

import httpx

from livehost.persona import model_files
from livehost.persona.embeddings import has_cjk
from livehost.persona.reply_filter import EXTRA_TOKENS, clean_reply, norm
from livehost.speech.registry import Registry

log = logging.getLogger(__name__)

LLM: Registry["ChatLLM"] = Registry("llm")

BUNDLED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
REPEAT_PENALTY = 1.1  # llama.cpp's default is 1.0 (none): the small models loop ("I'm sorry." eight times)
# The generating thread stays at most this many tokens ahead of its reader. While a reply's first words are being
# synthesized nobody reads, so the LLM waits instead of taking half the cores from the TTS (measured on 2 cores: the
# first chunk's synthesis took 1.5-2.5x as long beside a running LLM); a few tokens ahead, the next chunk is not late.
AHEAD_TOKENS = 6


class LLMError(RuntimeError):
    """A failure the user can act on; the message says what happened and what to change."""


class ChatLLM(Protocol):
    name: str

    def stream(self, messages: list[dict], *, max_tokens: int, temperature: float) -> AsyncIterator[str]: ...

    def warmup(self) -> None: ...


def bundled_gguf() -> Path:
    try:
        return model_files.smollm2_file()
    except model_files.ModelFileError as e:
        raise LLMError(f"{e}, or set llm.model to a .gguf file") from None


async def cleaned(raw, messages: list[dict], max_tokens: int) -> AsyncIterator[str]:
    """Every engine's output goes through the reply filter (whole sentences, no repeats, no prompt echo).
    raw(max_tokens, messages) is the engine's own stream. A reply that says nothing (the small models sometimes
    write an emotion tag and stop) is asked for once more, told to use words. A one-token warm-up of the prompt
    cache is passed through as it is."""
    if max_tokens <= 4:
        async for token in raw(max_tokens, messages):
            yield token
        return
    for attempt in range(2):
        said = False
        async for text in clean_reply(raw(max_tokens + EXTRA_TOKENS, messages), messages, max_tokens,
                                      use_fallback=attempt == 1):
            said = said or bool(norm(text))
            yield text
        if said:
            return
        log.info("the LLM wrote nothing to say (only tags or nothing); asking once more")
        messages = with_note(messages, RETRY_NOTE_ZH if _speaks_cjk(messages) else RETRY_NOTE)


RETRY_NOTE = "Reply in words: one or two short sentences."
RETRY_NOTE_ZH = "用自己的话回答，不要重复对方的话，一两句话。"  # a Chinese reply is mostly dropped for parroting the user


def _speaks_cjk(messages: list[dict]) -> bool:
    last = next((str(m.get("content") or "") for m in reversed(messages) if m.get("role") == "user"), "")
    return has_cjk(last)
_DONE = object()  # end-of-stream marker put on the queue by the worker


def with_note(messages: list[dict], note: str) -> list[dict]:
    """The messages plus a last system note, keeping what a Prompt carries (facts, fallback, avoid)."""
    out = copy.copy(messages)  # a Prompt stays a Prompt
    out.append({"role": "system", "content": note})
    return out


@LLM.register("llama-cpp")
def llama_cpp(model: str | None = None, **options: Any) -> "LlamaCppLLM | ByLanguageLLM":
    """llm.model: a .gguf path, a bundled model's word (smollm2-135m, qwen2.5-0.5b), or auto: the small fast
    model for Latin-script turns and the one that speaks Chinese for Chinese turns (both loaded)."""
    if (model or model_files.DEFAULT).strip().lower() == model_files.AUTO:
        return ByLanguageLLM(LlamaCppLLM(model_files.SMOLLM2, **options), LlamaCppLLM(model_files.QWEN, **options))
    return LlamaCppLLM(model or model_files.DEFAULT, **options)


class ByLanguageLLM:
    """Two embedded models behind one engine: a turn whose user words are Chinese (or Japanese, Korean) goes to
    `cjk`, any other to `latin`. Each keeps its own prompt cache."""

    def __init__(self, latin: "LlamaCppLLM", cjk: "LlamaCppLLM"):
        self.latin, self.cjk = latin, cjk
        self.name = f"auto({latin.name} | {cjk.name} for Chinese)"

    def warmup(self) -> None:
        self.latin.warmup()
        self.cjk.warmup()

    def pick(self, messages: list[dict]) -> "LlamaCppLLM":
        """Chinese words from the user, or a character who is Chinese (her persona, the prompt's first line)."""
        last = next((str(m.get("content") or "") for m in reversed(messages) if m.get("role") == "user"), "")
        persona = str(messages[0].get("content") or "").split("\n", 1)[0] if messages else ""
        return self.cjk if has_cjk(last) or has_cjk(persona) else self.latin

    def stream(self, messages: list[dict], *, max_tokens: int, temperature: float) -> AsyncIterator[str]:
        return self.pick(messages).stream(messages, max_tokens=max_tokens, temperature=temperature)

    def __getattr__(self, name: str) -> Any:  # other abilities (tool calls) are the Latin-script model's
        if name in ("latin", "cjk"):
            raise AttributeError(name)
        return getattr(self.latin, name)

    async def choose_tools(self, messages: list[dict], grammar: str, max_tokens: int) -> str:
        # the larger model decides tool calls in any language (bench/tools.py: it picks the right tool more often)
        return await self.cjk.choose_tools(messages, grammar, max_tokens)


class LlamaCppLLM:
    """llama.cpp in-process. One generation at a time (a llama context is not thread-safe); others wait their turn.

    Prefix reuse: `Llama.generate` compares the new prompt's tokens with the tokens already in the KV cache
    (`_input_ids`) and only evaluates the part after the longest common prefix. Every turn of a conversation
    renders the same system prompt and history first, so a turn evaluates only the new user message.
    """

    def __init__(self, model: str | None = None, context_tokens: int = 2048, threads: int = 0,
                 cache_dir: str | None = None):
        try:
            import llama_cpp
        except ImportError as e:
            raise LLMError("the llama-cpp engine needs llama-cpp-python: pip install 'llama-cpp-python==0.3.36' "
                           "(or choose llm.engine: openai)") from e
        try:
            path = model_files.resolve(model, cache_dir)
        except model_files.ModelFileError as e:
            raise LLMError(f"{e}, or set llm.model to a .gguf file") from None
        if not path.is_file():
            raise LLMError(f"GGUF model file not found: {path}. Set llm.model to a .gguf file, to one of the "
                           f"bundled models ({', '.join(model_files.BUNDLED)}), or leave it empty for the default")
        n_threads = threads or os.cpu_count() or 1
        self._load = dict(model_path=str(path), n_ctx=context_tokens, n_batch=512, n_threads=n_threads,
                          n_threads_batch=n_threads, verbose=False)
        try:
            self._llama = llama_cpp.Llama(**self._load)
        except Exception as e:  # llama.cpp only says "failed to load model"
            raise LLMError(f"llama.cpp could not load {path} ({e}); is it a GGUF file?") from e
        self.name = f"llama-cpp:{path.name}"
        self.context_tokens = context_tokens
        self._lock = threading.Lock()
        self._router: Any = None  # the tool router's own context (choose_tools), made on its first use

    def warmup(self) -> None:
        # Touches every weight page and allocates compute buffers, so the first user turn is not the slow one.
        with self._lock:
            for _ in self._llama.create_chat_completion([{"role": "user", "content": "Hi"}], max_tokens=1,
                                                        stream=True):
                pass

    def stream(self, messages: list[dict], *, max_tokens: int, temperature: float) -> AsyncIterator[str]:
        return cleaned(lambda n, m: self._stream(m, n, temperature), messages, max_tokens)

    async def _stream(self, messages: list[dict], max_tokens: int, temperature: float,
                      grammar: str | None = None) -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()  # bounded by `room`: tokens not yet read
        room = threading.Semaphore(AHEAD_TOKENS)
        stop = threading.Event()
        finished = asyncio.Event()

        def put(item: Any) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop is closed: nobody listens any more
                stop.set()

        def put_token(text: str) -> None:
            while not room.acquire(timeout=0.05):  # the reader is busy (synthesizing): wait, unless it has gone
                if stop.is_set():
                    return
            if not stop.is_set():
                put(text)

        def work() -> None:
            try:
                # Poll for the lock so that a request cancelled while queued leaves at once.
                while not self._lock.acquire(timeout=0.05):
                    if stop.is_set():
                        return
                try:
                    if not stop.is_set():
                        self._generate(messages, max_tokens, temperature, stop, put_token, grammar)
                finally:
                    self._lock.release()
            except Exception as e:  # handed to the consumer, raised there
                put(e)
            finally:
                put(_DONE)
                try:
                    loop.call_soon_threadsafe(finished.set)
                except RuntimeError:
                    pass

        threading.Thread(target=work, name="llama-cpp-generate", daemon=True).start()
        try:
            while True:
                item = await queue.get()
                if item is _DONE:
                    return
                if isinstance(item, Exception):
                    if isinstance(item, LLMError):
                        raise item
                    raise LLMError(f"llama.cpp generation failed: {item}") from item
                room.release()
                yield item
        finally:
            stop.set()
            room.release()  # a worker waiting for room wakes now and sees the stop
            # Wait for the worker (at most one token or one prompt batch) so the caller's next request
            # and the KV cache state are predictable; it never waits for another request's generation.
            await finished.wait()

    def _generate(self, messages, max_tokens, temperature, stop: threading.Event, put, grammar=None) -> None:
        chunks, llama, extra = None, self._llama, {"repeat_penalty": REPEAT_PENALTY}
        if grammar is not None:  # the tool router: its own context and cache, its prompt differs from the reply's
            import llama_cpp
            self._router = llama = self._router or llama_cpp.Llama(**self._load)
            extra = {"grammar": llama_cpp.LlamaGrammar.from_string(grammar, verbose=False)}
        try:
            # The chat template embedded in the GGUF renders the messages; generate() reuses the cached prefix.
            chunks = llama.create_chat_completion(list(messages), max_tokens=max_tokens, temperature=temperature,
                                                  stream=True, **extra)
            for chunk in chunks:
                if stop.is_set():  # checked once per token
                    return
                text = chunk["choices"][0]["delta"].get("content")
                if text:
                    put(text)
        except ValueError as e:  # e.g. the prompt does not fit in the context window
            raise LLMError(f"llama.cpp refused the request: {e}. Shorten the history or raise "
                           "llm.context_tokens") from e
        finally:
            if chunks is not None:
                chunks.close()  # ends generate() while we still hold the lock

    async def choose_tools(self, messages: list[dict], grammar: str, max_tokens: int) -> str:
        """One greedy completion that can only be what `grammar` (GBNF) allows: the tool router's pass, on a context
        of its own (the reply's prompt cache survives it: bench/tools.py); a cancel stops it at its next token."""
        return "".join([text async for text in self._stream(messages, max_tokens, 0.0, grammar)])


@LLM.register("openai")
class OpenAICompatibleLLM:
    """Streams from POST {base_url}/chat/completions (server-sent events)."""

    def __init__(self, base_url: str = "http://127.0.0.1:11434/v1", model: str | None = None,
                 api_key: str | None = None, timeout_s: float = 30.0):
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.timeout_s = timeout_s
        self.name = f"openai:{self.base_url}"
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # read= applies to every read: the first byte of the answer, then each chunk of the stream.
        self._timeout = httpx.Timeout(timeout_s)
        self._client: httpx.AsyncClient | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None
        self._model_lock: asyncio.Lock | None = None

    def _http(self) -> httpx.AsyncClient:
        # One client (keep-alive) per event loop: an AsyncClient cannot move between loops.
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            self._client = httpx.AsyncClient(timeout=self._timeout, headers=self._headers)
            self._client_loop = loop
            self._model_lock = asyncio.Lock()
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _error(self, e: Exception) -> LLMError:
        if isinstance(e, httpx.TimeoutException):
            return LLMError(f"LLM server at {self.base_url} timed out after {self.timeout_s:g} s "
                            f"({type(e).__name__}). Is it overloaded? Raise llm.timeout_s if it is just slow")
        if isinstance(e, httpx.ConnectError):
            reason = "connection refused" if "refused" in str(e).lower() else str(e) or "connect error"
            return LLMError(f"LLM server at {self.base_url} is not reachable ({reason}). Is it running? "
                            "Set llm.base_url (LIVEHOST_LLM__BASE_URL) to its address")
        return LLMError(f"LLM server at {self.base_url} failed: {type(e).__name__}: {e}")

    @staticmethod
    def _status_error(status: int, body: bytes) -> LLMError:
        excerpt = body.decode("utf-8", "replace").strip().replace("\n", " ")[:300]
        hint = " (check llm.api_key)" if status in (401, 403) else ""
        return LLMError(f"LLM server answered {status}{hint}: {excerpt}")

    def _resolve_model_sync(self) -> str:
        with httpx.Client(timeout=self._timeout, headers=self._headers) as client:
            try:
                r = client.get(f"{self.base_url}/models")
            except httpx.HTTPError as e:
                raise self._error(e) from e
            return self._pick_model(r)

    @staticmethod
    def _pick_model(r: httpx.Response) -> str:
        # Servers that serve one model often ignore the name; "default" is what they accept when /models is absent.
        if r.is_success:
            try:
                data = r.json().get("data") or []
                if data and data[0].get("id"):
                    return str(data[0]["id"])
            except (ValueError, AttributeError):
                pass
        return "default"

    async def _resolve_model(self) -> str:
        self._http()  # this loop's client and lock
        if self.model is None:
            async with self._model_lock:  # ask once, even when two sessions start together
                if self.model is None:
                    try:
                        r = await self._http().get(f"{self.base_url}/models")
                    except httpx.HTTPError as e:
                        raise self._error(e) from e
                    self.model = self._pick_model(r)
                    log.info("LLM server %s: using model %r", self.base_url, self.model)
        return self.model

    def warmup(self) -> None:
        """Checks that the server answers and learns the model name; raises LLMError if it does not."""
        if self.model is None:
            self.model = self._resolve_model_sync()

    def stream(self, messages: list[dict], *, max_tokens: int, temperature: float) -> AsyncIterator[str]:
        return cleaned(lambda n, m: self._stream(m, n, temperature), messages, max_tokens)

    async def chat_tools_stream(self, messages: list[dict], tools: list[dict], tool_choice: Any,
                                max_tokens: int = 256) -> AsyncIterator[dict]:
        """One streamed chat completion with `tools`: each chunk's delta (words in `content`, or `tool_calls`
        pieces), as the server sends them."""
        body = {"model": await self._resolve_model(), "messages": list(messages), "tools": tools,
                "tool_choice": tool_choice, "max_tokens": max_tokens, "temperature": 0.0, "frequency_penalty": 0.3,
                "stream": True}
        async for delta in self._deltas(body):
            yield delta

    async def _stream(self, messages: list[dict], max_tokens: int, temperature: float) -> AsyncIterator[str]:
        body = {"model": await self._resolve_model(), "messages": list(messages), "max_tokens": max_tokens,
                "temperature": temperature, "frequency_penalty": 0.3, "stream": True}
        async for delta in self._deltas(body):
            if delta.get("content"):
                yield delta["content"]

    async def _deltas(self, body: dict) -> AsyncIterator[dict]:
        """POST a streamed chat completion; each server-sent chunk's first choice's delta."""
        client = self._http()
        try:
            # Leaving this block early (aclose, cancel) closes the response and its connection: the server stops.
            async with client.stream("POST", f"{self.base_url}/chat/completions", json=body) as resp:
                if not resp.is_success:
                    raise self._status_error(resp.status_code, await resp.aread())
                async for line in resp.aiter_lines():
                    if not line.startswith("data:"):
                        continue  # blank separators, comments, event:/id: fields
                    data = line[5:].strip()
                    if data == "[DONE]":
                        return
                    try:
                        event = json.loads(data)
                    except ValueError:
                        raise LLMError(f"LLM server sent something that is not JSON: {data[:200]}") from None
                    if event.get("error"):
                        raise LLMError(f"LLM server reported an error: {str(event['error'])[:300]}")
                    choices = event.get("choices") or []
                    delta = choices[0].get("delta") if choices and isinstance(choices[0], dict) else None
                    if isinstance(delta, dict):
                        yield delta
        except httpx.HTTPError as e:
            raise self._error(e) from e
