"""Deciding whether a reply calls tools, and answering from what a tool returned.

With the embedded model the decision is its own short pass, constrained by a grammar: the model can write only
`<tool_call>[...]</tool_call>` holding calls of the offered tools with arguments that fit their schemas (an empty
list in `auto` means "answer in words"). It is asked in the tool-calling format SmolLM2 and Qwen2.5 were trained
on. In `auto`, a call whose text arguments the user never said is not made: the small models fill a missing
order number with one of their own (measured: "1234567890"), and a made-up lookup is worse than a question back.
An OpenAI-compatible server decides natively (`tools`, `tool_choice`).
"""
from __future__ import annotations

import copy
import json
import logging
import re
from dataclasses import dataclass
from typing import Any, Optional

from livehost.persona.reply_filter import Prompt
from livehost.persona.tools import (MAX_CALLS, Tool, ToolError, calls_schema, check_arguments, offered,
                                    quote_result)

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
    text: Optional[str] = None  # a server that answered in words at once: the reply says this


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


async def decide(llm: Any, conversation: list[dict], tools: list[Tool], choice: str) -> Decision:
    """Which tools this reply calls (none: it answers in words). `conversation` as Conversation.for_llm gives it."""
    tools = offered(tools, choice)
    if not tools:
        return Decision([])
    if conversation and conversation[-1]["role"] == "tool" and choice == "auto":
        return Decision([])  # a result has just come back: answer from it (never call again in a loop)
    if hasattr(llm, "chat_tools"):
        message = await llm.chat_tools(conversation, [_chat_tool(t) for t in tools], _chat_choice(choice))
        calls = [(c.get("id"), (c.get("function") or {}).get("name"), (c.get("function") or {}).get("arguments")
                  or "{}") for c in message.get("tool_calls") or []]
        checked = _checked(tools, calls)
        return Decision(checked, None if checked else (message.get("content") or None))
    if not hasattr(llm, "choose_tools"):
        return Decision([])
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
