"""Function calling in a session, on engine doubles: the real session, reply and tool code, a router double."""
from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from engine_doubles import DoubleEngines, FixedASR, SilentVAD, ToneTTS, WordsLLM, drain, events_until, send, user_text
from livehost.persona.character import BUILTIN_DIR, CharacterLibrary
from livehost.persona.tool_calls import decide
from livehost.persona.tools import parse_tools
from livehost.server.session import RealtimeSession

ORDER = {"type": "function", "name": "order_status", "description": "Look up an order by its number.",
         "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]}}


class RouterLLM(WordsLLM):
    """Speaks like WordsLLM; as the tool router it writes `calls` (what a grammar-bound model could write)."""

    def __init__(self, calls: list, text: str = "Your order has shipped."):
        super().__init__(text)
        self.router_calls, self.routed, self.prompts = calls, 0, []

    async def stream(self, messages, *, max_tokens, temperature):
        self.prompts.append(messages)
        async for token in super().stream(messages, max_tokens=max_tokens, temperature=temperature):
            yield token

    async def choose_tools(self, messages, grammar, max_tokens):
        self.routed += 1
        assert "order_status" in grammar
        return "<tool_call>" + json.dumps(self.router_calls) + "</tool_call>"


class ServerLLM(WordsLLM):
    """An OpenAI-compatible server's double: decides natively (chat_tools_stream: the deltas a streaming server
    sends), then speaks from the prompt. `pieces`: argument pieces of the one call (or words, with `words`);
    `gate`, when given, must be set before the second piece of a call, the last of words (the filter holds
    the first few words)."""

    def __init__(self, calls: list, text: str = "Your order has shipped.", pieces: list | None = None,
                 words: bool = False, gate: asyncio.Event | None = None):
        super().__init__(text)
        self.router_calls, self.routed, self.prompts = calls, 0, []
        self.pieces, self.words, self.tool_gate, self.closed, self.tool_prompts = pieces, words, gate, False, []

    async def stream(self, messages, *, max_tokens, temperature):
        self.prompts.append(messages)
        async for token in super().stream(messages, max_tokens=max_tokens, temperature=temperature):
            yield token

    async def chat_tools_stream(self, messages, tools, tool_choice, max_tokens):
        self.routed += 1
        self.tool_prompts.append(messages)
        assert tools[0]["function"]["name"] == "order_status"
        try:
            if self.pieces is not None:
                for i, piece in enumerate(self.pieces):
                    if i == (len(self.pieces) - 1 if self.words else 1) and self.tool_gate is not None:
                        await self.tool_gate.wait()
                    yield {"content": piece} if self.words else {"tool_calls": [{"index": 0, "id": "call_s", "function": {
                        "name": "order_status", "arguments": piece}}]}  # the name in every delta, as llama.cpp's
                return
            for i, c in enumerate(self.router_calls):
                yield {"tool_calls": [{"index": i, "id": f"call_{i}", "type": "function",
                                       "function": {"name": c["name"], "arguments": ""}}]}
                yield {"tool_calls": [{"index": i, "function": {"arguments": json.dumps(c["arguments"])}}]}
        finally:
            self.closed = True


def session(settings, llm, characters=None) -> RealtimeSession:
    engines = DoubleEngines(SilentVAD(), FixedASR(), llm, ToneTTS(), characters or CharacterLibrary([BUILTIN_DIR]))
    s = RealtimeSession(engines, settings, "websocket")
    s.start()
    return s


async def update(s: RealtimeSession, **session) -> None:
    await s.handle(json.dumps({"type": "session.update", "session": session}))


CALL = [{"name": "order_status", "arguments": {"order_id": "5521"}}]


@pytest.mark.parametrize("engine", [RouterLLM, ServerLLM])
async def test_a_client_tool_is_called_then_answered_from_its_output(settings, engine):
    llm = engine(CALL)
    s = session(settings, llm)
    await update(s, **{"type": "realtime", "tools": [ORDER], "tool_choice": "auto"})
    updated = (await events_until(s, "session.updated"))[-1]["session"]
    assert updated["tools"][0]["name"] == "order_status" and updated["tool_choice"] == "auto"
    await send(s, **user_text("Where is my order 5521?"))
    await send(s, type="response.create")
    events = await events_until(s, "response.done")
    kinds = [e["type"] for e in events]
    assert "response.output_audio.delta" not in kinds  # a reply that calls a tool says nothing
    args_done = next(e for e in events if e["type"] == "response.function_call_arguments.done")
    assert args_done["name"] == "order_status" and json.loads(args_done["arguments"]) == {"order_id": "5521"}
    assert kinds.index("response.output_item.added") < kinds.index("response.function_call_arguments.delta") \
        < kinds.index("response.function_call_arguments.done") < kinds.index("response.output_item.done")
    done = events[-1]["response"]
    assert done["status"] == "completed" and done["output"][0]["type"] == "function_call"
    call_id = done["output"][0]["call_id"]
    assert call_id == args_done["call_id"]

    await send(s, type="conversation.item.create",
               item={"type": "function_call_output", "call_id": call_id, "output": '{"status": "shipped"}'})
    added = await events_until(s, "conversation.item.done")
    assert not [e for e in added if e["type"] == "error"] and added[-1]["item"]["type"] == "function_call_output"
    await send(s, type="response.create")
    events = await events_until(s, "response.done")
    assert events[-1]["response"]["status"] == "completed"
    assert any(e["type"] == "response.output_audio.delta" for e in events)  # now it speaks
    assert llm.routed == 1  # after a result it answers; it does not call again
    said = events[-1]["response"]["output"][0]["content"][0]["transcript"]
    if engine is RouterLLM:  # the embedded model: the result is said as it is, never reworded
        assert said == "Here is what I found: status: shipped."
        assert not [m for prompt in llm.prompts for m in prompt if "Result of the tool" in m["content"]]
    else:  # a server's model rewords it, grounded in the result, quoted as data
        prompt = "\n".join(m["content"] for m in llm.prompts[-1])
        assert "Result of the tool order_status" in prompt and "shipped" in prompt and said
    await asyncio.wait_for(s.close(), 5)


async def test_bad_tools_and_outputs_are_errors_and_the_session_goes_on(settings):
    s = session(settings, RouterLLM(CALL))
    bad = {**ORDER, "parameters": {"type": "object", "properties": {"order_id": {"type": "strng"}}}}
    await update(s, **{"tools": [bad]})
    error = (await events_until(s, "error"))[-1]["error"]
    assert error["code"] == "invalid_value" and error["param"] == "session.tools[0].parameters"
    await update(s, **{"tools": [ORDER], "tool_choice": {"type": "function", "name": "x"}})
    assert (await events_until(s, "error"))[-1]["error"]["param"] == "session.tool_choice"
    await send(s, type="conversation.item.create",
               item={"type": "function_call_output", "call_id": "call_nope", "output": "{}"})
    assert (await events_until(s, "error"))[-1]["error"]["param"] == "item.call_id"
    await send(s, type="response.create", response={"tool_choice": "sometimes"})
    assert (await events_until(s, "error"))[-1]["error"]["param"] == "response.tool_choice"
    await send(s, **user_text("hi"))
    await send(s, type="response.create")
    assert (await events_until(s, "response.done"))[-1]["response"]["status"] == "completed"
    await asyncio.wait_for(s.close(), 5)


async def test_auto_never_calls_with_an_argument_the_user_did_not_say():
    tools = parse_tools([ORDER])
    llm = RouterLLM([{"name": "order_status", "arguments": {"order_id": "1234567890"}}])
    said = [{"role": "user", "content": "Where is my order?"}]
    assert (await decide(llm, said, tools, "auto")).calls == []
    forced = await decide(llm, said, tools, "required")  # forced: the client asked for a call
    assert [c.name for c in forced.calls] == ["order_status"]
    assert (await decide(llm, said, tools, "none")).calls == [] and llm.routed == 2


class _Shop(BaseHTTPRequestHandler):
    def do_GET(self):
        if "7777" in self.path:  # a service that never answers in time
            threading.Event().wait(3)
        status = 500 if "9999" in self.path else 200
        body = json.dumps({"order": self.path.rsplit("/", 1)[-1], "status": "shipped", "arrives": "Friday"}).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture()
def shop_card(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Shop)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    (tmp_path / "shopkeeper.yaml").write_text(f"""
name: Shopkeeper
persona: a shop assistant
style: brief
greeting: Hello!
knowledge:
  handoff_message: Would you like me to connect you with a person?
tools:
  - name: order_status
    description: Look up an order by its number.
    parameters: {{type: object, properties: {{order_id: {{type: string}}}}, required: [order_id]}}
    http: {{url: "http://127.0.0.1:{server.server_port}/orders/{{order_id}}", timeout_s: 1}}
""")
    yield CharacterLibrary([BUILTIN_DIR, tmp_path])
    server.shutdown()


@pytest.mark.parametrize("order,spoken", [("5521", "Here is what I found: order: 5521, status: shipped, arrives: Friday."),
                                          ("9999", "Sorry, I could not look that up just now."),
                                          ("7777", "Sorry, I could not look that up just now.")])  # no answer
async def test_a_card_tool_is_called_by_the_server(settings, shop_card, order, spoken):
    llm = RouterLLM([{"name": "order_status", "arguments": {"order_id": order}}])
    s = session(settings, llm, shop_card)
    await update(s, **{"livehost": {"character": "shopkeeper"}})
    await events_until(s, "session.updated")
    await send(s, **user_text(f"Where is my order {order}?"))
    await send(s, type="response.create")
    first = await events_until(s, "response.done")
    assert first[-1]["response"]["output"][0]["type"] == "function_call"
    second = await events_until(s, "response.done")  # the server called the shop and answers from it
    output = next(e["item"] for e in second if e["type"] == "conversation.item.added"
                  and e["item"]["type"] == "function_call_output")
    assert ("shipped" in output["output"]) == (order == "5521")
    transcript = second[-1]["response"]["output"][0]["content"][0]["transcript"]
    assert transcript.startswith(spoken), transcript
    if order != "5521":
        assert "connect you with a person" in transcript
        assert output["output"].startswith("error: ") and ("HTTP 500" if order == "9999" else "no answer within 1 s") \
            in output["output"]
    await asyncio.wait_for(s.close(), 5)
    assert not [e for e in drain(s) if e["type"] == "error"]


async def test_a_servers_call_streams_its_arguments_as_they_arrive(settings):
    gate = asyncio.Event()
    llm = ServerLLM([], pieces=['{"order_id"', ': "55', '21"}'], gate=gate)
    s = session(settings, llm)
    await update(s, **{"output_modalities": ["text"], "tools": [ORDER]})
    await send(s, **user_text("Where is my order 5521?"))
    await send(s, type="response.create")
    # the first piece is out while the server has not sent the rest: a non-streamed request would wait for it all
    first = await events_until(s, "response.function_call_arguments.delta")
    assert first[-1]["delta"] == '{"order_id"'
    added = next(e for e in first if e["type"] == "response.output_item.added")["item"]
    assert added["type"] == "function_call" and added["status"] == "in_progress" and added["name"] == "order_status"
    gate.set()
    events = await events_until(s, "response.done")
    deltas = [e["delta"] for e in first + events if e["type"] == "response.function_call_arguments.delta"]
    assert deltas == ['{"order_id"', ': "55', '21"}']
    done = next(e for e in events if e["type"] == "response.function_call_arguments.done")
    assert done["arguments"] == '{"order_id": "5521"}' and done["call_id"] == "call_s"
    response = events[-1]["response"]
    assert response["status"] == "completed" and response["output"][0]["arguments"] == '{"order_id": "5521"}'
    asked = json.dumps(llm.tool_prompts[0])  # the reply's own prompt: the persona, then the conversation
    assert asked.startswith('[{"role": "system", "content": "You are') and "Where is my order 5521?" in asked
    await asyncio.wait_for(s.close(), 5)


async def test_a_servers_words_are_said_as_they_arrive(settings):
    gate = asyncio.Event()
    llm = ServerLLM([], pieces=["Hello ", "there, ", "nice ", "to ", "meet ", "you."], words=True, gate=gate)
    s = session(settings, llm)
    await update(s, **{"output_modalities": ["text"], "tools": [ORDER]})
    await send(s, **user_text("Hi!"))
    await send(s, type="response.create")
    first = await events_until(s, "response.output_text.delta")  # before the server has written the rest
    asked = llm.calls
    gate.set()
    events = await events_until(s, "response.done")
    text = "".join(e["delta"] for e in first + events if e["type"] == "response.output_text.delta")
    assert first[-1]["delta"].startswith("Hello") and text == "Hello there, nice to meet you."
    assert events[-1]["response"]["status"] == "completed" and llm.calls == asked  # no second request
    await asyncio.wait_for(s.close(), 5)


async def test_a_cancel_during_a_streamed_call_stops_the_request(settings):
    gate = asyncio.Event()  # never set: the server is still writing the arguments
    llm = ServerLLM([], pieces=['{"order_id"', ': "5521"}'], gate=gate)
    s = session(settings, llm)
    await update(s, **{"output_modalities": ["text"], "tools": [ORDER]})
    await send(s, **user_text("Where is my order 5521?"))
    await send(s, type="response.create")
    await events_until(s, "response.function_call_arguments.delta")
    await send(s, type="response.cancel")
    events = await events_until(s, "response.done")
    item = next(e for e in events if e["type"] == "response.output_item.done")["item"]
    assert item["status"] == "incomplete" and events[-1]["response"]["status"] == "cancelled"
    assert "response.function_call_arguments.done" not in [e["type"] for e in events]
    assert llm.closed  # the request was ended, not left to run
    await send(s, **user_text("hi"))  # the session goes on; the cut call is not in the next prompt
    await send(s, type="response.create", response={"tool_choice": "none"})
    assert (await events_until(s, "response.done"))[-1]["response"]["status"] == "completed"
    assert '"5521"' not in json.dumps(llm.prompts[-1][:-1])
    await asyncio.wait_for(s.close(), 5)


@pytest.mark.parametrize("pieces,reason", [(['{"order_id": "' + "5" * 9000 + '"}'], "over 8192 bytes"),
                                           (['{"order_id": 5521}'], "do not fit the schema")])
async def test_a_servers_bad_call_fails_the_reply_with_the_reason(settings, pieces, reason):
    s = session(settings, ServerLLM([], pieces=pieces))
    await update(s, **{"output_modalities": ["text"], "tools": [ORDER]})
    await send(s, **user_text("Where is my order 5521?"))
    await send(s, type="response.create")
    events = await events_until(s, "response.done")
    response = events[-1]["response"]
    assert response["status"] == "failed" and reason in response["status_details"]["error"]["message"]
    assert all(o["status"] == "incomplete" for o in response["output"])
    await send(s, **user_text("hi"))
    await send(s, type="response.create", response={"tool_choice": "none"})
    assert (await events_until(s, "response.done"))[-1]["response"]["status"] == "completed"
    await asyncio.wait_for(s.close(), 5)


async def test_oversized_client_items_are_errors_and_a_call_never_answered_holds_nothing_up(settings):
    s = session(settings, RouterLLM(CALL))
    await update(s, **{"output_modalities": ["text"], "tools": [ORDER], "tool_choice": "auto"})
    await send(s, **user_text("Where is my order 5521?"))
    await send(s, type="response.create")
    call = (await events_until(s, "response.done"))[-1]["response"]["output"][0]
    await send(s, type="conversation.item.create",
               item={"type": "function_call_output", "call_id": call["call_id"], "output": "x" * (65 << 10)})
    error = (await events_until(s, "error"))[-1]["error"]
    assert error["param"] == "item.output" and "over" in error["message"]
    await send(s, type="conversation.item.create", item={"type": "function_call", "call_id": "call_old",
                                                         "name": "order_status", "arguments": "1" * 9000})
    error = (await events_until(s, "error"))[-1]["error"]
    assert error["param"] == "item.arguments" and "8192 bytes" in error["message"]
    # the client never answers the call: the user speaks again and is answered as usual
    await send(s, **user_text("Never mind. Thanks!"))
    await send(s, type="response.create", response={"tool_choice": "none"})
    done = (await events_until(s, "response.done"))[-1]["response"]
    assert done["status"] == "completed" and done["output"][0]["type"] == "message"
    await asyncio.wait_for(s.close(), 5)
