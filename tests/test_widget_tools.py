"""The widget while a card's HTTP tool runs: its status line says what is being looked up for as long as the shop's
service takes to answer, and goes back to the usual state once the answer comes (Chromium, the real server, the
bundled Qwen deciding the call, a shop service of the test's own that answers after a delay)."""
from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import test_web_widget
from conftest import RunningServer, _free_port
from test_web_client import fake_mic_file, launch, shot, wait_for
from test_web_widget import HostSite, ask, open_widget, panel_frame

pytestmark = pytest.mark.e2e
DELAY_S = 4.0


class SlowShop:
    """The shop's order service: answers GET /orders/<id> after DELAY_S, and notes when it was asked and answered."""

    def __init__(self):
        self.asked: list[float] = []
        self.answered: list[float] = []
        shop = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                shop.asked.append(time.monotonic())
                time.sleep(DELAY_S)
                body = json.dumps({"order": self.path.rsplit("/", 1)[-1], "status": "shipped",
                                   "arrives": "Friday"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                shop.answered.append(time.monotonic())

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def shop_server(settings, engines, tmp_path):
    from livehost.persona import model_files
    from livehost.persona.character import BUILTIN_DIR, CharacterLibrary
    from livehost.persona.llm import LlamaCppLLM
    from livehost.server.app import create_app

    shop = SlowShop()
    (tmp_path / "shopkeeper.yaml").write_text(f"""
name: Shopkeeper
persona: a shop assistant at Pebble & Pine
style: brief
greeting: Hello, this is the Pebble & Pine shop.
knowledge:
  handoff_message: Would you like me to connect you with a person?
tools:  # the three tools of bench/tools.py, in its order: its router figures hold for this card
  - name: order_status
    description: Look up where a customer's order is, by its number.
    parameters: {{type: object, properties: {{order_id: {{type: string}}}}, required: [order_id]}}
    http: {{url: "{shop.url}/orders/{{order_id}}", timeout_s: 20}}
  - name: product_stock
    description: Check whether a product is in stock.
    parameters: {{type: object, properties: {{product: {{type: string}}}}, required: [product]}}
    http: {{url: "{shop.url}/stock/{{product}}", timeout_s: 20}}
  - name: get_weather
    description: The weather today in a city.
    parameters: {{type: object, properties: {{city: {{type: string}}}}, required: [city]}}
    http: {{url: "{shop.url}/weather/{{city}}", timeout_s: 20}}
""")
    # Qwen decides: the bundled 135M model calls only the weather tool on bench/tools.py's questions
    qwen = LlamaCppLLM(model_files.QWEN)
    qwen.warmup()
    mine = dataclasses.replace(engines, characters=CharacterLibrary([BUILTIN_DIR, tmp_path]), llm=qwen)
    with RunningServer(create_app(settings, mine), _free_port()) as srv:
        yield srv, shop
    shop.close()


STATUS = "document.getElementById('status').textContent"


async def test_the_status_line_says_what_is_looked_up_while_a_tool_runs(shop_server, tmp_path, monkeypatch):
    server, shop = shop_server
    monkeypatch.setattr(test_web_widget, "HOSTILE_PAGE",
                        test_web_widget.HOSTILE_PAGE.replace('data-character="mika"', 'data-character="shopkeeper"'))
    mic = fake_mic_file(tmp_path, lead_s=1, tail_s=30, speech=False)
    with HostSite(server.url) as site:
        async with launch(mic) as (_, page):
            frame = await open_widget(page, site.url, "widget-tool")
            panel = panel_frame(page)
            await wait_for(panel, "livehostDebug.state === 'listening'", 20)
            await ask(frame, "Where is my order 5521?")
            await wait_for(panel, f"{STATUS}.startsWith('Looking up')", 60)  # the call is out: the shop is asked
            assert "order status" in await panel.evaluate(STATUS)
            await shot(page, "widget-tool-1-looking-up")
            # the call's own reply is over (response.done) long before the shop answers: the line stays meanwhile
            await wait_for(panel, "livehostDebug.events.some(e => e.type === 'response.done' && "
                                  "e.response.output.some(o => o.type === 'function_call'))", 10)
            assert shop.asked and not shop.answered
            await asyncio.sleep(DELAY_S / 2)  # halfway through the lookup
            assert not shop.answered and (await panel.evaluate(STATUS)).startswith("Looking up")
            # the result comes back and the answer is shown: the status line is the usual state again
            await frame.locator(".msg.assistant .text", has_text="shipped").wait_for(timeout=60_000)
            assert shop.answered
            await wait_for(panel, f"!{STATUS}.startsWith('Looking up')", 10)
            await shot(page, "widget-tool-2-answered")
            answer = await frame.locator(".msg.assistant .text").last.text_content()
            assert "shipped" in answer and "Friday" in answer, answer
