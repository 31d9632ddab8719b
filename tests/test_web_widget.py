"""The embeddable widget on another site (another loopback origin) whose CSS and JS are hostile: the launcher
shows, the panel opens, Mika answers a knowledge question with its source, "Talk to a person" (and the server's
own handoff offer) reach the host page as `livehost:handoff` events, and voice can be switched on and off."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from conftest import _free_port
from test_web_client import fake_mic_file, launch, shot, wait_for, web_server  # noqa: F401 (fixture)

pytestmark = pytest.mark.e2e

HOSTILE_PAGE = """<!doctype html><html lang="en"><head><title>Pebble & Pine</title><style>
* { all: unset !important; display: none; }
html, body, main, h1, p { display: block !important; }
head, style, script { display: none !important; }
html { font-size: 40px !important; }
body { font: 30px/1.2 serif !important; color: #a00 !important; transform: translateZ(0) !important; padding: 20px !important; }
iframe, button, livehost-widget { display: none !important; width: 5px !important; opacity: .1 !important; }
</style></head><body><main><h1>Pebble &amp; Pine</h1><p>Handmade ceramics, linen and candles since 2011.</p></main>
<script>
window.handoffs = [];
window.addEventListener("livehost:handoff", (e) => window.handoffs.push(e.detail));
window.fetch = () => { throw new Error("this page breaks fetch"); };
window.URLSearchParams = function () { throw new Error("this page breaks URLSearchParams"); };
</script>
<script src="LIVEHOST/widget.js" data-character="mika" data-color="#1f8f6a" data-position="right" data-lang="en" TOKEN defer></script>
</body></html>"""


class HostSite:
    """Another website on its own loopback port (a different origin from livehost). POST /token is its backend
    minting a livehost client token with the API key that only the backend knows."""

    def __init__(self, livehost_url: str, api_key: str | None = None, token_url: str | None = None):
        page = HOSTILE_PAGE.replace("LIVEHOST", livehost_url).replace(
            "TOKEN", f'data-token-url="{token_url}"' if token_url else "")

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                body, status = (page.encode(), 200) if self.path in ("/", "/index.html") else (b"not here", 404)
                self.send_response(status)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
                r = httpx.post(f"{livehost_url}/v1/realtime/client_secrets", headers=headers, json={})
                self.send_response(r.status_code)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(json.dumps({"value": r.json().get("value")}).encode())

            def log_message(self, *args):
                pass

        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)

    def __enter__(self):
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def panel_frame(page):
    return next(f for f in page.frames if "/widget.html" in f.url)


async def open_widget(page, site_url: str, name: str):
    await page.goto(site_url)
    launcher = page.locator("livehost-widget").locator("button.launcher")
    await launcher.wait_for(state="visible", timeout=10_000)
    box = await launcher.bounding_box()
    size = page.viewport_size
    assert box and 56 <= box["width"] <= 64 and box["x"] > size["width"] - 120 and box["y"] > size["height"] - 120, box
    await shot(page, f"{name}-1-closed")
    await launcher.click()
    frame = page.frame_locator("livehost-widget iframe")
    await frame.get_by_role("textbox", name="Message").wait_for(state="visible", timeout=15_000)
    assert await launcher.get_attribute("aria-expanded") == "true"
    return frame


async def ask(frame, question: str) -> None:
    await frame.get_by_role("textbox", name="Message").fill(question)
    await frame.get_by_role("button", name="Send").click()


async def test_widget_on_a_hostile_site(web_server, tmp_path_factory):  # noqa: F811
    mic = fake_mic_file(tmp_path_factory.mktemp("mic"), lead_s=1, tail_s=30, speech=False)
    with HostSite(web_server.url) as site:
        async with launch(mic) as (_, page):
            frame = await open_widget(page, site.url, "widget")
            await frame.get_by_text("Hello, this is Mika").wait_for(timeout=10_000)
            await wait_for(panel_frame(page), "livehostDebug.state === 'listening'", 15)
            await shot(page, "widget-2-open")

            await ask(frame, "Do you sell gift cards?")
            sources = frame.locator(".msg.assistant .sources")
            await sources.wait_for(timeout=60_000)
            assert "faq.csv" in await sources.text_content()
            panel = panel_frame(page)
            await wait_for(panel, "livehostDebug.events.some(e => e.type === 'response.done')", 90)
            answer = await frame.locator(".msg.assistant .text").last.text_content()
            assert answer.strip(), "no answer text"
            kinds = await panel.evaluate("livehostDebug.events.map(e => e.type)")
            assert "response.output_text.delta" in kinds and "response.output_audio.delta" not in kinds  # text first
            await shot(page, "widget-3-answer-with-source")

            await frame.get_by_role("button", name="Talk to a person").click()
            await wait_for(page, "window.handoffs.length === 1", 5)
            detail = (await page.evaluate("window.handoffs"))[0]
            assert detail["character"] == "mika" and detail["reason"] == "user_requested"
            assert {"role": "user", "text": "Do you sell gift cards?"} in detail["transcript"]
            await shot(page, "widget-4-handoff")

            await ask(frame, "Can I talk to a real person?")  # the server offers a human: livehost.handoff
            await wait_for(page, "window.handoffs.length === 2", 30)
            assert (await page.evaluate("window.handoffs"))[1]["reason"] == "user_asked"

            mic_button = frame.get_by_role("button", name="Turn voice on")
            await mic_button.click()
            await wait_for(panel, "livehostDebug.events.some(e => e.type === 'session.updated' && "
                                  "e.session.output_modalities[0] === 'audio')", 10)
            await wait_for(panel, "livehostDebug.session.mic !== null", 10)
            assert await frame.get_by_role("button", name="Turn voice off").get_attribute("aria-pressed") == "true"
            await shot(page, "widget-5-voice-on")
            await frame.get_by_role("button", name="Turn voice off").click()
            await wait_for(panel, "livehostDebug.session.mic === null && "
                                  "livehostDebug.session.o.output === 'text'", 10)

            await page.keyboard.press("Escape")  # closes the panel, focus back on the launcher
            await wait_for(page, "document.querySelector('livehost-widget').shadowRoot"
                                 ".querySelector('.launcher').getAttribute('aria-expanded') === 'false'", 5)
