"""Pip: a small round robot with an LED face, orange ear pods and an antenna (original art, drawn in code)."""
from __future__ import annotations

from livehost.avatar.assets._draw import Sheet, mirror, rgb, through
from livehost.avatar.assets._mouth import Shape, draw_open

SHELL_TOP, SHELL_BOTTOM, SHELL_LINE = rgb("f6f8fc"), rgb("c9d2e0"), rgb("8e9bb0")
SCREEN_TOP, SCREEN_BOTTOM = rgb("172040"), rgb("2a3866")
LED, LED_DIM, LED_WARM = rgb("74f0ff"), rgb("145a70"), rgb("ffb45c")
ACCENT, ACCENT_LIGHT, METAL = rgb("ff8a3d"), rgb("ffbf86"), rgb("7c889c")
PINK, RED, BLUE = rgb("ff7fb0"), rgb("ff5a6e"), rgb("7cc4ff")

EYES = {-1: (206, 210), 1: (306, 210)}
MOUTH = (256, 276)

MOUTHS = {
    "aa": Shape(26, 10, 26, 1.2, 2), "E": Shape(26, 7, 14, 1.3, 3), "I": Shape(30, 4, 8, 1.5, 4),
    "O": Shape(16, 16, 18), "U": Shape(10, 10, 10), "kk": Shape(22, 6, 14, 1.3, 2),
    "DD": Shape(20, 5, 10, 1.3, 2), "nn": Shape(18, 4, 8, 1.4, 2),
    "TH": Shape(19, 5, 9, 1.3, 2, tongue=0.45, tongue_mid=True), "SS": Shape(27, 5, 6, 1.5, 3),
    "CH": Shape(15, 10, 11, 0.7), "RR": Shape(13, 9, 10, 0.8), "FF": Shape(20, 3, 7, 1.4, 2),
}


def _shell(sh: Sheet, draw):
    return sh.gradient(sh.shape_mask(draw), SHELL_TOP, SHELL_BOTTOM, 90, 360)


def _back(sh: Sheet):
    im = sh.layer()
    sh.stroke(im, [(256, 110), (256, 54)], METAL, 9)
    sh.ellipse(im, 256, 44, 17, 17, fill=ACCENT)
    sh.ellipse(im, 251, 39, 6, 6, fill=ACCENT_LIGHT)
    return sh.glow(im, 10, 0.6, ACCENT)


def _body(sh: Sheet):
    im = sh.layer()
    sh.rrect(im, 230, 330, 282, 392, 12, fill=METAL)
    for y in (350, 366):
        sh.stroke(im, [(234, y), (278, y)], rgb("66728a"), 3)
    for side in (-1, 1):
        arm = _shell(sh, lambda m, s=side: sh.ellipse(m, 256 + s * 118, 452, 26, 46, fill=255))
        im.alpha_composite(arm)
        sh.ellipse(im, 256 + side * 118, 452, 26, 46, outline=SHELL_LINE, width=2.5)
    im.alpha_composite(sh.gradient(sh.shape_mask(lambda m: sh.rrect(m, 152, 378, 360, 560, 84, fill=255)),
                                   SHELL_TOP, SHELL_BOTTOM, 378, 512))
    sh.rrect(im, 152, 378, 360, 560, 84, outline=SHELL_LINE, width=2.5)
    sh.ellipse(im, 256, 452, 40, 40, fill=ACCENT)
    sh.ellipse(im, 256, 452, 30, 30, fill=SCREEN_TOP)
    heart = sh.layer()
    pts = through((256, 468), (236, 450), (244, 438)) + through((244, 438), (252, 434), (256, 444))[1:]
    sh.poly(heart, pts + mirror(pts)[::-1], LED)
    im.alpha_composite(sh.glow(heart, 5, 0.8))
    return im


def _base(sh: Sheet):
    im = sh.layer()
    for side in (-1, 1):
        x = 256 + side * 150
        sh.rrect(im, x - 20, 180, x + 20, 268, 16, fill=ACCENT)
        sh.rrect(im, x - 10, 196, x + 10, 252, 8, fill=ACCENT_LIGHT)
    im.alpha_composite(_shell(sh, lambda m: sh.rrect(m, 114, 92, 398, 352, 104, fill=255)))
    sh.rrect(im, 114, 92, 398, 352, 104, outline=SHELL_LINE, width=3)
    screen = sh.shape_mask(lambda m: sh.rrect(m, 144, 126, 368, 322, 74, fill=255))
    im.alpha_composite(sh.gradient(screen, SCREEN_TOP, SCREEN_BOTTOM, 126, 322))
    shine = sh.layer()
    sh.taper(shine, through((168, 236), (176, 160), (240, 140)), rgb("ffffff", 40), 2, 2, 14)
    im.alpha_composite(sh.clip(shine, screen))
    sh.rrect(im, 144, 126, 368, 322, 74, outline=rgb("0e1328"), width=3)
    return im


def _led(sh: Sheet, draw, color=LED, glow: float = 9):
    im = sh.layer()
    draw(im, color)
    return sh.glow(im, glow, 0.9)


def _cut(sh: Sheet, im, inner_dy: float, outer_dy: float):
    """Slice the top off each eye along a slanted lid line (sad / angry)."""
    keep = sh.mask()
    for side, (cx, cy) in EYES.items():
        sh.poly(keep, [(cx - side * 40, cy + inner_dy), (cx + side * 40, cy + outer_dy),
                       (cx + side * 40, cy + 60), (cx - side * 40, cy + 60)], 255)
    return sh.clip(im, keep)


def _eyes(sh: Sheet, kind: str = "open"):
    def draw(im, c):
        for side, (cx, cy) in EYES.items():
            if kind == "open":
                sh.rrect(im, cx - 16, cy - 24, cx + 16, cy + 24, 16, fill=c)
                sh.ellipse(im, cx - 6, cy - 12, 4, 5, fill=rgb("ffffff", 230))
            elif kind == "half":
                sh.rrect(im, cx - 16, cy - 2, cx + 16, cy + 20, 11, fill=c)
            elif kind == "closed":
                sh.rrect(im, cx - 19, cy + 6, cx + 19, cy + 14, 4, fill=c)
            elif kind == "happy":
                sh.stroke(im, [(cx - 19, cy + 8), (cx, cy - 10), (cx + 19, cy + 8)], c, 10)
            elif kind == "surprised":
                sh.ellipse(im, cx, cy, 22, 22, outline=c, width=8)
                sh.ellipse(im, cx, cy, 7, 7, fill=c)
            elif kind == "thinking":
                h = 24 if side < 0 else 15
                sh.rrect(im, cx - 14 + 8, cy - h - 8, cx + 14 + 8, cy + h - 8, 14, fill=c)
            elif kind in ("sad", "angry"):
                sh.rrect(im, cx - 17, cy - 24, cx + 17, cy + 24, 17, fill=c)
    im = _led(sh, draw)
    if kind == "sad":
        im = _cut(sh, im, -24, -4)
    elif kind == "angry":
        im = _cut(sh, im, -4, -26)
    return im


def _mouths(sh: Sheet) -> dict:
    cx, cy = MOUTH
    out = {}
    for name, shape in MOUTHS.items():
        def draw(im, c, name=name, shape=shape):
            draw_open(sh, im, cx, cy, shape, LED_DIM, c, PINK, LED, 6)
            if name == "SS":
                for x in range(-18, 19, 9):
                    sh.stroke(im, [(cx + x, cy - 3), (cx + x, cy + 4)], c, 3)
            elif name == "CH":
                sh.stroke(im, [(cx - 10, cy), (cx + 10, cy)], c, 4)
            elif name == "FF":
                for x in (-7, 7):
                    sh.rrect(im, cx + x - 5, cy - 2, cx + x + 5, cy + 6, 2, fill=c)
        out[f"mouth_{name}"] = _led(sh, draw)
    strokes = {
        "mouth_sil": through((cx - 22, cy - 4), (cx, cy + 6), (cx + 22, cy - 4)),
        "mouth_PP": [(cx - 20, cy + 1), (cx + 20, cy + 1)],
        "mouth_sil_sad": through((cx - 20, cy + 7), (cx, cy - 3), (cx + 20, cy + 7)),
        "mouth_sil_angry": [(cx - 22, cy + 4), (cx - 11, cy - 3), (cx, cy + 4), (cx + 11, cy - 3), (cx + 22, cy + 4)],
        "mouth_sil_thinking": [(cx - 8, cy + 3), (cx + 2, cy), (cx + 12, cy + 3), (cx + 22, cy)],
    }
    for name, pts in strokes.items():
        out[name] = _led(sh, lambda im, c, pts=pts, w=(8 if name == "mouth_PP" else 7): sh.stroke(im, pts, c, w))
    out["mouth_sil_happy"] = _led(sh, lambda im, c: draw_open(sh, im, cx, cy - 2, Shape(24, 2, 16, 1.2, 6),
                                                               LED_DIM, c, PINK, LED, 6))
    out["mouth_sil_surprised"] = _led(sh, lambda im, c: draw_open(sh, im, cx, cy, Shape(9, 10, 11), LED_DIM, c,
                                                                  PINK, LED, 6))
    return out


def _expr(sh: Sheet, name: str):
    def brows(im, c, inner, outer):
        for side, (cx, cy) in EYES.items():
            sh.stroke(im, [(cx - side * 14, cy + inner), (cx + side * 16, cy + outer)], c, 7)

    def draw(im, c):
        if name == "happy":
            for side, (cx, cy) in EYES.items():
                for k in (-1, 0, 1):
                    x = cx + side * 14 + k * 10
                    sh.stroke(im, [(x + 4, cy + 36), (x - 3, cy + 46)], PINK, 4)
        elif name == "sad":
            brows(im, BLUE, -40, -30)
            tear = through((200, 244), (190, 266), (200, 272)) + through((200, 272), (210, 266), (200, 244))[1:]
            sh.poly(im, tear, BLUE)
        elif name == "angry":
            brows(im, RED, -30, -44)
        elif name == "surprised":
            brows(im, LED, -44, -48)
            sh.rrect(im, 424, 66, 440, 112, 8, fill=LED_WARM)
            sh.ellipse(im, 432, 128, 9, 9, fill=LED_WARM)
        elif name == "thinking":
            for i, x in enumerate((402, 426, 450)):
                sh.ellipse(im, x, 92 - i * 6, 7 + i * 2, 7 + i * 2, fill=LED_WARM)
        elif name == "listening":
            for r in (20, 36):
                sh.stroke(im, through((424 + r * 0.3, 222 - r), (430 + r, 222), (424 + r * 0.3, 222 + r)), c, 6)
            brows(im, LED, -40, -42)
    return _led(sh, draw)


def draw(side: int) -> dict:
    sh = Sheet(side)
    layers = {"back": _back(sh), "body": _body(sh), "base": _base(sh)}
    for kind in ("open", "half", "closed"):
        layers[f"eyes_{kind}"] = _eyes(sh, kind)
    for e in ("happy", "sad", "angry", "surprised", "thinking"):
        layers[f"eyes_open_{e}"] = _eyes(sh, e)
    layers["eyes_closed_happy"] = layers["eyes_open_happy"]
    layers.update(_mouths(sh))
    for e in ("happy", "sad", "angry", "surprised", "thinking", "listening"):
        layers[f"expr_{e}"] = _expr(sh, e)
    return {n: sh.finish(im) for n, im in layers.items()}


PIVOT = (256, 352)
