"""The overlay in stream mode (`/overlay.html?stream=1`) shows and voices the livestream host instead of a session of
its own: a chat message posted to the host comes out of the page (the host's words in the captions, the viewer's
name above them, the voice heard, the mouth moving), an operator's skip silences the page at once, and when the
server goes away and comes back the page reconnects by itself and plays the host again."""
from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager

import httpx
import pytest

from conftest import RunningServer, _free_port
from test_web_client import HEARD, SILENT, launch, now, shot, wait_for

pytestmark = pytest.mark.e2e
KEY = "sk-overlay-stream-test"  # the page must get in with a client token, the test's calls with the key
AUTH = {"Authorization": f"Bearer {KEY}"}
ASKER = "document.querySelector('#asker')"
CAPTION = "document.querySelector('#caption-text').textContent.trim()"


@asynccontextmanager
async def stream_server(settings, engines, port: int, lead_ms: int = 400):
    """`livehost stream` (chat only through POST /v1/stream/chat, no RTMP) and an operator's client for it.
    `lead_ms`: how far ahead of playback the host's voice is sent (server.output_lead_ms)."""
    from livehost.server.app import create_app
    s = settings.model_copy(update={
        "stream": settings.stream.model_copy(update={"character": "lumi", "idle_after_s": 600, "gap_s": 0.2}),
        "llm": settings.llm.model_copy(update={"max_tokens": 60}),  # long enough to skip one mid-answer
        "server": settings.server.model_copy(update={"api_keys": [KEY], "output_lead_ms": lead_ms,
                                                     "token_secret": "overlay-test"})})  # tokens outlive a restart
    with RunningServer(create_app(s, engines, stream=True), port) as server:
        async with httpx.AsyncClient(base_url=server.url, headers=AUTH, timeout=10) as http:
            yield server, http


async def chat(http, name: str, text: str) -> None:
    event = {"platform": "youtube", "type": "message", "user": {"id": name.lower(), "name": name}, "text": text}
    assert (await http.post("/v1/stream/chat", json=event)).json() == {"outcome": "queued"}


async def answer_heard(page, name: str) -> None:
    """The host answers `name`: the asker shows, and the voice is heard."""
    t = await now(page)
    await wait_for(page, f"!{ASKER}.hidden && {ASKER}.textContent === '{name}'", 30)
    await wait_for(page, f"livehostDebug.levels.some(l => l[0] > {t} && l[1] > {HEARD})", 30)


async def skip_silences(page, http) -> float:
    """An operator skips the answer being heard: the page is silent within 300 ms. Returns how soon (ms)."""
    t_skip = await now(page)
    assert (await http.post("/v1/stream/skip")).json() == {"skipped": True}
    await asyncio.sleep(1.0)
    after = await page.evaluate("t => livehostDebug.levels.filter(l => l[0] > t)", t_skip)
    assert max(rms for ms, rms in after if ms > t_skip + 300) < SILENT, f"still playing after skip: {after}"
    assert await page.evaluate("livehostDebug.session.response.stopped && livehostDebug.state === 'listening'")
    return next(ms for ms, rms in after if rms < SILENT) - t_skip


async def test_overlay_plays_the_stream_host(settings, engines):
    port = _free_port()
    started = time.monotonic()
    async with launch(viewport={"width": 960, "height": 540}) as (_, page):
        async with stream_server(settings, engines, port) as (server, http):
            token = (await http.post("/v1/realtime/client_secrets")).json()["value"]  # the operator mints it
            await page.goto(f"{server.url}/overlay.html?stream=1&captions=1&asker=1#token={token}")
            await wait_for(page, "livehostDebug.state === 'listening' && livehostDebug.avatar.name === 'lumi'", 20)
            assert await page.evaluate("livehostDebug.events[0].type") == "livehost.stream.state"

            # a viewer's question, answered in full: words, name, voice and lips
            await chat(http, "Ann", "What is your favourite colour?")
            await answer_heard(page, "Ann")
            await wait_for(page, f"{CAPTION}.length > 3", 10)
            await shot(page, "overlay-stream-1-answering", omit_background=True)
            await wait_for(page, "livehostDebug.state === 'listening'", 30)
            spoken = await page.evaluate(f"""livehostDebug.events.filter(e => e.type ===
                'response.output_audio_transcript.delta').map(e => e.delta).join('')""")
            caption = await page.evaluate(CAPTION)
            assert caption and " ".join(caption.split()) in " ".join(spoken.split()), (caption, spoken)
            mouths = await page.evaluate("livehostDebug.avatar.mouths")
            assert sum(n for shape, n in mouths.items() if shape != "sil") >= 3, mouths  # lips follow the visemes
            assert await page.evaluate("livehostDebug.events.some(e => e.type === 'livehost.visemes')")

            # an operator skips a long line mid-sentence (response.done: cancelled); a scripted line, so its length
            # does not depend on what the model feels like saying
            t = await now(page)
            await http.post("/v1/stream/say", json={"text": "Welcome back everyone. " * 12})
            await wait_for(page, f"livehostDebug.levels.some(l => l[0] > {t} + 500 && l[1] > {HEARD})", 30)
            assert await page.evaluate("!livehostDebug.session.response.done"), "the answer ended before the skip"
            print(f"silent {await skip_silences(page, http):.0f} ms after a skip mid-answer")
            assert await page.evaluate("livehostDebug.events.some(e => e.type === 'response.done' && "
                                       "e.response.status === 'cancelled')")

        # the server went away (a restart): the page notices, reconnects and plays the host again. This server sends
        # the voice 3 s ahead, so an answer is all sent (response.done: completed) while much of it is still to play
        await wait_for(page, "livehostDebug.state === 'idle'", 10)
        async with stream_server(settings, engines, port, lead_ms=3000) as (server, http):
            await wait_for(page, "livehostDebug.state === 'listening' && "
                                 "livehostDebug.events.filter(e => e.type === 'livehost.stream.state').length >= 2", 20)
            await chat(http, "Cy", "Hello from the second show! How are you today?")
            await answer_heard(page, "Cy")
            assert await page.locator("#notice").is_hidden()
            await shot(page, "overlay-stream-2-after-reconnect", omit_background=True)
            await wait_for(page, "livehostDebug.state === 'listening'", 30)

            # a scripted line of about 6 s (the model's answers vary in length): all sent 3 s ahead, so its tail
            # still plays when everything has gone out. Skipped then, the host drops the tail (the answer is not
            # over until its voice has played: response.done says cancelled), and so does the page
            t = await now(page)
            await http.post("/v1/stream/say", json={"text": "Welcome back everyone. " * 4})
            await wait_for(page, f"livehostDebug.levels.some(l => l[0] > {t} && l[1] > {HEARD})", 30)
            for _ in range(100):
                if ((await http.get("/v1/stream")).json()["now"] or {}).get("all_sent"):
                    break
                await asyncio.sleep(0.05)
            assert not await page.evaluate("livehostDebug.session.response.done"), "the line ended before the skip"
            print(f"silent {await skip_silences(page, http):.0f} ms after a skip of the tail")
            await wait_for(page, "livehostDebug.session.response.done", 10)
            assert await page.evaluate("livehostDebug.events.findLast(e => e.type === 'response.done')"
                                       ".response.status") == "cancelled"
    print(f"took {time.monotonic() - started:.1f} s")
