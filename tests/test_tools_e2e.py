"""Function calling end to end: the official openai SDK against the real server and the bundled model."""
from __future__ import annotations

import json

import jsonschema
import pytest

from test_realtime_e2e import client_for, collect

pytestmark = pytest.mark.e2e
ORDER = {"type": "function", "name": "order_status", "description": "Look up an order by its number.",
         "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"],
                        "additionalProperties": False}}
WEATHER = {"type": "function", "name": "get_weather", "description": "The weather today in a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 40}},
                          "required": ["city"]}}


async def ask(conn, text: str) -> None:
    await conn.conversation.item.create(item={"type": "message", "role": "user",
                                              "content": [{"type": "input_text", "text": text}]})
    await conn.response.create()


@pytest.mark.parametrize("question,tool", [("Where is my order 5521?", ORDER),
                                           ("Is it raining in Berlin today?", WEATHER),
                                           ("Hello there!", WEATHER)])  # forced even when it makes no sense
async def test_a_forced_tool_choice_always_yields_a_valid_call(server, question, tool):
    async with client_for(server).realtime.connect(model="livehost") as conn:
        await conn.session.update(session={"type": "realtime", "output_modalities": ["text"],
                                           "tools": [ORDER, WEATHER],
                                           "tool_choice": {"type": "function", "name": tool["name"]}})
        await ask(conn, question)
        events = await collect(conn, "response.done")
    done = events[-1].response
    assert done.status == "completed"
    call = next(o for o in done.output if o.type == "function_call")
    assert call.name == tool["name"]
    jsonschema.validate(json.loads(call.arguments), tool["parameters"])  # constrained: it always fits
    deltas = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta"
                     and e.item_id == call.id)
    assert deltas == call.arguments


async def test_the_assistant_speaks_from_the_tools_result(server):
    async with client_for(server).realtime.connect(model="livehost") as conn:
        await conn.session.update(session={"type": "realtime", "output_modalities": ["text"], "tools": [ORDER],
                                           "tool_choice": "required"})
        await ask(conn, "Where is my order 5521?")
        call = next(o for o in (await collect(conn, "response.done"))[-1].response.output
                    if o.type == "function_call")
        assert json.loads(call.arguments)["order_id"]
        await conn.conversation.item.create(item={"type": "function_call_output", "call_id": call.call_id,
                                                  "output": json.dumps({"status": "shipped", "arrives": "Friday"})})
        await conn.session.update(session={"type": "realtime", "tool_choice": "auto"})
        await conn.response.create()
        events = await collect(conn, "response.done")
    done = events[-1].response
    assert done.status == "completed" and done.output[0].type == "message"
    text = done.output[0].content[0].text.lower()
    assert "shipped" in text or "friday" in text, text  # grounded in the result: said, not invented


async def test_a_cancel_stops_the_router_pass_mid_generation(engines):
    """Barge-in during a tool decision: the embedded router pass stops at its next token and frees the model,
    instead of writing on to its token budget."""
    import asyncio

    llm = getattr(engines.llm, "cjk", engines.llm)  # llm.model auto: the larger model decides tool calls
    said = [{"role": "user", "content": "Tell me a very long story about the sea, the wind and the ships."}]
    never_done = 'root ::= "<tool_call>" x\nx ::= [a-z ] x'  # never complete: only the token budget ends it
    task = asyncio.create_task(llm.choose_tools(said, never_done, 1800))
    await asyncio.sleep(1.5)  # its prompt is read and it is writing (1800 tokens take many seconds)
    assert not task.done() and llm._lock.locked()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    stopped = llm._router.n_tokens
    await asyncio.sleep(1.0)
    assert llm._router.n_tokens == stopped  # nothing more was written after the cancel
    assert llm._lock.acquire(timeout=1)  # and the model is free for the next reply
    llm._lock.release()
    words = [t async for t in llm.stream([{"role": "user", "content": "Hi!"}], max_tokens=8, temperature=0.0)]
    assert "".join(words).strip()
