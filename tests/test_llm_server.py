"""The deployment path the README gives (an OpenAI-compatible server: Ollama, vLLM, llama.cpp's server), run for real:
llama.cpp's server with the larger bundled GGUF (Qwen2.5-0.5B), started by the test, answering through livehost's
own reply path (the openai engine, the reply filter, the characters' prompts)."""
from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time

import httpx
import pytest

from livehost.persona import model_files
from livehost.persona.llm import OpenAICompatibleLLM
from test_llm import free_port

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def qwen_server(tmp_path_factory):
    model = model_files.resolve(model_files.QWEN)  # joined into the model cache on first use
    port, log = free_port(), tmp_path_factory.mktemp("qwen_server") / "server.log"
    with open(log, "wb") as out:  # a file: a pipe nobody reads fills up and blocks the server
        proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host",
                                 "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", "2",
                                 "--verbose", "False"], stdout=out, stderr=subprocess.STDOUT)
    url, deadline = f"http://127.0.0.1:{port}/v1", time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{url}/models", timeout=1).is_success:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"llama_cpp.server did not start: {log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.3)
    yield url
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def _reply(llm, messages) -> str:
    async def run():
        return "".join([t async for t in llm.stream(messages, max_tokens=60, temperature=0.6)])
    return asyncio.run(run())


def test_characters_answer_whole_through_a_real_server(qwen_server, engines):
    from livehost.persona.dialogue import Dialogue
    llm = OpenAICompatibleLLM(base_url=qwen_server, timeout_s=120)
    llm.warmup()  # learns the served model's name from GET /models
    assert "qwen" in llm.model.lower()
    for character, said in (("sol", "Hey, how was your day?"), ("lumi", "晚上好！今天聊什么？")):
        dialogue = Dialogue(engines.characters.get(character), llm)
        plan = asyncio.run(dialogue.plan([{"role": "user", "content": said, "status": "completed"}]))
        text = _reply(llm, plan.messages)
        words = re.sub(r"\[[^\]]*\]", " ", text).strip()
        assert words, f"{character}: an empty reply ({text!r})"  # the tag-only replies of issue 11
        assert words[-1] in ".!?。！？…~\"'”)", f"{character}: ends mid-sentence: {text!r}"
        sentences = [s.strip().lower() for s in re.split(r"(?<=[.!?。！？])\s*", words) if len(s.strip()) > 8]
        assert len(sentences) == len(set(sentences)), f"{character}: a sentence said twice: {text!r}"
        if character == "lumi":
            assert re.search(r"[\u4e00-\u9fff]", words), f"a Chinese question gets Chinese: {text!r}"
    asyncio.run(llm.aclose())


def test_grounded_answer_is_the_same_through_a_server(qwen_server, engines):
    """Mika's facts never depend on the LLM: through the server, her price is the catalogue's."""
    from livehost.persona.dialogue import Dialogue
    from livehost.persona.retrieval import sync_character_knowledge
    mika = engines.characters.get("mika")
    sync_character_knowledge(engines.knowledge, mika)
    llm = OpenAICompatibleLLM(base_url=qwen_server, timeout_s=120)
    dialogue = Dialogue(mika, llm, knowledge=engines.knowledge)
    plan = asyncio.run(dialogue.plan([{"role": "user", "content": "What's the price of the walnut spoons?",
                                       "status": "completed"}]))
    said = plan.script if plan.script is not None else _reply(llm, plan.messages)
    assert re.search(r"\b22(\.00)?\b", said), said
    asyncio.run(llm.aclose())
