"""Mouth shapes shared by the drawn avatars: a parametric outline (rounder or more lens-like), with teeth and
tongue clipped inside it."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from livehost.avatar.assets._draw import Sheet


@dataclass
class Shape:
    rx: float            # half width
    top: float           # opening above the centre line
    bottom: float        # opening below it
    p: float = 1.0       # 1: ellipse; >1: pointed corners (lens); <1: boxy
    corner: float = 0.0  # lifts the corners (a smile)
    teeth_top: float = 0.0  # fraction of the height showing upper teeth
    teeth_bot: float = 0.0
    tongue: float = 0.0  # fraction of the height the tongue fills from below
    tongue_mid: bool = False  # tongue tip between the teeth (TH)


def outline(cx: float, cy: float, s: Shape, n: int = 64) -> list[tuple[float, float]]:
    th = np.linspace(0, 2 * np.pi, n, endpoint=False)
    c, si = np.cos(th), np.sin(th)
    x = cx + s.rx * np.sign(c) * np.abs(c) ** s.p
    y = cy + np.where(si < 0, s.top, s.bottom) * si - s.corner * np.abs(c) ** 4
    return list(zip(x, y))


def draw_open(sh: Sheet, im, cx: float, cy: float, s: Shape, inside, line, tongue, teeth, width: float = 3.0,
              line_inside: bool = False):
    """An open mouth on `im` (in place): interior, teeth, tongue, then the outline."""
    pts = outline(cx, cy, s)
    mask = sh.shape_mask(lambda m: sh.poly(m, pts, 255))
    inner = sh.layer()
    sh.poly(inner, pts, inside)
    h = s.top + s.bottom
    if s.tongue:
        ty = cy + s.bottom if not s.tongue_mid else cy + s.bottom * 0.15
        sh.ellipse(inner, cx, ty, s.rx * 0.55, max(3.0, h * s.tongue), fill=tongue)
    if s.teeth_top:
        sh.rrect(inner, cx - s.rx * 1.2, cy - s.top - 4, cx + s.rx * 1.2, cy - s.top + h * s.teeth_top, 2,
                 fill=teeth)
    if s.teeth_bot:
        sh.rrect(inner, cx - s.rx * 1.2, cy + s.bottom - h * s.teeth_bot, cx + s.rx * 1.2, cy + s.bottom + 4, 2,
                 fill=teeth)
    im.alpha_composite(sh.clip(inner, mask))
    if line is not None:
        sh.stroke(im, pts + pts[:1], line, width)
