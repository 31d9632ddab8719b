"""Lumi: a cheerful host with violet hair, teal eyes and a coral jacket (original art, drawn in code)."""
from __future__ import annotations

import numpy as np

from livehost.avatar.assets._draw import Sheet, cbez, mirror, rgb, stack, through
from livehost.avatar.assets._mouth import Shape, draw_open

SKIN, SKIN_SHADE, SKIN_LINE = rgb("ffe3d1"), rgb("f6c4ad"), rgb("d59a86")
HAIR_TOP, HAIR_BOTTOM, HAIR_DARK, HAIR_LIGHT = rgb("8a6ad0"), rgb("5f46a8"), rgb("45308a"), rgb("c2a8f2", 210)
IRIS_TOP, IRIS_BOTTOM, PUPIL = rgb("27407f"), rgb("54cad6"), rgb("16173a")
LASH, BROW, BLUSH = rgb("3a2448"), rgb("4a3382"), rgb("ff8fa3", 80)
JACKET_TOP, JACKET_BOTTOM, LAPEL = rgb("ff8c66"), rgb("e8604a"), rgb("d9513d")
MOUTH_IN, MOUTH_LINE, TONGUE, TEETH = rgb("8e2f47"), rgb("6a2233"), rgb("ff8c9e"), rgb("ffffff")
STAR, STAR_LINE = rgb("ffd35c"), rgb("e29a2e")

EYES = {-1: (210, 262), 1: (302, 262)}  # side -> centre; -1 is the viewer's left
MOUTH = (256, 315)

MOUTHS = {
    "aa": Shape(21, 11, 25, 1.4, 2, 0.22, 0, 0.32),
    "E": Shape(23, 8, 15, 1.5, 3, 0.3, 0, 0.3),
    "I": Shape(25, 5, 9, 1.6, 5, 0.45, 0.3),
    "O": Shape(14, 15, 17, 1.0, 0, 0.12, 0, 0.3),
    "U": Shape(8, 8, 9, 1.0),
    "kk": Shape(19, 7, 13, 1.5, 2, 0.25, 0, 0.35),
    "DD": Shape(18, 5, 10, 1.5, 2, 0.4, 0, 0.4),
    "nn": Shape(16, 4, 8, 1.5, 2, 0.45, 0, 0.35),
    "TH": Shape(17, 5, 9, 1.5, 2, 0.35, 0, 0.3, tongue_mid=True),
    "SS": Shape(22, 5, 6, 1.7, 3, 0.5, 0.5),
    "CH": Shape(13, 10, 11, 0.75, 0, 0.3, 0.3),
    "RR": Shape(12, 9, 10, 0.9, 0, 0.25, 0, 0.2),
    "FF": Shape(18, 4, 7, 1.5, 2, 0.75),
}


def _hair_outline() -> list[tuple[float, float]]:
    th = np.linspace(np.pi, 2 * np.pi, 40)
    cap = list(zip(256 + 144 * np.cos(th), 214 + 142 * np.sin(th)))
    right_lock = through((400, 214), (402, 290), (384, 352)) + through((384, 352), (372, 292), (360, 238))[1:]
    bangs = [(360, 238), (340, 166), (324, 208), (302, 158), (284, 204), (262, 154), (244, 208), (222, 158),
             (204, 202), (184, 166), (170, 214), (152, 238)]
    fringe: list[tuple[float, float]] = []
    for a, b in zip(bangs, bangs[1:]):  # each strand bows a little, like combed hair
        mid = ((a[0] + b[0]) / 2 + (4 if b[1] > a[1] else -4), (a[1] + b[1]) / 2)
        fringe += through(a, mid, b, 10)[1:]
    left_lock = through((152, 238), (140, 292), (128, 352)) + through((128, 352), (110, 290), (112, 214))[1:]
    return cap + right_lock[1:] + fringe + left_lock[1:]


def _back(sh: Sheet):
    th = np.linspace(np.pi, 2 * np.pi, 40)
    top = list(zip(256 + 152 * np.cos(th), 222 + 160 * np.sin(th)))
    right = through((408, 222), (418, 340), (400, 452))
    hem = [(400, 452), (366, 470), (330, 448), (290, 466), (256, 450), (222, 466), (182, 448), (146, 470),
           (112, 452)]
    left = through((112, 452), (94, 340), (104, 222))
    pts = top + right[1:] + hem[1:] + left[1:]
    mask = sh.shape_mask(lambda m: sh.poly(m, pts, 255))
    return sh.gradient(mask, HAIR_BOTTOM, HAIR_DARK, 120, 470)


def _body(sh: Sheet):
    im = sh.layer()
    sh.rrect(im, 230, 300, 282, 400, 20, fill=SKIN)
    neck_shadow = sh.shape_mask(lambda m: sh.rrect(m, 230, 300, 282, 400, 20, fill=255))
    sh_layer = sh.layer()
    sh.ellipse(sh_layer, 256, 338, 40, 22, fill=SKIN_SHADE)
    im.alpha_composite(sh.clip(sh_layer, neck_shadow))
    left = cbez((232, 378), (180, 384), (118, 398), (96, 440)) + cbez((96, 440), (84, 470), (80, 500), (78, 520))
    torso = left + [(434, 520)] + mirror(left)[::-1]
    mask = sh.shape_mask(lambda m: sh.poly(m, torso, 255))
    im.alpha_composite(sh.gradient(mask, JACKET_TOP, JACKET_BOTTOM, 380, 512))
    sh.poly(im, [(226, 380), (286, 380), (256, 470)], rgb("fdfbff"))  # shirt
    sh.poly(im, [(226, 380), (212, 390), (240, 470), (256, 476)], LAPEL)
    sh.poly(im, mirror([(226, 380), (212, 390), (240, 470), (256, 476)]), LAPEL)
    sh.stroke(im, through((232, 380), (256, 392), (280, 380)), SKIN_SHADE, 3)
    _star(sh, im, 176, 448, 13)
    return im


def _star(sh: Sheet, im, cx, cy, r):
    a = np.linspace(-np.pi / 2, 1.5 * np.pi, 11)[:-1]
    rr = np.where(np.arange(10) % 2 == 0, r, r * 0.45)
    pts = list(zip(cx + rr * np.cos(a), cy + rr * np.sin(a)))
    sh.poly(im, pts, STAR)
    sh.stroke(im, pts + pts[:1], STAR_LINE, 2)


def _base(sh: Sheet):
    im = sh.layer()
    for side in (-1, 1):
        sh.ellipse(im, 256 + side * 106, 262, 14, 22, fill=SKIN_SHADE)
    jaw = cbez((148, 232), (150, 300), (212, 342), (256, 346))
    th = np.linspace(np.pi, 2 * np.pi, 40)
    face = list(zip(256 + 108 * np.cos(th), 232 + 118 * np.sin(th))) + mirror(jaw)[1:] + jaw[::-1][1:]
    mask = sh.shape_mask(lambda m: sh.poly(m, face, 255))
    im.alpha_composite(sh.gradient(mask, SKIN, rgb("ffd9c4"), 200, 346))
    sh.stroke(im, jaw, SKIN_LINE, 2)
    sh.stroke(im, mirror(jaw), SKIN_LINE, 2)
    for side in (-1, 1):
        sh.ellipse(im, 256 + side * 66, 300, 20, 10, fill=BLUSH)
    sh.stroke(im, [(258, 292), (255, 296)], SKIN_LINE, 3)  # nose
    hair = _hair_outline()
    hmask = sh.shape_mask(lambda m: sh.poly(m, hair, 255))
    im.alpha_composite(sh.gradient(hmask, HAIR_TOP, HAIR_BOTTOM, 80, 330))
    shine = sh.layer()
    arc = [(256 + 104 * np.cos(t), 182 + 62 * np.sin(t)) for t in np.linspace(np.pi * 1.15, np.pi * 1.85, 30)]
    sh.taper(shine, arc, HAIR_LIGHT, 1, 1, 11)
    im.alpha_composite(sh.clip(shine, hmask))
    sh.stroke(im, hair + hair[:1], HAIR_DARK, 2.5)
    _star(sh, im, 352, 132, 17)
    return im


def _eye(sh: Sheet, side: int, look=(0, 0), iris: float = 1.0, lid=None, lower_lid=None, big: float = 1.0):
    """One open eye. lid=(inner_y, outer_y) lowers the upper lid; lower_lid raises a smiling lower lid."""
    cx, cy = EYES[side]
    im = sh.layer()
    rx, ry = 27 * big, 32 * big
    white = sh.shape_mask(lambda m: sh.ellipse(m, cx, cy, rx, ry, fill=255))
    ball = sh.layer()
    sh.ellipse(ball, cx, cy, rx, ry, fill=rgb("ffffff"))
    ix, iy = cx + look[0], cy + 4 + look[1]
    imask = sh.shape_mask(lambda m: sh.ellipse(m, ix, iy, 20 * iris, 26 * iris, fill=255))
    ball.alpha_composite(sh.gradient(imask, IRIS_TOP, IRIS_BOTTOM, iy - 26 * iris, iy + 22 * iris))
    sh.ellipse(ball, ix, iy, 20 * iris, 26 * iris, outline=PUPIL, width=2)
    sh.ellipse(ball, ix, iy + 3, 9 * iris, 12 * iris, fill=PUPIL)
    sh.ellipse(ball, ix - 7, iy - 9, 7, 8, fill=rgb("ffffff"))
    sh.ellipse(ball, ix + 8, iy + 11, 3.5, 3.5, fill=rgb("ffffff", 220))
    outer, inner = cx + side * (rx + 4), cx - side * (rx + 2)
    lash = through((outer, cy + 2), (cx, cy - ry - 2), (inner, cy - 10))
    if lid is not None:  # skin over the top of the eye, down to the lid line
        lash = through((inner, cy + lid[0] + 4), (cx, (2 * cy + lid[0] + lid[1]) / 2), (outer, cy + lid[1] + 4))
        lash = lash[::-1]
        sh.poly(ball, lash + [(inner, cy - 60), (outer, cy - 60)], SKIN)
    if lower_lid is not None:
        lower = through((outer, cy + ry + 6), (cx, cy + lower_lid), (inner, cy + ry + 6))
        sh.poly(ball, lower + [(inner, cy + 60), (outer, cy + 60)], SKIN)
        sh.stroke(ball, lower[4:-4], LASH, 2)
    im.alpha_composite(sh.clip(ball, white))
    sh.taper(im, lash, LASH, 6, 3, 8)
    ox, oy = lash[0]
    sh.taper(im, [(ox - side * 2, oy), (ox + side * 6, oy - 6), (ox + side * 10, oy - 14)], LASH, 5, 1)
    if lower_lid is None:
        lower = through((cx + side * 18, cy + ry - 2), (cx + side * 6, cy + ry + 2), (cx - side * 6, cy + ry + 1))
        sh.stroke(im, lower, rgb("6b3f4a", 150), 2)
    return im


def _eyes(sh: Sheet, **kw):
    return stack(*(_eye(sh, s, **kw) for s in (-1, 1)))


def _closed(sh: Sheet, happy: bool = False):
    im = sh.layer()
    for side, (cx, cy) in EYES.items():
        if happy:  # ^ ^
            sh.taper(im, through((cx - 24, cy + 8), (cx, cy - 12), (cx + 24, cy + 8)), LASH, 4, 4, 8)
        else:
            sh.taper(im, through((cx + side * 30, cy + 2), (cx, cy + 12), (cx - side * 28, cy + 2)), LASH, 5, 3, 7)
            sh.taper(im, [(cx + side * 28, cy + 3), (cx + side * 36, cy + 8)], LASH, 4, 1)
    return im


def _brows(sh: Sheet, im, inner_y, mid_y, outer_y, width: float = 7):
    for side, (cx, _) in EYES.items():
        sh.taper(im, through((cx - side * 24, inner_y[side]), (cx, mid_y[side]), (cx + side * 28, outer_y[side])),
                 BROW, width, 2.5)


def _expr(sh: Sheet, name: str):
    im = sh.layer()
    b = {  # (inner, middle, outer) brow heights per side
        "neutral": (212, 204, 210), "listening": (204, 196, 203), "happy": (208, 198, 206),
        "sad": (198, 204, 214), "angry": (222, 212, 200), "surprised": (196, 184, 194),
    }
    if name == "thinking":
        _brows(sh, im, {-1: 202, 1: 214}, {-1: 192, 1: 212}, {-1: 200, 1: 214})
        for i, (x, y, r) in enumerate([(414, 150, 6), (432, 124, 8), (456, 92, 12)]):
            sh.ellipse(im, x, y, r, r, fill=rgb("ffffff", 235), outline=rgb("b9b2d9"), width=2)
        return im
    inner, mid, outer = b[name]
    _brows(sh, im, {-1: inner, 1: inner}, {-1: mid, 1: mid}, {-1: outer, 1: outer}, 8 if name == "angry" else 7)
    if name == "happy":
        for side in (-1, 1):
            sh.ellipse(im, 256 + side * 66, 300, 24, 12, fill=rgb("ff7f98", 110))
            for k in range(3):
                x = 256 + side * 66 - 12 + k * 10
                sh.stroke(im, [(x + 4, 294), (x - 2, 306)], rgb("ff5d7e", 170), 2)
    elif name == "sad":
        tear = through((176, 280), (166, 306), (176, 314)) + through((176, 314), (186, 306), (176, 280))[1:]
        sh.poly(im, tear, rgb("8fd3ff", 230))
        sh.ellipse(im, 173, 303, 2.5, 4, fill=rgb("ffffff", 220))
    elif name == "angry":
        cx, cy = 370, 176
        for dx, dy in ((-1, -1), (1, -1), (-1, 1), (1, 1)):
            sh.stroke(im, through((cx + dx * 4, cy + dy * 14), (cx + dx * 6, cy + dy * 6), (cx + dx * 14, cy + dy * 4)),
                      rgb("e3344f"), 4)
    return im


def _mouths(sh: Sheet) -> dict:
    cx, cy = MOUTH
    out = {}
    for name, shape in MOUTHS.items():
        im = sh.layer()
        draw_open(sh, im, cx, cy, shape, MOUTH_IN, MOUTH_LINE, TONGUE, TEETH, 3)
        if name == "U":
            sh.ellipse(im, cx, cy + 0.5, 11, 12, outline=rgb("e07a8a"), width=4)
        if name == "FF":
            sh.stroke(im, through((cx - 14, cy + 9), (cx, cy + 13), (cx + 14, cy + 9)), rgb("e07a8a"), 3)
        out[f"mouth_{name}"] = im
    lines = {
        "mouth_sil": (through((cx - 19, cy - 3), (cx, cy + 5), (cx + 19, cy - 3)), 3.5),
        "mouth_PP": (through((cx - 15, cy + 1), (cx, cy + 2.5), (cx + 15, cy + 1)), 5),
        "mouth_sil_sad": (through((cx - 16, cy + 6), (cx, cy - 2), (cx + 16, cy + 6)), 3.5),
        "mouth_sil_angry": (through((cx - 15, cy + 5), (cx, cy), (cx + 15, cy + 5)), 4.5),
        "mouth_sil_thinking": ([(cx - 10, cy + 3), (cx, cy + 1), (cx + 10, cy + 3), (cx + 20, cy - 1)], 3.5),
    }
    for name, (pts, w) in lines.items():
        im = sh.layer()
        sh.stroke(im, pts, MOUTH_LINE, w)
        out[name] = im
    im = sh.layer()
    draw_open(sh, im, cx, cy - 2, Shape(20, 2, 16, 1.3, 5, 0.3, 0, 0.45), MOUTH_IN, MOUTH_LINE, TONGUE, TEETH, 3)
    out["mouth_sil_happy"] = im
    im = sh.layer()
    draw_open(sh, im, cx, cy, Shape(8, 9, 10), MOUTH_IN, MOUTH_LINE, TONGUE, TEETH, 3)
    out["mouth_sil_surprised"] = im
    return out


def draw(side: int) -> dict:
    sh = Sheet(side)
    layers = {"back": _back(sh), "body": _body(sh), "base": _base(sh),
              "eyes_open": _eyes(sh), "eyes_half": _eyes(sh, lid=(-4, -2)), "eyes_closed": _closed(sh),
              "eyes_open_happy": _eyes(sh, lower_lid=2), "eyes_closed_happy": _closed(sh, happy=True),
              "eyes_open_sad": _eyes(sh, lid=(-30, -14), look=(0, 4)),
              "eyes_open_angry": _eyes(sh, lid=(-14, -28)),
              "eyes_open_surprised": _eyes(sh, iris=0.72, big=1.08),
              "eyes_open_thinking": _eyes(sh, look=(7, -9))}
    layers.update(_mouths(sh))
    for e in ("neutral", "listening", "happy", "sad", "angry", "surprised", "thinking"):
        layers[f"expr_{e}"] = _expr(sh, e)
    return {n: sh.finish(im) for n, im in layers.items()}


PIVOT = (256, 340)  # under the chin, in design units
