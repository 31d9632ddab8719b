"""Identity and access (issue 13, items 1-6): who a session is comes from its credential, never from the client;
web pages are checked by Origin, loopback servers by Host; calls, memories, metrics and files are guarded."""
from __future__ import annotations

import logging
from urllib.parse import quote

import httpx
import pytest
import websockets

from hardening_doubles import connect, memory_store, served

KEY = "sk-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


async def mint(srv, headers=None, **body) -> httpx.Response:
    async with httpx.AsyncClient(base_url=srv.url) as http:
        return await http.post("/v1/realtime/client_secrets", headers=headers or {}, json=body)


# ---- 1. minting ------------------------------------------------------------------------------------------------

async def test_with_api_keys_no_one_mints_a_token_without_a_key(settings):
    with served(settings, api_keys=[KEY]) as srv:  # page_tokens is on by default: still no keyless tokens
        refused = await mint(srv)
        assert refused.status_code == 401, refused.text
        assert (await mint(srv, {"Origin": srv.url})).status_code == 401  # not even for the server's own page
        token = (await mint(srv, AUTH)).json()["value"]
        assert (await mint(srv, {"Authorization": f"Bearer {token}"})).status_code == 401, "a token minted a token"
        with pytest.raises(websockets.exceptions.InvalidStatus):
            await connect(srv)


async def test_a_token_minted_with_a_key_binds_user_and_character(settings):
    with served(settings, api_keys=[KEY]) as srv:
        answer = (await mint(srv, AUTH, session={"livehost": {"user_id": "u_42", "character": "mika"}})).json()
        assert answer["session"]["livehost"] == {"user_id": "u_42", "character": "mika"}
        client = await connect(srv, answer["value"])
        try:
            assert client.created["livehost"]["user_id"] == "u_42"
            assert client.created["livehost"]["character"] == "mika"
            await client.send({"type": "session.update", "session": {"livehost": {"user_id": "ada"}}})
            error = await client.error()
            assert error["code"] == "user_id_not_allowed" and error["param"] == "session.livehost.user_id"
            await client.send({"type": "session.update", "session": {"livehost": {"character": "lumi"}}})
            assert (await client.error())["code"] == "character_not_allowed"
            await client.send({"type": "session.update", "session": {"livehost": {"user_id": "u_42"}}})  # the same
            updated = (await client.until("session.updated"))[-1]["session"]["livehost"]
            assert (updated["user_id"], updated["character"]) == ("u_42", "mika")
            await client.text_turn()
        finally:
            await client.close()
        # a key holder may pick the user itself
        client = await connect(srv, KEY)
        await client.send({"type": "session.update", "session": {"livehost": {"user_id": "ada"}}})
        assert (await client.until("session.updated"))[-1]["session"]["livehost"]["user_id"] == "ada"
        await client.close()


async def test_bad_mint_requests_are_400_not_500(settings):
    with served(settings, api_keys=[KEY]) as srv:
        async with httpx.AsyncClient(base_url=srv.url, headers=AUTH) as http:
            for body in ('{"expires_after": {"seconds": NaN}}', '{"expires_after": {"seconds": "nan"}}',
                         '{"expires_after": {"seconds": -5}}', '[1]', '{"session": {"livehost": {"user_id": "../x"}}}',
                         '{"session": {"livehost": {"character": "nobody"}}}', "{oops"):
                r = await http.post("/v1/realtime/client_secrets", content=body,
                                    headers={"Content-Type": "application/json"})
                assert r.status_code == 400, (body, r.status_code, r.text)


async def test_keyless_page_tokens_are_anonymous_and_cannot_bind_a_user(settings):
    with served(settings) as srv:
        page = {"Origin": srv.url}
        assert (await mint(srv, page, session={"livehost": {"user_id": "ada"}})).status_code == 403
        token = (await mint(srv, page)).json()["value"]
        first = await connect(srv, token, origin=srv.url)
        second = await connect(srv, token, origin=srv.url)
        try:
            ids = [c.created["livehost"]["user_id"] for c in (first, second)]
            assert all(i and i.startswith("anon_") for i in ids) and ids[0] != ids[1], ids
            await first.send({"type": "session.update", "session": {"livehost": {"user_id": "ada"}}})
            assert (await first.error())["code"] == "user_id_not_allowed"
            await first.text_turn()
        finally:
            await first.close()
            await second.close()
        # a browser with no token at all is a visitor too; a local program (no Origin) is the operator
        visitor = await connect(srv, origin="http://localhost:5173")
        assert visitor.created["livehost"]["user_id"].startswith("anon_")
        await visitor.send({"type": "session.update", "session": {"livehost": {"user_id": "ada"}}})
        assert (await visitor.error())["code"] == "user_id_not_allowed"
        await visitor.close()
        local = await connect(srv)
        await local.send({"type": "session.update", "session": {"livehost": {"user_id": "ada"}}})
        assert (await local.until("session.updated"))[-1]["session"]["livehost"]["user_id"] == "ada"
        await local.close()


async def test_anonymous_sessions_write_no_long_term_memory(settings, tmp_path):
    store = memory_store(tmp_path / "memory.db")
    with served(settings, memory=store) as srv:
        client = await connect(srv, origin=srv.url)
        await client.send({"type": "session.update", "session": {"livehost": {"character": "sol"}}})
        await client.text_turn("My name is Ada. I am allergic to peanuts.")
        await client.close()
        local = await connect(srv)  # the operator's own program may keep memories
        await local.send({"type": "session.update", "session": {"livehost": {"character": "sol", "user_id": "ada"}}})
        await local.text_turn("My name is Ada. I am allergic to peanuts.")
        await local.close()
    users = dict(store.users())
    store.close()
    assert not any(u.startswith("anon_") for u in users), users
    assert users.get("ada", 0) >= 1, users


# ---- 3. origins and hosts --------------------------------------------------------------------------------------

async def test_foreign_origins_and_hosts_are_refused(settings):
    with served(settings) as srv:
        with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
            await connect(srv, origin="http://evil.example")
        assert refused.value.response.status_code == 403
        offer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n"
        async with httpx.AsyncClient(base_url=srv.url) as http:
            r = await http.post("/v1/realtime/calls", content=offer,
                                headers={"Origin": "http://evil.example", "Content-Type": "text/plain"})
            assert r.status_code == 403 and srv.app.state.calls == {}
            r = await http.post("/v1/realtime/client_secrets", headers={"Origin": "http://evil.example"})
            assert r.status_code == 403
            # DNS rebinding: evil.example resolved to 127.0.0.1 sends its own name as Host
            r = await http.get("/v1/characters", headers={"Host": f"evil.example:{srv.port}"})
            assert r.status_code == 421
            r = await http.get("/", headers={"Host": "evil.example"})
            assert r.status_code == 421
            # CORS: a loopback origin is answered with the headers it needs, a foreign one is not served at all
            pre = await http.options("/v1/realtime/client_secrets", headers={
                "Origin": "http://localhost:5173", "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type"})
            assert pre.status_code == 204 and pre.headers["access-control-allow-origin"] == "http://localhost:5173"
            r = await http.get("/v1/characters", headers={"Origin": "http://localhost:5173"})
            assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "http://localhost:5173"
            pre = await http.options("/v1/realtime/client_secrets", headers={
                "Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})
            assert pre.status_code == 403 and "access-control-allow-origin" not in pre.headers
            assert (await http.get("/v1/characters")).status_code == 200  # programs send no Origin
    with served(settings, allowed_origins=["https://shop.example"]) as srv:
        client = await connect(srv, origin="https://shop.example")
        await client.close()
        async with httpx.AsyncClient(base_url=srv.url) as http:
            assert (await http.get("/v1/characters", headers={"Host": "shop.example"})).status_code == 200


def test_binding_beyond_loopback_without_keys_warns(settings, caplog):
    from engine_doubles import engines
    from hardening_doubles import with_server
    from livehost.server.app import create_app
    with caplog.at_level(logging.WARNING, logger="livehost"):
        create_app(with_server(settings, host="0.0.0.0"), engines())
    assert any("api_keys" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="livehost"):
        create_app(with_server(settings, host="0.0.0.0", api_keys=[KEY]), engines())
        create_app(with_server(settings, host="127.0.0.1"), engines())
    assert not any("api_keys" in r.getMessage() for r in caplog.records)


# ---- 5. user ids -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("user", ["a/b", "..", "../../etc/passwd", " spaced", "x" * 129, "anon_1234", "naïve"])
async def test_bad_user_ids_are_refused_where_they_enter(settings, user):
    with served(settings, api_keys=[KEY]) as srv:
        assert (await mint(srv, AUTH, session={"livehost": {"user_id": user}})).status_code == 400
        client = await connect(srv, KEY)
        await client.send({"type": "session.update", "session": {"livehost": {"user_id": user}}})
        error = await client.error()
        assert error["code"] == "invalid_value" and error["param"] == "session.livehost.user_id"
        await client.text_turn()
        await client.close()


async def test_every_stored_user_can_be_listed_and_erased(settings, tmp_path):
    store = memory_store(tmp_path / "memory.db")
    for user in ("a/b", "..", "youtube:小明"):  # stored before ids were checked, or by a chat platform
        store.add(user, f"The user likes tea ({user})")
    with served(settings, memory=store, api_keys=[KEY]) as srv:
        async with httpx.AsyncClient(base_url=srv.url, headers=AUTH) as http:
            listed = (await http.get("/v1/users")).json()["data"]
            assert {u["id"] for u in listed} == {"a/b", "..", "youtube:小明"}
            for user in ("a/b", "..", "youtube:小明"):
                path = "/v1/users/" + quote(user, safe="").replace(".", "%2E") + "/memories"
                quoted = httpx.URL(srv.url).copy_with(raw_path=path.encode())
                r = await http.get(quoted)
                assert r.status_code == 200 and len(r.json()["data"]) == 1, (user, r.status_code, r.text)
                r = await http.delete(quoted)
                assert r.status_code == 200 and r.json()["deleted"] == 1, (user, r.text)
            assert (await http.get("/v1/users")).json()["data"] == []
            r = await http.delete("/v1/users/ada/memories/" + str(1 << 70))  # over 64 bits
            assert r.status_code == 404, r.text
    store.close()


# ---- 4, 6, 9. calls, files, metrics, odd credentials ------------------------------------------------------------

async def test_only_page_files_are_served(settings):
    with served(settings) as srv:
        async with httpx.AsyncClient(base_url=srv.url) as http:
            for path in ("/", "/index.html", "/widget.js", "/lib/realtime.js", "/style.css"):
                assert (await http.get(path)).status_code == 200, path
            for path in ("/__init__.py", "/README.md", "/__pycache__/", "/lib/../__init__.py"):
                assert (await http.get(path)).status_code == 404, path


async def test_metrics_health_and_characters_need_a_key_unless_public(settings):
    with served(settings, api_keys=[KEY]) as srv:
        async with httpx.AsyncClient(base_url=srv.url) as http:
            for path in ("/metrics", "/healthz", "/v1/characters"):
                assert (await http.get(path)).status_code == 401, path
                assert (await http.get(path, headers=AUTH)).status_code == 200, path
            token = (await http.post("/v1/realtime/client_secrets", headers=AUTH)).json()["value"]
            assert (await http.get("/v1/characters", headers={"Authorization": f"Bearer {token}"})).status_code == 200
            assert (await http.get("/metrics", headers={"Authorization": f"Bearer {token}"})).status_code == 401
    with served(settings, api_keys=[KEY], public_metrics=True) as srv:
        async with httpx.AsyncClient(base_url=srv.url) as http:
            for path in ("/metrics", "/healthz", "/v1/characters"):
                assert (await http.get(path)).status_code == 200, path


async def test_odd_credentials_are_refused_cleanly(settings):
    with served(settings, api_keys=[KEY]) as srv:
        async with httpx.AsyncClient(base_url=srv.url) as http:
            for bearer in ("Bearer k\u00e9y".encode("latin-1"), b"Bearer ek_\xff\xfe.sig", b"Bearer ek_!!!.x"):
                r = await http.get("/v1/users/x/memories", headers=[(b"Authorization", bearer)])
                assert r.status_code == 401, (bearer, r.status_code, r.text)
                r = await http.post("/v1/realtime/client_secrets", headers=[(b"Authorization", bearer)])
                assert r.status_code == 401, (bearer, r.status_code, r.text)
        for bearer in ("Bearer k\u00e9y", "Bearer ek_\u00ff.sig"):
            with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
                await websockets.connect(srv.ws_url, additional_headers={"Authorization": bearer})
            assert refused.value.response.status_code == 401


async def test_hangup_needs_the_calls_own_credential(settings):
    aiortc = pytest.importorskip("aiortc")
    s = settings.model_copy(update={"webrtc": settings.webrtc.model_copy(update={"host_addresses": ["127.0.0.1"]})})
    with served(s, api_keys=[KEY]) as srv:
        async with httpx.AsyncClient(base_url=srv.url, timeout=20) as http:
            mine = (await http.post("/v1/realtime/client_secrets", headers=AUTH)).json()["value"]
            other = (await http.post("/v1/realtime/client_secrets", headers=AUTH)).json()["value"]
            pc = aiortc.RTCPeerConnection()
            pc.addTransceiver("audio", direction="sendrecv")
            pc.createDataChannel("oai-events")
            await pc.setLocalDescription(await pc.createOffer())
            r = await http.post("/v1/realtime/calls", content=pc.localDescription.sdp,
                                headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {mine}"})
            assert r.status_code == 201, r.text
            hangup = r.headers["Location"] + "/hangup"
            assert (await http.post(hangup)).status_code == 401
            assert (await http.post(hangup, headers={"Authorization": f"Bearer {other}"})).status_code == 403
            assert len(srv.app.state.calls) == 1
            assert (await http.post(hangup, headers={"Authorization": f"Bearer {mine}"})).status_code == 200
            assert srv.app.state.calls == {}
            await pc.close()
