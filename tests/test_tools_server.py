"""Tools through a real OpenAI-compatible server (llama.cpp's, with the bundled Qwen GGUF, started by the test)."""
from __future__ import annotations

import asyncio
import json

import jsonschema
import pytest

from livehost.persona.llm import OpenAICompatibleLLM
from livehost.persona.tool_calls import decide
from livehost.persona.tools import parse_tools
from test_llm_server import qwen_server  # noqa: F401 - the fixture: the server, started once for this module

pytestmark = pytest.mark.e2e
ORDER = {"type": "function", "name": "order_status", "description": "Look up an order by its number.",
         "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]}}


def test_a_named_tool_choice_passes_through_and_comes_back_as_a_call(qwen_server):  # noqa: F811
    async def run():
        llm = OpenAICompatibleLLM(base_url=qwen_server, timeout_s=120)
        try:
            said = [{"role": "user", "content": "Where is my order 5521?"}]
            tools = parse_tools([ORDER])
            forced = await decide(llm, said, tools, "order_status")
            auto = await decide(llm, [{"role": "user", "content": "Hello!"}], tools, "auto")
            return forced, auto
        finally:
            await llm.aclose()
    forced, auto = asyncio.run(run())
    assert [c.name for c in forced.calls] == ["order_status"], forced
    arguments = json.loads(forced.calls[0].arguments)
    jsonschema.validate(arguments, ORDER["parameters"])
    assert "5521" in arguments["order_id"]
    assert auto.calls or auto.text  # the server decided: a call, or words to say


NOTE = {"type": "function", "name": "save_note", "description": "Save a note for the customer, word for word.",
        "parameters": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}}


def test_a_servers_call_and_words_stream_through_a_session(qwen_server, settings):  # noqa: F811
    """The deciding request is streamed: a long argument arrives as many `arguments.delta` events (a whole
    message, not streamed, would be one), and words the server answers with instead come out as they are made."""
    import time

    from engine_doubles import events_until, send, user_text
    from test_tool_calls import session, update

    async def run():
        llm = OpenAICompatibleLLM(base_url=qwen_server, timeout_s=120)
        s = session(settings, llm)
        try:
            await update(s, **{"output_modalities": ["text"], "tools": [NOTE]})
            await send(s, **user_text("Please save this note: buy milk, eggs, brown bread, butter, six apples and "
                                      "a big bag of oranges for the weekend."))
            await send(s, type="response.create", response={"tool_choice": {"type": "function", "name": "save_note"}})
            seen, arrived = [], {}

            async def watch():
                while True:
                    e = await s.outbox.get()
                    seen.append(e)
                    arrived.setdefault(e["type"], []).append(time.perf_counter())
                    if e["type"] == "response.done":
                        return
            await asyncio.wait_for(watch(), 120)
            called = list(seen)
            await send(s, **user_text("Hello! How are you today?"))
            await send(s, type="response.create", response={"tool_choice": "auto"})
            spoken = await events_until(s, "response.done", timeout=120)
            return called, arrived, spoken
        finally:
            await s.close()
            await llm.aclose()
    called, arrived, spoken = asyncio.run(run())
    assert called[-1]["response"]["status"] == "completed", called[-1]
    deltas = [e["delta"] for e in called if e["type"] == "response.function_call_arguments.delta"]
    done = next(e for e in called if e["type"] == "response.function_call_arguments.done")
    assert done["name"] == "save_note" and "".join(deltas) == done["arguments"]
    jsonschema.validate(json.loads(done["arguments"]), NOTE["parameters"])
    assert len(deltas) > 3, deltas  # piece by piece, as the server wrote them
    assert arrived["response.function_call_arguments.delta"][0] < arrived["response.function_call_arguments.done"][0]
    response = spoken[-1]["response"]
    assert response["status"] == "completed", response
    if not any(o["type"] == "function_call" for o in response["output"]):  # it answered in words: streamed
        words = [e["delta"] for e in spoken if e["type"] == "response.output_text.delta"]
        assert len(words) > 1 and "".join(words).strip(), words
