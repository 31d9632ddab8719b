"""Nuomi (糯米): a Bilibili-style live host with dark cocoa hair in two buns, blunt bangs, a little TV hair clip and
a sailor collar (original art, drawn in code). The face (eyes, brows, mouths) is Lumi's, drawn in its own colours
here: the face rig is shared so both move alike, the hair, outfit and palette make the character."""
from __future__ import annotations

import numpy as np

from livehost.avatar.assets import lumi
from livehost.avatar.assets._draw import Sheet, cbez, mirror, rgb, through

SKIN, SKIN_SHADE, SKIN_LINE = lumi.SKIN, lumi.SKIN_SHADE, lumi.SKIN_LINE
HAIR_TOP, HAIR_BOTTOM, HAIR_DARK, HAIR_LIGHT = rgb("5b3a3f"), rgb("3e2529"), rgb("2a171b"), rgb("c79a8f", 190)
RIBBON, RIBBON_DARK = rgb("ff6f9c"), rgb("d94a7a")
COLLAR, COLLAR_LINE, TOP_TOP, TOP_BOTTOM = rgb("4f8fe0"), rgb("f4f8ff"), rgb("fdfdff"), rgb("dde6f6")
TV, TV_SCREEN, TV_LINE = rgb("7fd0ff"), rgb("e9f8ff"), rgb("3a86c8")
BLUSH = rgb("ff8fa3", 95)

EYES, MOUTH = lumi.EYES, lumi.MOUTH
BUNS = {-1: (162, 104), 1: (350, 104)}


def _bun(sh: Sheet, im, cx, cy, r):
    mask = sh.shape_mask(lambda m: sh.ellipse(m, cx, cy, r, r, fill=255))
    im.alpha_composite(sh.gradient(mask, HAIR_TOP, HAIR_BOTTOM, cy - r, cy + r))
    swirl = [(cx + r * 0.55 * np.cos(t), cy + r * 0.55 * np.sin(t)) for t in np.linspace(0.2, 4.6, 24)]
    sh.stroke(im, swirl, HAIR_DARK, 2.5)
    sh.ellipse(im, cx, cy, r, r, outline=HAIR_DARK, width=2.5)


def _back(sh: Sheet):
    im = sh.layer()
    for side, (cx, cy) in BUNS.items():
        _bun(sh, im, cx, cy, 44)
    th = np.linspace(np.pi, 2 * np.pi, 40)
    top = list(zip(256 + 150 * np.cos(th), 220 + 156 * np.sin(th)))
    right = through((406, 220), (414, 330), (392, 430))
    hem = [(392, 430), (350, 446), (300, 432), (256, 444), (212, 432), (162, 446), (120, 430)]
    left = through((120, 430), (98, 330), (106, 220))
    mask = sh.shape_mask(lambda m: sh.poly(m, top + right[1:] + hem[1:] + left[1:], 255))
    im.alpha_composite(sh.gradient(mask, HAIR_BOTTOM, HAIR_DARK, 120, 446))
    return im


def _body(sh: Sheet):
    im = sh.layer()
    sh.rrect(im, 230, 300, 282, 400, 20, fill=SKIN)
    shade = sh.layer()
    sh.ellipse(shade, 256, 338, 40, 22, fill=SKIN_SHADE)
    im.alpha_composite(sh.clip(shade, sh.shape_mask(lambda m: sh.rrect(m, 230, 300, 282, 400, 20, fill=255))))
    left = cbez((232, 378), (182, 384), (122, 398), (100, 440)) + cbez((100, 440), (88, 470), (84, 500), (82, 520))
    torso = left + [(430, 520)] + mirror(left)[::-1]
    im.alpha_composite(sh.gradient(sh.shape_mask(lambda m: sh.poly(m, torso, 255)), TOP_TOP, TOP_BOTTOM, 380, 520))
    collar = [(224, 378), (150, 400), (176, 452), (256, 470)]
    for pts in (collar, mirror(collar)):
        sh.poly(im, pts, COLLAR)
        sh.stroke(im, [(p[0] + (8 if p[0] < 256 else -8), p[1] + 4) for p in pts[1:3]], COLLAR_LINE, 3)
    sh.poly(im, [(226, 380), (286, 380), (256, 440)], SKIN)  # the V of the collar
    for side in (-1, 1):  # the bow
        sh.poly(im, [(256, 452), (256 + side * 34, 436), (256 + side * 38, 470)], RIBBON)
        sh.stroke(im, [(256 + side * 8, 452), (256 + side * 30, 446)], RIBBON_DARK, 2)
    sh.ellipse(im, 256, 453, 9, 8, fill=RIBBON_DARK)
    return im


def _hair_outline() -> list[tuple[float, float]]:
    th = np.linspace(np.pi, 2 * np.pi, 40)
    cap = list(zip(256 + 142 * np.cos(th), 214 + 140 * np.sin(th)))
    right_lock = through((398, 214), (404, 300), (380, 372)) + through((380, 372), (366, 300), (356, 222))[1:]
    bangs = [(356, 222), (344, 212), (300, 218), (256, 214), (212, 218), (168, 212), (156, 222)]  # blunt
    fringe: list[tuple[float, float]] = []
    for a, b in zip(bangs, bangs[1:]):
        mid = ((a[0] + b[0]) / 2, (a[1] + b[1]) / 2 + 5)
        fringe += through(a, mid, b, 8)[1:]
    left_lock = through((156, 222), (146, 300), (132, 372)) + through((132, 372), (108, 300), (114, 214))[1:]
    return cap + right_lock[1:] + fringe + left_lock[1:]


def _tv_clip(sh: Sheet, im, cx, cy):
    """A small TV with two antennae: a live host's hair clip."""
    for side in (-1, 1):
        sh.stroke(im, [(cx + side * 6, cy - 14), (cx + side * 16, cy - 28)], TV_LINE, 3.5)
    sh.rrect(im, cx - 24, cy - 16, cx + 24, cy + 18, 9, fill=TV, outline=TV_LINE, width=2.5)
    sh.rrect(im, cx - 16, cy - 9, cx + 16, cy + 11, 5, fill=TV_SCREEN)
    for side in (-1, 1):
        sh.stroke(im, [(cx + side * 9, cy - 2), (cx + side * 5, cy + 2)], TV_LINE, 3)


def _base(sh: Sheet):
    im = sh.layer()
    for side in (-1, 1):
        sh.ellipse(im, 256 + side * 106, 262, 14, 22, fill=SKIN_SHADE)
    jaw = cbez((148, 232), (150, 300), (212, 342), (256, 346))
    th = np.linspace(np.pi, 2 * np.pi, 40)
    face = list(zip(256 + 108 * np.cos(th), 232 + 118 * np.sin(th))) + mirror(jaw)[1:] + jaw[::-1][1:]
    im.alpha_composite(sh.gradient(sh.shape_mask(lambda m: sh.poly(m, face, 255)), SKIN, rgb("ffd9c4"), 200, 346))
    sh.stroke(im, jaw, SKIN_LINE, 2)
    sh.stroke(im, mirror(jaw), SKIN_LINE, 2)
    for side in (-1, 1):
        sh.ellipse(im, 256 + side * 66, 300, 21, 10, fill=BLUSH)
    sh.stroke(im, [(258, 292), (255, 296)], SKIN_LINE, 3)
    hair = _hair_outline()
    hmask = sh.shape_mask(lambda m: sh.poly(m, hair, 255))
    im.alpha_composite(sh.gradient(hmask, HAIR_TOP, HAIR_BOTTOM, 80, 330))
    shine = sh.layer()
    arc = [(256 + 100 * np.cos(t), 178 + 58 * np.sin(t)) for t in np.linspace(np.pi * 1.15, np.pi * 1.85, 30)]
    sh.taper(shine, arc, HAIR_LIGHT, 1, 1, 10)
    im.alpha_composite(sh.clip(shine, hmask))
    sh.stroke(im, hair + hair[:1], HAIR_DARK, 2.5)
    for side, (cx, cy) in BUNS.items():  # ribbons where the buns meet the head
        x, y = cx + side * -18, cy + 40
        sh.poly(im, [(x, y), (x - 22, y - 12), (x - 20, y + 14)], RIBBON)
        sh.poly(im, [(x, y), (x + 22, y - 12), (x + 20, y + 14)], RIBBON)
        sh.ellipse(im, x, y, 7, 7, fill=RIBBON_DARK)
    _tv_clip(sh, im, 150, 176)
    return im


def draw(side: int) -> dict:
    sh = Sheet(side)
    face = lumi.draw(side)  # the shared face rig: eyes, brows, mouths and expressions
    layers = {n: a for n, a in face.items() if n.startswith(("eyes_", "mouth_", "expr_"))}
    layers.update({n: sh.finish(im) for n, im in (("back", _back(sh)), ("body", _body(sh)), ("base", _base(sh)))})
    return _warm_colours(layers)


def _warm_colours(layers: dict) -> dict:
    """Lumi's teal irises turned a warm amber-brown (pixels that are clearly teal-blue: b and g well above r),
    and her violet brows cocoa, to match the hair."""
    out = {}
    brow = np.array(lumi.BROW[:3], np.int16)
    for name, a in layers.items():
        if name.startswith("expr_"):
            a = a.copy()
            near = (np.abs(a[..., :3].astype(np.int16) - brow).max(axis=-1) < 48) & (a[..., 3] > 0)
            a[near, :3] = HAIR_DARK[:3]
        elif name.startswith("eyes_open"):
            a = a.copy()
            rgb_ = a[..., :3].astype(np.int16)
            teal = (rgb_[..., 2] - rgb_[..., 0] > 40) & (rgb_[..., 1] - rgb_[..., 0] > 10) & (a[..., 3] > 0)
            r, g, b = rgb_[..., 0], rgb_[..., 1], rgb_[..., 2]
            a[..., 0] = np.where(teal, np.clip(b * 0.85 + 20, 0, 255), r)
            a[..., 1] = np.where(teal, np.clip(g * 0.55 + 10, 0, 255), g)
            a[..., 2] = np.where(teal, np.clip(r * 0.6 + 20, 0, 255), b)
        out[name] = a
    return out


PIVOT = lumi.PIVOT
