"""A seeded fuzz of the Realtime parser and the session's event handling (issue 13): thousands of mutants of valid
client events (wrong types, missing and extra keys, odd numbers, lone surrogates, deep nesting, broken JSON) go
into one real session on engine doubles. Whatever comes in, handle() returns, every event out can be sent as
UTF-8 JSON, and the same session still answers a turn at the end. Bounded: at most MUTANTS, at most BUDGET_S."""
from __future__ import annotations

import asyncio
import copy
import json
import random
import time

from engine_doubles import drain, engines, events_until, send, user_text
from hardening_doubles import with_server
from livehost.server.realtime_ws import encode_event
from livehost.server.session import RealtimeSession

SEED, MUTANTS, BUDGET_S = 1313, 3000, 30.0
VALID = [
    {"type": "session.update", "session": {"type": "realtime", "instructions": "Be brief.",
                                           "output_modalities": ["text"], "livehost": {"character": "lumi"},
                                           "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000},
                                                               "turn_detection": {"type": "server_vad",
                                                                                  "threshold": 0.5}},
                                                     "output": {"voice": "default", "speed": 1.0}}}},
    {"type": "input_audio_buffer.append", "audio": "AAAAAAAAAAAAAAAA"},
    {"type": "input_audio_buffer.commit"},
    {"type": "input_audio_buffer.clear"},
    {"type": "conversation.item.create", "previous_item_id": None,
     "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hello"}]}},
    {"type": "conversation.item.create",
     "item": {"id": "item_a", "type": "message", "role": "assistant", "content": [{"type": "output_text",
                                                                                   "text": "hi"}]}},
    {"type": "conversation.item.retrieve", "item_id": "item_a"},
    {"type": "conversation.item.delete", "item_id": "item_a"},
    {"type": "conversation.item.truncate", "item_id": "item_a", "content_index": 0, "audio_end_ms": 10},
    {"type": "response.create", "response": {"output_modalities": ["text"], "instructions": "Short.",
                                             "max_output_tokens": 8}},
    {"type": "response.cancel"},
    {"type": "output_audio_buffer.clear"},
]
KEYS = ["type", "event_id", "session", "item", "response", "audio", "item_id", "content", "text", "role", "id",
        "output_modalities", "modalities", "instructions", "livehost", "user_id", "character", "turn_detection",
        "format", "rate", "max_output_tokens", "transcript", "previous_item_id", "audio_end_ms", "speed"]
ODD = [None, True, False, 0, -1, 1 << 70, -(1 << 70), 1e308, 0.5, float("nan"), float("inf"), "", "x" * 2000,
       "\ud800", "\udfff tail", "a/b/../..", [], {}, [[[]]], {"a": {"b": []}}, [1, "two", None], "audio",
       "text", "server_vad", "realtime", "user", "assistant", "system"]


def _nodes(value, path=()):
    yield path, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _nodes(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _nodes(v, path + (i,))


def _set(root, path, value):
    if not path:
        return value
    parent = root
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = value
    return root


def mutant(rng: random.Random) -> str:
    event = copy.deepcopy(rng.choice(VALID))
    for _ in range(rng.randint(1, 3)):
        nodes = list(_nodes(event))
        path, value = rng.choice(nodes)
        op = rng.randrange(6)
        if op == 0:
            event = _set(event, path, rng.choice(ODD))
        elif op == 1 and isinstance(value, dict) and value:
            del value[rng.choice(list(value))]
        elif op == 2 and isinstance(value, dict):
            value[rng.choice(KEYS)] = rng.choice(ODD + [copy.deepcopy(rng.choice(VALID))])
        elif op == 3 and isinstance(event, dict):
            event["type"] = rng.choice(VALID)["type"]
        elif op == 4:
            event = _set(event, path, "[" * rng.randint(30, 1200) + "]" * rng.randint(0, 1200))
        elif op == 5 and isinstance(value, list) and value:
            value.append(copy.deepcopy(value[0]))
    text = json.dumps(event)
    cut = rng.random()
    if cut < 0.05:
        return text[: rng.randrange(max(1, len(text)))]  # truncated JSON
    if cut < 0.10:
        i = rng.randrange(len(text))
        return text[:i] + rng.choice(['"', "{", "]", "\\", "\\ud800", "\x00", "é"]) + text[i:]
    if cut < 0.15:
        return text.replace('"[[', "[[").replace(']]"', "]]")  # nesting as JSON, not as a string
    return text


async def test_fuzzed_events_never_end_the_session(settings):
    rng = random.Random(SEED)
    s = RealtimeSession(engines(), with_server(settings, responses_per_minute=1_000_000))  # rates: not this test
    s.start()
    started, done, errors = time.monotonic(), 0, 0
    try:
        for done in range(1, MUTANTS + 1):
            await asyncio.wait_for(s.handle(mutant(rng)), 5)
            if done % 20 == 0:
                await asyncio.sleep(0)  # let replies and transcriptions that the mutants started run
                for event in drain(s):
                    assert isinstance(event, dict) and isinstance(event.get("type"), str), event
                    encode_event(event).encode("utf-8")
                    errors += event["type"] == "error"
                if s.reply is not None:
                    s.reply.cancel("client_cancelled")
            if time.monotonic() - started > BUDGET_S:
                break
        assert done >= 500 and errors > done // 10, (done, errors)  # it did run, and mutants were refused
        await asyncio.sleep(0.2)
        if s.reply is not None:
            s.reply.cancel("client_cancelled")
            await asyncio.sleep(0.2)
        drain(s)
        await s.handle(json.dumps({"type": "session.update", "session": {"output_modalities": ["text"]}}))
        await send(s, **user_text("Are you still there?"))
        await send(s, type="response.create")
        events = await events_until(s, "response.done", timeout=10)
        assert events[-1]["response"]["status"] == "completed", events[-1]
    finally:
        await asyncio.wait_for(s.close(), 10)
    print(f"{done} mutants in {time.monotonic() - started:.1f} s, {errors} errors")
