"""The chat page at / in a real headless Chromium (Debian's), against the real server and models: the fake
microphone plays jfk.flac, the page shows the words, the reply is heard (the page's output level) and seen (the
avatar changes while it speaks), typing gets a spoken answer, Interrupt silences it at once, and a WebRTC call
whose ICE fails falls back to the WebSocket. Screenshots of each state go to tests/artifacts/web/.

Helpers here (launch, fake_mic_file, wait_for, shot) are shared by the other tests/test_web_*.py files.
"""
from __future__ import annotations

import asyncio
import re
import shutil
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import RunningServer, _free_port, load_speech

pytestmark = pytest.mark.e2e
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream", "--allow-loopback-in-peer-connection",
        "--autoplay-policy=no-user-gesture-required"]
ARTIFACTS = Path(__file__).parent / "artifacts" / "web"
HEARD = 0.02  # output RMS that is clearly a voice (Piper speaks at about 0.1)
SILENT = 0.005


def fake_mic_file(folder: Path, lead_s: float = 2.0, tail_s: float = 120.0, speech: bool = True) -> Path:
    """What Chromium's fake capture device plays (it loops the file): silence, jfk.flac, a long silence."""
    rate = 48000
    parts = [np.zeros(int(rate * lead_s), np.int16)]
    if speech:
        parts.append(load_speech("jfk.flac", rate))
    parts.append(np.zeros(int(rate * tail_s), np.int16))
    path = folder / f"mic_{lead_s:g}_{tail_s:g}_{int(speech)}.wav"
    if not path.exists():
        sf.write(path, np.concatenate(parts), rate)
    return path


@asynccontextmanager
async def launch(mic: Path | None = None, viewport: dict | None = None, allow_mic: bool = True):
    """A fresh headless Chromium with a fake microphone (allowed, or blocked); yields (browser, page)."""
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is needed for browser tests: apt-get install chromium")
    from playwright.async_api import async_playwright
    args = [a for a in ARGS if allow_mic or a != "--use-fake-ui-for-media-stream"]
    args += [f"--use-file-for-fake-audio-capture={mic}"] if mic else []
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        page = await browser.new_page(viewport=viewport or {"width": 1280, "height": 800})
        page.on("pageerror", lambda exc: print(f"page error: {exc}"))
        try:
            yield browser, page
        finally:
            await browser.close()


async def wait_for(page, condition: str, timeout_s: float, arg=None):
    await page.wait_for_function(condition, arg=arg, timeout=timeout_s * 1000, polling=100)


async def shot(page, name: str, **kw) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), **kw)
    return path


async def peak_since(page, t_ms: float) -> float:
    return await page.evaluate("t => Math.max(0, ...livehostDebug.levels.filter(l => l[0] > t).map(l => l[1]))", t_ms)


async def now(page) -> float:
    return await page.evaluate("performance.now()")


async def avatar_changes(page, samples: int = 8) -> int:
    """How many different pictures of the avatar (video or canvas) were seen in about a second."""
    seen = set()
    for _ in range(samples):
        seen.add(await page.evaluate("livehostDebug.avatarDigest()"))
        await asyncio.sleep(0.12)
    return len(seen)


async def interrupt_silences(page, name: str) -> None:
    """Press Interrupt while the host speaks: the page's output is ~silent within 500 ms, the reply is cancelled."""
    await wait_for(page, f"livehostDebug.state === 'speaking' && "
                         f"livehostDebug.levels.slice(-10).some(l => l[1] > {HEARD})", 30)
    # timed from the click itself (on a busy machine Playwright's click can land well after it was asked for), and
    # whether the reply was still being written then (a short one may be all sent, with only its tail playing)
    await page.evaluate("""document.querySelector('#interrupt').addEventListener('click', () => {
        window.clicked = {t: performance.now(), writing: !livehostDebug.session.response.done}; }, {once: true})""")
    await page.get_by_role("button", name="Interrupt").click()
    await wait_for(page, "window.clicked", 5)
    await asyncio.sleep(1.3)
    t0, writing = await page.evaluate("[window.clicked.t, window.clicked.writing]")
    after = await page.evaluate("t => livehostDebug.levels.filter(l => l[0] > t + 500).map(l => l[1])", t0)
    assert len(after) >= 10 and max(after) < SILENT, f"still playing after Interrupt: {max(after):.4f}"
    if writing:
        await wait_for(page, "livehostDebug.events.some(e => e.type === 'response.done' && "
                             "e.response.status === 'cancelled')", 5)
    await shot(page, name)


@pytest.fixture(scope="module")
def web_server(settings, engines):
    from livehost.server.app import create_app
    local = settings.model_copy(update={"webrtc": settings.webrtc.model_copy(update={
        "host_addresses": ["127.0.0.1"], "ice_timeout_s": 5.0})})
    with RunningServer(create_app(local, engines), _free_port()) as srv:
        yield srv


USER_WORDS = ("[...document.querySelectorAll('.msg.user:not(.partial) .text')]"  # tiny.en hears "ask" or "asked"
              ".some(t => /ask(ed)? not what your country/.test(t.textContent.toLowerCase().replace(/[^a-z ]+/g, '')))")


async def test_chat_page_voice_over_webrtc(web_server, tmp_path_factory):
    mic = fake_mic_file(tmp_path_factory.mktemp("mic"))
    async with launch(mic) as (_, page):
        await page.goto(f"{web_server.url}/?character=lumi&silence_ms=1500")
        await wait_for(page, "document.querySelector('#character').options.length >= 3", 10)
        await shot(page, "chat-1-ready")

        await page.get_by_role("button", name="Start talking").click()
        await wait_for(page, "livehostDebug.transport === 'webrtc' && livehostDebug.state !== 'connecting'", 20)
        await shot(page, "chat-2-listening")
        await wait_for(page, "document.querySelector('.msg.user.partial')", 20)
        assert await page.evaluate("livehostDebug.state") == "hearing"
        await shot(page, "chat-3-hearing-partial")

        await wait_for(page, USER_WORDS, 60)  # the final transcript of JFK's words
        await wait_for(page, "['thinking', 'speaking'].includes(livehostDebug.state)", 30)
        if await page.evaluate("livehostDebug.state") == "thinking":
            await shot(page, "chat-4-thinking")
        t_reply = await now(page)
        await wait_for(page, "livehostDebug.state === 'speaking'", 60)
        await wait_for(page, f"livehostDebug.levels.some(l => l[0] > {t_reply} && l[1] > {HEARD})", 20)
        assert await avatar_changes(page) >= 3, "the avatar did not move while the host spoke"
        assert await page.evaluate("document.querySelector('#video').hidden") is False, "no avatar video on WebRTC"
        await shot(page, "chat-5-speaking")
        await wait_for(page, "livehostDebug.events.some(e => e.type === 'response.done')", 90)

        await ask_for_a_story(page, "chat-6-typed-answer")
        await interrupt_silences(page, "chat-7-interrupted")


async def ask_for_a_story(page, name: str) -> None:
    """Typing gets a spoken answer (a long one, to interrupt)."""
    before = await page.locator(".msg.assistant").count()
    t_typed = await now(page)
    await page.get_by_role("textbox", name="Message").fill("Tell me a long story about a brave little dragon.")
    await page.get_by_role("button", name="Send message").click()
    await wait_for(page, f"document.querySelectorAll('.msg.assistant').length > {before}", 60)
    await wait_for(page, f"livehostDebug.levels.some(l => l[0] > {t_typed} && l[1] > {HEARD})", 60)
    assert (await page.locator(".msg.assistant .text").last.text_content()).strip()
    await shot(page, name)


async def test_ice_failure_falls_back_to_websocket_on_a_phone(web_server, tmp_path_factory):
    mic = fake_mic_file(tmp_path_factory.mktemp("mic"), lead_s=6.0)

    async def spoil_ice(route):  # the answer's ICE credentials are wrong: connectivity checks never succeed
        response = await route.fetch()
        await route.fulfill(response=response, body=re.sub(r"a=ice-ufrag:\S+", "a=ice-ufrag:wrong", await response.text()))

    async with launch(mic, viewport={"width": 390, "height": 844}) as (_, page):
        await page.route("**/v1/realtime/calls*", spoil_ice)
        await page.goto(f"{web_server.url}/?character=lumi&silence_ms=1500&ice_timeout_ms=3000")
        await wait_for(page, "document.querySelector('#character').options.length >= 3", 10)
        await shot(page, "phone-1-ready")
        await page.get_by_role("button", name="Start talking").click()
        await wait_for(page, "livehostDebug.transport === 'websocket'", 15)
        assert "WebRTC" in await page.locator("#toast").text_content()
        await shot(page, "phone-2-fell-back-to-websocket")

        await wait_for(page, USER_WORDS, 60)
        t_reply = await now(page)
        await wait_for(page, "livehostDebug.state === 'speaking'", 60)
        await wait_for(page, f"livehostDebug.levels.some(l => l[0] > {t_reply} && l[1] > {HEARD})", 20)
        assert await avatar_changes(page) >= 3
        await shot(page, "phone-3-speaking")
        mouths = await page.evaluate("livehostDebug.avatar.mouths")
        assert sum(n for shape, n in mouths.items() if shape != "sil") >= 3, mouths  # lips follow the visemes
        assert await page.evaluate("livehostDebug.events.some(e => e.type === 'livehost.visemes')")
        await ask_for_a_story(page, "phone-4-typed-answer")
        await interrupt_silences(page, "phone-5-interrupted")


async def test_errors_in_plain_words_with_retry(web_server):
    async with launch(allow_mic=False) as (_, page):
        alert = page.get_by_role("alert")
        await page.route("**/v1/characters", lambda route: route.abort("connectionrefused"))
        await page.goto(f"{web_server.url}/")
        await alert.wait_for(state="visible", timeout=10_000)
        assert "Can't reach the livehost server" in await alert.text_content()
        await shot(page, "errors-1-server-unreachable")
        await page.unroute("**/v1/characters")
        await page.get_by_role("button", name="Try again").click()
        await wait_for(page, "document.querySelector('#character').options.length >= 3", 10)
        assert await alert.is_hidden()

        await page.get_by_role("button", name="Start talking").click()  # the microphone is blocked
        await alert.wait_for(state="visible", timeout=10_000)
        assert "Microphone access is blocked" in await alert.text_content()
        await shot(page, "errors-2-microphone-blocked")
        await page.get_by_role("button", name="Continue with text only").click()
        await wait_for(page, "livehostDebug.state === 'listening'", 20)
        assert await alert.is_hidden()

        await page.evaluate("livehostDebug.session.send({type: 'response.cancel'})")  # an `error` event
        toast = page.locator("#toast")
        await toast.wait_for(state="visible", timeout=5_000)
        assert "no active response" in await toast.text_content()
        await shot(page, "errors-3-error-event")
