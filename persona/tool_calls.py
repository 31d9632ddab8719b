"""Deciding whether a reply calls tools, and answering from what a tool returned.

With the embedded model the decision is its own short pass, constrained by a grammar: the model can write only
`<tool_call>[...]</tool_call>` holding calls of the offered tools with arguments that fit their schemas (an empty
list in `auto` means "answer in words"). It is asked in the tool-calling format SmolLM2 and Qwen2.5 were trained
on. In `auto`, a call whose text arguments the user never said is not made: the small models fill a missing
order number with one of their own (measured: "1234567890"), and a made-up lookup is worse than a question back.
An OpenAI-compatible server decides natively (`tools`, `tool_choice`), streamed: its words, or its calls' arguments,
piece by piece as they arrive.
"""
from __future__ import annotations

import copy
import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Optional, Union

from livehost.persona.reply_filter import Prompt
from livehost.persona.tools import (MAX_ARGUMENTS_BYTES, MAX_CALLS, Tool, ToolError, calls_schema,
                                    check_arguments, offered, quote_result)

log = logging.getLogger("livehost.tools")
ROUTER_TOKENS = 200
_TEXT_MAX = 48  # characters of a free text argument in a router call (an order number, a city, a product)
_ROUTER = ("You are an expert in composing functions. You are given a question and a set of possible functions. "
           "Based on the question, you will need to make one or more function/tool calls to achieve the purpose. "
           "If none of the functions can be used, point it out and refuse to answer. If the given question lacks the "
           "parameters required by the function, also point it out.\n\nYou have access to the following tools:\n"
           "<tools>{tools}</tools>\n\nThe output MUST strictly adhere to the following format, and NO other text "
           "MUST be included.\nThe example format is as follows. Please make sure the parameter type is correct. If no "
           "function call is needed, please make the tool calls an empty list '[]'.\n<tool_call>[\n"
           "{{\"name\": \"func_name1\", \"arguments\": {{\"argument1\": \"value1\", \"argument2\": \"value2\"}}}},\n"
           "... (more tool calls as required)\n]</tool_call>")


@dataclass(frozen=True)
class ToolCall:
    call_id: str
    name: str
    arguments: str  # JSON text, checked against the tool's schema


@dataclass
class Decision:
    calls: list[ToolCall]
    text: Optional[str] = None  # a server that answered in words at once (decide() only; decide_stream streams them)
    rejected: dict = field(default_factory=dict)  # streamed call index -> why its arguments were refused


@dataclass(frozen=True)
class Piece:
    """Part of a decision as it arrives: words to say (index None), or a piece of call `index`'s arguments."""
    index: Optional[int]
    text: str
    call_id: str = ""
    name: str = ""


def router_grammar(tools: list[Tool], at_least_one: bool, at_most: int = MAX_CALLS) -> str:
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    schema = copy.deepcopy(calls_schema(tools))  # the tools' own schemas stay as declared
    schema["minItems"], schema["maxItems"] = (1 if at_least_one else 0), at_most
    for call in schema["items"].get("oneOf", [schema["items"]]):
        params = call["properties"]["arguments"]
        for name, prop in params.get("properties", {}).items():
            if isinstance(prop, dict) and prop.get("type") == "string" and \
                    not {"pattern", "enum", "const", "format"} & set(prop):
                # A free text argument is short plain text: a small model that cannot find the value otherwise
                # writes the rest of the call (and its chatter) inside the string until the budget runs out.
                low = max(int(prop.get("minLength", 0)), 1 if name in params.get("required", []) else 0)
                high = min(int(prop.get("maxLength", _TEXT_MAX)), _TEXT_MAX)
                if low <= high:
                    params["properties"][name] = {**prop, "pattern": f"^[^\"\\\\<>{{}}\\[\\]\\n]{{{low},{high}}}$"}
    calls = json_schema_to_gbnf(json.dumps(schema)).replace("root ::=", "calls ::=", 1)
    return 'root ::= "<tool_call>" calls "</tool_call>"\n' + calls


def _said_by_user(value: Any, user_text: str) -> bool:
    if isinstance(value, str):
        return not value.strip() or value.casefold() in user_text.casefold()
    if isinstance(value, bool) or value is None:
        return True
    if isinstance(value, (int, float)):
        return re.search(rf"(?<!\d){re.escape(str(value))}(?!\d)", user_text) is not None
    if isinstance(value, list):
        return all(_said_by_user(v, user_text) for v in value)
    if isinstance(value, dict):
        return all(_said_by_user(v, user_text) for v in value.values())
    return False


def _new_call_id() -> str:
    from secrets import token_hex

    return f"call_{token_hex(8)}"


def _checked(tools: list[Tool], raw_calls: list[tuple[Optional[str], str, str]]) -> list[ToolCall]:
    by_name = {t.name: t for t in tools}
    out = []
    for call_id, name, arguments in raw_calls[:MAX_CALLS]:
        tool = by_name.get(name)
        if tool is None:
            log.warning("the model called %r, which was not offered; ignored", name)
            continue
        try:
            check_arguments(tool, arguments)
        except ToolError as e:
            log.warning("the model's call of %s does not fit its schema (%s); ignored", name, e)
            continue
        out.append(ToolCall(call_id or _new_call_id(), name, arguments))
    return out


async def decide(llm: Any, conversation: list[dict], tools: list[Tool], choice: str,
                 messages: Optional[list[dict]] = None) -> Decision:
    """Which tools this reply calls (none: it answers in words). `conversation` as Conversation.for_llm gives it."""
    words, decision = [], Decision([])
    async for update in decide_stream(llm, conversation, tools, choice, messages):
        if isinstance(update, Decision):
            decision = update
        elif update.index is None:
            words.append(update.text)
    return Decision(decision.calls, "".join(words) or None if not decision.calls else None, decision.rejected)


async def decide_stream(llm: Any, conversation: list[dict], tools: list[Tool], choice: str,
                        messages: Optional[list[dict]] = None, max_tokens: int = ROUTER_TOKENS
                        ) -> AsyncIterator[Union[Piece, Decision]]:
    """The decision as it arrives: Pieces (words, or pieces of a call's arguments), then the Decision, last.
    An OpenAI-compatible server streams it (`messages`: the reply's own prompt, so words it answers with are in
    character); the embedded model's router pass gives each call whole."""
    tools = offered(tools, choice)
    if not tools or (conversation and conversation[-1]["role"] == "tool" and choice == "auto"):
        yield Decision([])  # nothing to call; or a result has just come back: answer from it (never loop)
        return
    if hasattr(llm, "chat_tools_stream"):
        async for update in _server_stream(llm, messages or [as_chat(m) for m in conversation], tools, choice,
                                           max(max_tokens, ROUTER_TOKENS)):
            yield update
        return
    decision = await _route(llm, conversation, tools, choice) if hasattr(llm, "choose_tools") else Decision([])
    for index, call in enumerate(decision.calls):
        yield Piece(index, call.arguments, call.call_id, call.name)
    yield decision


async def _server_stream(llm: Any, messages: list[dict], tools: list[Tool], choice: str, max_tokens: int
                         ) -> AsyncIterator[Union[Piece, Decision]]:
    """A streamed chat completion with `tools`: words as they come, a call once its name is known and then each
    piece of its arguments. A call of a tool not offered is never announced."""
    offered_names = {t.name for t in tools}
    calls: dict[int, list] = {}  # index -> [call_id, name, arguments so far]
    announced: list[int] = []
    async for delta in llm.chat_tools_stream(list(messages), [_chat_tool(t) for t in tools], _chat_choice(choice),
                                             max_tokens):
        if isinstance(delta.get("content"), str) and delta["content"]:
            yield Piece(None, delta["content"])
        for part in delta.get("tool_calls") or []:
            index, function = part.get("index", 0), part.get("function") or {}
            if not isinstance(index, int) or not 0 <= index < MAX_CALLS or not isinstance(function, dict):
                continue
            call = calls.setdefault(index, [None, "", ""])
            call[0] = call[0] or part.get("id")
            call[1] = call[1] or function.get("name") or ""  # some servers repeat the name in every delta
            piece = function.get("arguments") if isinstance(function.get("arguments"), str) else ""
            call[2] += piece
            if len(call[2].encode()) > MAX_ARGUMENTS_BYTES:
                raise ToolError(f"the model's call of {call[1] or 'a tool'} has arguments over "
                                f"{MAX_ARGUMENTS_BYTES} bytes; the call was not made", "arguments")
            if call[1] not in offered_names:
                continue  # not offered (or its name has not come yet): not announced
            new = index not in announced
            if new:
                announced.append(index)
                call[0], piece = call[0] or _new_call_id(), call[2]  # what came before the name, too
            if piece or new:
                yield Piece(index, piece, call[0], call[1])
    for index, (call_id, name, arguments) in calls.items():
        if index not in announced and name:
            log.warning("the server called %r, which was not offered; ignored", name)
    by_name = {t.name: t for t in tools}
    checked, rejected = [], {}
    for index in announced:
        call_id, name, arguments = calls[index]
        try:
            check_arguments(by_name[name], arguments or "{}")
            checked.append(ToolCall(call_id, name, arguments or "{}"))
        except ToolError as e:
            rejected[index] = str(e)
    yield Decision(checked, None, rejected)


async def _route(llm: Any, conversation: list[dict], tools: list[Tool], choice: str) -> Decision:
    """The embedded model's router pass: one grammar-bound completion."""
    listed = json.dumps([{"name": t.name, "description": t.description, "parameters": t.parameters}
                         for t in tools], ensure_ascii=False)
    recent = [m for m in conversation if m["role"] in ("user", "assistant")][-6:]
    messages = [{"role": "system", "content": _ROUTER.format(tools=listed)},
                *({"role": m["role"], "content": m["content"]} for m in recent)]
    text = await llm.choose_tools(messages, router_grammar(tools, at_least_one=choice != "auto",
                                                             at_most=1 if choice not in ("auto", "required") else MAX_CALLS), ROUTER_TOKENS)
    try:
        written = json.loads(text.strip()[len("<tool_call>"):-len("</tool_call>")])
    except ValueError:  # cut by the token budget before the grammar could close it
        log.warning("the tool router's answer did not finish: %r", text[:120])
        return Decision([])
    calls = [(None, c["name"], json.dumps(c["arguments"], ensure_ascii=False)) for c in written]
    if choice == "auto":
        user_text = " ".join(m["content"] for m in recent if m["role"] == "user")
        kept = [c for c in calls if _said_by_user(json.loads(c[2]), user_text)]
        if len(kept) < len(calls):
            log.info("tool router: %d call(s) with arguments the user never said were not made", len(calls) - len(kept))
        calls = kept
    return Decision(_checked(tools, calls))


def _chat_tool(tool: Tool) -> dict:
    return {"type": "function", "function": {"name": tool.name, "description": tool.description,
                                             "parameters": tool.parameters}}


def _chat_choice(choice: str) -> Any:
    return choice if choice in ("auto", "none", "required") else {"type": "function", "function": {"name": choice}}


def readable(output: str) -> str:
    """A tool's JSON result as words to say ("status: shipped, arriving: Friday"); other text as it is."""
    try:
        value = json.loads(output)
    except ValueError:
        return output.strip()
    if isinstance(value, dict):
        return ", ".join(f"{k.replace('_', ' ')}: {readable(json.dumps(v)) if isinstance(v, (dict, list)) else v}"
                         for k, v in value.items())
    if isinstance(value, list):
        return "; ".join(readable(json.dumps(v)) for v in value)
    return str(value)


def answer_prompt(persona_prompt: str, conversation: list[dict], results: list[tuple[str, str]]) -> Prompt:
    """The messages for the reply that speaks from tool results: the persona, the recent turns, the results as
    data. Grounded: a sentence may claim only what the results and the user's words hold; if none does, the
    result itself is read out."""
    recent = [m for m in conversation if m["role"] in ("user", "assistant")][-6:]
    notes = "\n".join(quote_result(name, output) for name, output in results)
    messages = [{"role": "system", "content": persona_prompt},
                *({"role": m["role"], "content": m["content"]} for m in recent),
                {"role": "system", "content": notes + "\nTell the user what the result says, briefly."}]
    user_text = " ".join(m["content"] for m in recent if m["role"] == "user")
    facts = "\n".join([user_text, *(readable(o) for _, o in results), *(o for _, o in results)])
    return Prompt(messages, facts=facts, fallback=found_line(results))


def found_line(results: list[tuple[str, str]]) -> str:
    """The tool results said as they are: "Here is what I found: status: shipped, arrives: Friday." """
    return " ".join(f"Here is what I found: {readable(output).rstrip('.')}." for _, output in results)


def as_chat(message: dict) -> dict:
    """A conversation message for an LLM that knows only system, user and assistant turns."""
    if message["role"] == "tool":
        return {"role": "system", "content": quote_result(message.get("name", "tool"), message["content"])}
    return {"role": message["role"], "content": message["content"]}
