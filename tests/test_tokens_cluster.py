"""Client tokens across nodes (issue 17 item 2): a token minted on one node opens a session on any node that shares
server.token_secret, with the same identity and the same expiry; a node with another (or no) secret refuses it."""
from __future__ import annotations

import logging
import time

import httpx
import pytest
import websockets

from hardening_doubles import connect, served
from livehost.server import auth
from livehost.server.auth import Gate
from livehost.server.config import ConfigError, load_settings

KEY = "sk-cluster-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
SECRET = "a-shared-cluster-secret-0123456789"


def test_a_token_minted_on_one_gate_is_accepted_by_another_with_the_same_secret():
    a, b, other = Gate([KEY], secret=SECRET), Gate([KEY], secret=SECRET), Gate([KEY], secret=SECRET + "x")
    token, _ = a.mint(300, user_id="u_7", character="mika")
    who = b.identify({"authorization": f"Bearer {token}"})
    assert (who.kind, who.user_id, who.character) == ("token", "u_7", "mika")
    claims, reason = other.claims(token)
    assert claims is None and reason == "invalid client token"
    assert Gate([KEY]).claims(token)[0] is None, "a node without the secret accepted a cluster token"


def test_expiry_is_enforced_by_the_node_that_did_not_mint(monkeypatch):
    a, b = Gate([KEY], secret=SECRET), Gate([KEY], secret=SECRET)
    token, expires = a.mint(30)
    assert b.claims(token)[0] is not None
    real = time.time
    monkeypatch.setattr(auth.time, "time", lambda: real() + 31)  # B's clock, 31 s later
    claims, reason = b.claims(token)
    assert claims is None and "expired" in reason


def test_a_tampered_token_is_refused_everywhere():
    a, b = Gate([KEY], secret=SECRET), Gate([KEY], secret=SECRET)
    token, _ = a.mint(300, user_id="u_7")
    body, _, signature = token[len(auth.TOKEN_PREFIX):].partition(".")
    forged_body = auth.base64.urlsafe_b64encode(b'{"exp": 9999999999, "scope": "realtime", "sub": "admin"}')
    forged = auth.TOKEN_PREFIX + forged_body.decode().rstrip("=") + "." + signature
    assert b.claims(forged) == (None, "invalid client token")


def test_without_a_secret_tokens_are_node_local_and_it_is_logged(caplog):
    with caplog.at_level(logging.INFO, logger="livehost.auth"):
        first, second = Gate([KEY]), Gate([KEY])
    assert "node-local" in caplog.text
    assert not first.shared and Gate([KEY], secret=SECRET).shared
    token, _ = first.mint(300)
    assert second.claims(token)[0] is None


def test_a_short_shared_secret_is_a_config_error(monkeypatch):
    monkeypatch.setenv("LIVEHOST_SERVER__TOKEN_SECRET", "short")
    with pytest.raises(ConfigError, match="server.token_secret"):
        load_settings()
    monkeypatch.setenv("LIVEHOST_SERVER__TOKEN_SECRET", SECRET)
    assert load_settings().server.token_secret == SECRET


async def test_a_token_minted_on_node_a_opens_a_session_on_node_b(settings):
    with served(settings, api_keys=[KEY], token_secret=SECRET) as node_a, \
            served(settings, api_keys=[KEY], token_secret=SECRET) as node_b, \
            served(settings, api_keys=[KEY]) as stranger:
        async with httpx.AsyncClient(base_url=node_a.url) as http:
            minted = await http.post("/v1/realtime/client_secrets", headers=AUTH,
                                     json={"session": {"livehost": {"user_id": "u_42", "character": "mika"}}})
        token = minted.json()["value"]
        client = await connect(node_b, token)
        try:
            assert client.created["livehost"]["user_id"] == "u_42"
            assert client.created["livehost"]["character"] == "mika"
            await client.send({"type": "session.update", "session": {"livehost": {"user_id": "ada"}}})
            assert (await client.error())["code"] == "user_id_not_allowed"  # node B keeps A's binding
        finally:
            await client.close()
        with pytest.raises(websockets.InvalidStatus) as refused:
            await connect(stranger, token)
        assert refused.value.response.status_code == 401
