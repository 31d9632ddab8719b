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
