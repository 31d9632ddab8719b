"""The stream overlay: the avatar alone on a transparent background (for OBS browser sources), and captions of
what the host says when a controller page asks it to speak."""
from __future__ import annotations

import io

import pytest
from PIL import Image

from test_web_client import launch, shot, wait_for, web_server  # noqa: F401 (fixture)

pytestmark = pytest.mark.e2e


def corners_and_centre(png: bytes) -> tuple[list[int], int]:
    im = Image.open(io.BytesIO(png)).convert("RGBA")
    w, h = im.size
    corners = [im.getpixel(p)[3] for p in ((0, 0), (w - 1, 0), (0, h - 1), (w - 1, h - 1), (5, h // 2), (w - 6, h // 3))]
    return corners, im.getpixel((w // 2, h // 2))[3]


async def test_overlay_is_transparent_with_captions(web_server):  # noqa: F811
    async with launch(viewport={"width": 960, "height": 540}) as (_, page):
        await page.goto(f"{web_server.url}/overlay.html?character=lumi&captions=1")
        await wait_for(page, "livehostDebug.state === 'listening' && livehostDebug.avatar.frames > 5", 20)
        corners, centre = corners_and_centre(await page.screenshot(omit_background=True))
        assert corners == [0] * 6, f"the overlay's background is not transparent: alpha {corners}"
        assert centre == 255, "the avatar is not drawn"
        await shot(page, "overlay-1-idle", omit_background=True)

        # a controller on the same origin makes the host speak; captions show its words
        await page.evaluate("new BroadcastChannel('livehost-overlay').postMessage("
                            "{type: 'say', text: 'Say hello to everyone watching the stream!'})")
        await wait_for(page, "livehostDebug.state === 'speaking' && "
                             "document.querySelector('#caption-text').textContent.trim().length > 3", 60)
        await wait_for(page, "livehostDebug.levels.slice(-20).some(l => l[1] > 0.02)", 20)
        corners, centre = corners_and_centre(await page.screenshot(omit_background=True))
        assert corners == [0] * 6 and centre == 255
        await shot(page, "overlay-2-speaking-with-captions", omit_background=True)
        await page.evaluate("new BroadcastChannel('livehost-overlay').postMessage({type: 'interrupt'})")
        await wait_for(page, "livehostDebug.state === 'listening'", 10)
