"""Browser auth: the server holds the API key. A page that cannot get a client token (the token endpoint answers
401 when server.page_tokens is false) says so plainly and opens no session; a site whose backend mints the token
with the key (the widget's data-token-url) talks to livehost without the key ever reaching the browser."""
from __future__ import annotations

import pytest

from conftest import RunningServer, _free_port
from test_web_client import launch, shot, wait_for
from test_web_widget import HostSite, ask, open_widget, panel_frame

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def locked_server(settings, engines):
    from livehost.server.app import create_app
    locked = settings.model_copy(update={
        "server": settings.server.model_copy(update={"api_keys": ["k"], "page_tokens": False}),
        "webrtc": settings.webrtc.model_copy(update={"host_addresses": ["127.0.0.1"]})})
    with RunningServer(create_app(locked, engines), _free_port()) as srv:
        yield srv


async def test_page_without_a_token_is_refused(locked_server):
    async with launch() as (_, page):
        opened = []
        page.on("websocket", lambda ws: opened.append(ws.url))
        page.on("request", lambda r: "/v1/realtime/calls" in r.url and opened.append(r.url))
        await page.goto(f"{locked_server.url}/?character=lumi")
        alert = page.get_by_role("alert")  # with API keys, a page with no token cannot even list the characters
        await alert.wait_for(state="visible", timeout=10_000)
        text = await alert.text_content()
        assert "Not authorised" in text and "client token" in text, text
        assert await page.get_by_role("button", name="Try again").is_visible()
        assert await page.evaluate("livehostDebug.state") == "idle"
        await shot(page, "auth-1-not-authorised")
        assert opened == [], f"a session was opened without a token: {opened}"
        assert locked_server.app.state.calls == {}


async def test_page_with_a_token_in_its_address_talks(locked_server):
    """An operator mints a token with the key and opens the page with it (#token=..., never sent to a server)."""
    import httpx
    async with httpx.AsyncClient(base_url=locked_server.url, headers={"Authorization": "Bearer k"}) as http:
        token = (await http.post("/v1/realtime/client_secrets", json={
            "session": {"livehost": {"character": "lumi"}}})).json()["value"]
    async with launch() as (_, page):
        await page.goto(f"{locked_server.url}/?character=lumi&transport=websocket#token={token}")
        await wait_for(page, "document.querySelector('#character').options.length >= 3", 10)
        await page.get_by_role("button", name="Start talking").click()
        await wait_for(page, "livehostDebug.state === 'listening'", 20)
        created = await page.evaluate("livehostDebug.session.conn.session")  # session.created, as the page got it
        assert created["livehost"]["user_id"].startswith("anon_") and created["livehost"]["character"] == "lumi"


async def test_site_backend_mints_the_token_for_the_widget(locked_server):
    with HostSite(locked_server.url, api_key="k", token_url="/token") as site:
        async with launch() as (_, page):
            keys_seen = []
            page.on("request", lambda r: "Bearer k" == (r.headers.get("authorization") or "") and keys_seen.append(r.url))
            frame = await open_widget(page, site.url, "auth-widget")
            await ask(frame, "What is the capital of Mongolia?")  # not in Mika's documents: she offers a person
            await frame.get_by_text("Shall I pass you to a colleague?").wait_for(timeout=60_000)
            assert await panel_frame(page).evaluate("document.title") == "Mika"  # listed with the backend's token
            await wait_for(page, "window.handoffs.length === 1 && window.handoffs[0].reason === 'no_knowledge'", 10)
            await shot(page, "auth-2-widget-with-backend-token")
            assert keys_seen == []
