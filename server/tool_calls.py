"""Function calls on the Realtime wire: their items and events, the client's `function_call_output`, and the card
tools that the server calls itself.

A reply that decides to call tools says nothing: it ends `completed` with `function_call` items as its output.
A client tool is answered by the client (`conversation.item.create` of a `function_call_output`, then
`response.create`); a card's HTTP tool is answered by the server, which then starts the reply that speaks from
the result, as a client would.
"""
from __future__ import annotations

import logging
from typing import Any, Optional

from livehost.persona.reply_filter import EXTRA_TOKENS
from livehost.persona.tool_calls import ToolCall, found_line
from livehost.persona.tools import (MAX_ARGUMENTS_BYTES, MAX_RESULT_CHARS, Tool, ToolError, call_http,
                                    check_arguments)
from livehost.server.protocol import ProtocolError, new_id

log = logging.getLogger("livehost.tools")
MAX_OUTPUT_CHARS = 64 << 10  # a function_call_output from a client; the prompt holds MAX_RESULT_CHARS of it


def call_item(call: ToolCall, status: str = "completed", item_id: Optional[str] = None) -> dict:
    return {"id": item_id or new_id("item"), "object": "realtime.item", "type": "function_call", "status": status,
            "call_id": call.call_id, "name": call.name, "arguments": call.arguments}


def output_item(call_id: str, output: str) -> dict:
    return {"id": new_id("item"), "object": "realtime.item", "type": "function_call_output", "status": "completed",
            "call_id": call_id, "output": output}


def call_events(event: Any) -> list[dict]:
    """The Realtime events of a reply's function calls as they stream (a reply_events.Calls): `added` (the item
    starts), `delta` (a piece of its arguments), `done` (whole and checked, or incomplete: cut off or refused)."""
    reply, out = event.reply, []
    for item, previous in zip(event.items, event.previous_ids or [None] * len(event.items)):
        index = reply.calls.index(item)
        ids = {"response_id": reply.id, "item_id": item["id"], "output_index": index}
        now = dict(item)  # the item changes as it streams; the event says what it is now
        if event.kind == "added":
            out += [{"type": "response.output_item.added", "response_id": reply.id, "output_index": index,
                     "item": now},
                    {"type": "conversation.item.added", "previous_item_id": previous, "item": now}]
        elif event.kind == "delta":
            out.append({"type": "response.function_call_arguments.delta", **ids, "call_id": item["call_id"],
                        "delta": event.delta})
        else:
            if item["status"] == "completed":
                out.append({"type": "response.function_call_arguments.done", **ids, "call_id": item["call_id"],
                            "name": item["name"], "arguments": item["arguments"]})
            out += [{"type": "response.output_item.done", "response_id": reply.id, "output_index": index,
                     "item": now},
                    {"type": "conversation.item.done", "item": now}]
    return out


class ToolTurn:
    """A reply's tool decision, streamed: each call becomes an item as soon as its name is known and its arguments
    go out piece by piece; words (a server that answers instead of calling) become the reply's own words, said as
    they come. A cancel (barge-in) stops the decision where it is: the request ends, started calls end incomplete."""

    def __init__(self, reply: Any):
        self.reply = reply

    async def run(self) -> bool:
        """True: the reply called tools (it says nothing more); False: it speaks (plan.words, or a prompt)."""
        from livehost.persona.tool_calls import Decision, decide_stream
        from livehost.persona.reply_filter import clean_reply
        from livehost.server.reply_events import Calls

        reply, plan = self.reply, self.reply.plan
        updates = decide_stream(plan.llm or reply.llm, plan.conversation, plan.tools, plan.tool_choice,
                                plan.messages or None, plan.max_tokens + EXTRA_TOKENS)
        items: dict[int, dict] = {}
        handed_on = False
        try:
            async for update in updates:
                if isinstance(update, Decision):
                    break
                if update.index is None:
                    if items:
                        log.info("the server wrote words after a call; they are not said")
                        continue
                    plan.words = clean_reply(_words(update.text, updates), plan.messages, plan.max_tokens)
                    handed_on = True
                    return False
                if not reply._released.is_set():  # a speculation: no call is seen before the turn is confirmed
                    reply.phase = "held"
                    await reply._released.wait()
                item = items.get(update.index)
                if item is None:
                    item = items[update.index] = call_item(ToolCall(update.call_id, update.name, ""), "in_progress")
                    reply.calls.append(item)
                    reply._tell(Calls(reply, "added", [item]))
                if update.text:
                    item["arguments"] += update.text
                    reply._tell(Calls(reply, "delta", [item], update.text))
            else:
                update = Decision([])
            if not items:
                return False
            checked = {c.call_id: c for c in update.calls}
            for index, item in items.items():
                call = checked.get(item["call_id"])
                item.update(status="completed", arguments=call.arguments) if call else item.update(status="incomplete")
                reply._tell(Calls(reply, "done", [item]))
            if update.rejected or not checked:
                raise ToolError("; ".join(update.rejected.values()) or "the model's calls were refused")
            reply.phase = "played"
            return True
        finally:
            for item in items.values():
                if item["status"] == "in_progress":  # cut off mid-call (a cancel, a failure): never called
                    item["status"] = "incomplete"
                    reply._tell(Calls(reply, "done", [item]))
            if not handed_on:
                await updates.aclose()


async def _words(first: str, updates: Any):
    """A server's answer in words, from its first piece on; anything else it streams is not said."""
    yield first
    async for update in updates:
        if getattr(update, "index", 0) is None:
            yield update.text


def check_client_item(item: dict, items: dict) -> dict:
    """A client's function_call_output (or a function_call it replays): checked and completed."""
    kind = item.get("type")
    calls = {i.get("call_id"): i for i in items.values() if i.get("type") == "function_call"}
    if kind == "function_call_output":
        if not isinstance(item.get("call_id"), str) or item["call_id"] not in calls:
            raise ProtocolError(f"function_call_output: no function_call with call_id {item.get('call_id')!r} in the "
                                "conversation", code="invalid_value", param="item.call_id")
        output = item.get("output")
        if not isinstance(output, str):
            raise ProtocolError("function_call_output: output must be a string", code="invalid_value",
                                param="item.output")
        if len(output) > MAX_OUTPUT_CHARS:
            raise ProtocolError(f"function_call_output: output is over {MAX_OUTPUT_CHARS} characters",
                                code="invalid_value", param="item.output")
        return {**output_item(item["call_id"], output), "id": item.get("id") or new_id("item")}
    for key in ("call_id", "name", "arguments"):  # a function_call: a client restoring an earlier conversation
        if not isinstance(item.get(key), str):
            raise ProtocolError(f"function_call: {key} must be a string", code="invalid_value", param=f"item.{key}")
    if len(item["arguments"].encode()) > MAX_ARGUMENTS_BYTES:
        raise ProtocolError(f"function_call: arguments are over {MAX_ARGUMENTS_BYTES} bytes", code="invalid_value",
                            param="item.arguments")
    return call_item(ToolCall(item["call_id"], item["name"], item["arguments"]), item_id=item.get("id"))


def as_message(item: dict, items: dict) -> Optional[dict]:
    """A function_call or function_call_output item as the dialogue sees it."""
    if item.get("type") == "function_call":  # one cut off or refused was never made: its arguments are not shown
        arguments = item["arguments"] if item.get("status", "completed") == "completed" and item["arguments"] else "{}"
        return {"role": "assistant", "content": f'<tool_call>[{{"name": "{item["name"]}", '
                                                f'"arguments": {arguments}}}]</tool_call>'}
    if item.get("type") == "function_call_output":
        name = next((i["name"] for i in items.values()
                     if i.get("type") == "function_call" and i.get("call_id") == item["call_id"]), "tool")
        return {"role": "tool", "name": name, "content": item["output"][:MAX_RESULT_CHARS]}
    return None


async def run_card_tool(tool: Tool, call: ToolCall, client: Any) -> tuple[str, bool]:
    """(output, ok) of a card's HTTP tool; a failure is an output too, so the reply can say it could not look."""
    try:
        return await call_http(tool, check_arguments(tool, call.arguments), client), True
    except ToolError as e:
        log.warning("card tool %s failed: %s", tool.name, e)
        return f"error: {e}", False


def failure_line(handoff: Optional[str]) -> str:
    """What the character says when a lookup failed: never a guess at what it would have said."""
    line = "Sorry, I could not look that up just now."
    return f"{line} {handoff}" if handoff else line


TOOL_ITEMS = ("function_call", "function_call_output")


class SessionTools:
    """A session's tools: the client's (`session.tools`), the character card's, and what follows a call."""

    def __init__(self, session: Any):
        self.session = session
        self._http: Any = None

    def offer(self, options: dict) -> tuple[list[Tool], str]:
        """The tools a new reply may call and the choice, with response.create's overrides."""
        from livehost.persona.tools import parse_tool_choice, parse_tools

        config = self.session.config
        try:
            tools = parse_tools(options["tools"], "response.tools") if "tools" in options else list(config.tools)
            choice = parse_tool_choice(options["tool_choice"], tools, "response.tool_choice") \
                if "tool_choice" in options else config.tool_choice
        except ToolError as e:
            raise ProtocolError(str(e), code="invalid_value", param=e.param) from None
        card = self.session.dialogue.character.function_tools()
        names = {t.name for t in tools}
        tools += [t for t in card if t.name not in names]
        return tools, (choice if choice in ("auto", "none", "required") or choice in names else "auto")

    @staticmethod
    def results_pending(conversation: list[dict]) -> list[tuple[str, str]]:
        """The tool results after the last user or assistant words: the next reply speaks from them."""
        out = []
        for message in reversed(conversation):
            if message["role"] != "tool":
                break
            out.append((message.get("name", "tool"), message["content"]))
        return out[::-1]

    def after(self, reply: Any) -> None:
        """A reply called tools: the card's are called here, and then a reply speaks from their results."""
        card = {t.name: t for t in reply.plan.tools if t.http is not None}
        calls = [c for c in reply.calls if c["name"] in card and c["status"] == "completed"]
        if calls:
            self.session._spawn(self._answer(calls, card))

    async def _answer(self, calls: list[dict], card: dict[str, Tool]) -> None:
        import httpx

        session = self.session
        if self._http is None:
            self._http = httpx.AsyncClient()
        for call in calls:
            output, _ = await run_card_tool(card[call["name"]], ToolCall(call["call_id"], call["name"],
                                                                        call["arguments"]), self._http)
            item = output_item(call["call_id"], output)
            session._add_item(item)
            session.emit("conversation.item.done", item=item)
        if session.reply is None:  # the user spoke meanwhile: their turn comes first
            session._start_reply()

    def prepare(self, plan: Any, conversation: list[dict], dialogue: Any) -> bool:
        """Plan a reply that speaks from tool results, if results are what it answers; False: plan as usual."""
        plan.conversation = conversation
        results = self.results_pending(conversation)
        if not results:
            return False
        from livehost.persona.tool_calls import answer_prompt

        plan.dialogue = dialogue
        if any(output.startswith("error: ") for _, output in results):
            plan.script = failure_line(dialogue.character.knowledge.handoff_message)
            plan.handoff = "tool_failed"
        elif hasattr(plan.llm or self.session.engines.llm, "choose_tools"):
            # The embedded small models garble JSON when they reword it (measured with @openai/agents: 'The result
            # is: "5521, orderstatus\", status\,...'): the result itself is said, as FAQ answers are.
            plan.script = found_line(results)
        else:
            plan.messages = answer_prompt(dialogue.character.persona_prompt(), conversation, results)
        return True

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
