"""Inputs that used to end or wedge a session (issue 13, items 7-8): each is now an `error` event naming the
problem, and the same connection answers the next turn. Real server and sessions, engine doubles."""
from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from hardening_doubles import connect, served


def user_item(**overrides) -> dict:
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hello"}], **overrides}
    return {"type": "conversation.item.create", "item": item}


DEEP = '{"type": "session.update", "session": {"instructions": "x", "livehost": ' + "[" * 1000 + "]" * 1000 + "}}"
BAD = [
    ("text not a string", user_item(content=[{"type": "input_text", "text": 123}]), "item.content.text"),
    ("item.id a list", user_item(id=[1, 2]), "item.id"),
    ("item.id an object", user_item(id={"a": 1}), "item.id"),
    ("modalities holding a list", {"type": "session.update", "session": {"output_modalities": [["audio"]]}},
     "session.output_modalities"),
    ("modalities holding an object", {"type": "session.update", "session": {"output_modalities": [{}]}},
     "session.output_modalities"),
    ("response modalities a number", {"type": "response.create", "response": {"output_modalities": 5}},
     "response.output_modalities"),
    ("response instructions a number", {"type": "response.create", "response": {"instructions": 5}},
     "response.instructions"),
    ("nested 1000 deep", DEEP, None),
    ("lone surrogate", '{"type": "session.update", "session": {"instructions": "\\ud800"}}', None),
    ("lone surrogate in a key", '{"type": "session.update", "session": {"\\udfff": 1}}', None),
    ("instructions too long", {"type": "session.update", "session": {"instructions": "x" * 40_000}},
     "session.instructions"),
    ("response instructions too long", {"type": "response.create", "response": {"instructions": "x" * 40_000}},
     "response.instructions"),
    ("voice too long", {"type": "session.update", "session": {"audio": {"output": {"voice": "v" * 500}}}},
     "session.audio.output.voice"),
    ("transcript not a string", user_item(role="assistant", content=[{"type": "output_text", "transcript": []}]),
     "item.content.transcript"),
]


@pytest.fixture(scope="module")
def srv(settings):
    with served(settings) as running:
        yield running


@pytest.mark.parametrize("name,message,param", BAD, ids=[b[0] for b in BAD])
async def test_bad_input_is_an_error_and_the_session_goes_on(srv, name, message, param):
    client = await connect(srv)
    try:
        await client.send(message)
        error = await client.error()
        assert error["type"] == "invalid_request_error" and error["message"], error
        if param:
            assert error["param"] == param, error
        await client.text_turn()
    finally:
        await client.close()


async def test_assistant_item_with_a_number_then_create_cancel_create(srv):
    """Used to kill the reply task: the session never answered again, and was never cleaned up."""
    async with httpx.AsyncClient(base_url=srv.url) as http:
        before = (await http.get("/healthz")).json()["sessions"]
        for _ in range(3):
            client = await connect(srv)
            await client.send(user_item(role="assistant", content=[{"type": "output_text", "text": 123}]))
            assert (await client.error())["param"] == "item.content.text"
            await client.send({"type": "response.create", "response": {"output_modalities": ["text"]}})
            await client.send({"type": "response.cancel"})
            await client.send({"type": "response.create", "response": {"output_modalities": ["text"]}})
            kinds = [e["type"] for e in await client.until("response.done")]
            assert "response.created" in kinds
            await client.text_turn()
            await client.close()
        for _ in range(50):
            if (await http.get("/healthz")).json()["sessions"] == before:
                break
            await asyncio.sleep(0.1)
        assert (await http.get("/healthz")).json()["sessions"] == before, "sessions were left behind"


async def test_a_server_bug_on_one_event_is_an_error_not_the_end(settings):
    from engine_doubles import engines, events_until, send, user_text
    from livehost.server.session import RealtimeSession
    s = RealtimeSession(engines(), settings)
    s.start()

    async def broken(event):
        raise KeyError("a bug")
    s._on_conversation_item_retrieve = broken
    await send(s, type="conversation.item.retrieve", item_id="x")
    error = (await events_until(s, "error"))[-1]["error"]
    assert error["code"] == "server_error" and "KeyError" in error["message"]
    await send(s, **user_text("hi"))
    await send(s, type="response.create")
    assert (await events_until(s, "response.done"))[-1]["response"]["status"] == "completed"
    await s.close()


async def test_server_text_that_utf8_cannot_carry_still_goes_out(srv):
    from livehost.server.realtime_ws import encode_event
    text = encode_event({"type": "x", "delta": "a\ud800b"})
    assert json.loads(text)["delta"] == "a\ud800b"
    text.encode("utf-8")  # the writer can send it
