"""A small drawing kit for the built-in avatars: shapes in a 512-unit square, drawn at 2x with Pillow and
downsampled (Pillow resizes RGBA premultiplied), which gives clean anti-aliased edges."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

UNITS = 512


def rgb(hex_: str, alpha: int = 255) -> tuple[int, int, int, int]:
    h = hex_.lstrip("#")
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16), alpha


def qbez(p0, c, p2, n: int = 24) -> list[tuple[float, float]]:
    t = np.linspace(0, 1, n)[:, None]
    pts = (1 - t) ** 2 * np.array(p0) + 2 * (1 - t) * t * np.array(c) + t ** 2 * np.array(p2)
    return [tuple(p) for p in pts]


def through(p0, mid, p2, n: int = 24) -> list[tuple[float, float]]:
    """The quadratic curve from p0 to p2 that passes through mid at its halfway point."""
    c = (2 * mid[0] - (p0[0] + p2[0]) / 2, 2 * mid[1] - (p0[1] + p2[1]) / 2)
    return qbez(p0, c, p2, n)


def cbez(p0, c1, c2, p3, n: int = 28) -> list[tuple[float, float]]:
    t = np.linspace(0, 1, n)[:, None]
    pts = ((1 - t) ** 3 * np.array(p0) + 3 * (1 - t) ** 2 * t * np.array(c1)
           + 3 * (1 - t) * t ** 2 * np.array(c2) + t ** 3 * np.array(p3))
    return [tuple(p) for p in pts]


def mirror(pts, cx: float = 256) -> list[tuple[float, float]]:
    return [(2 * cx - x, y) for x, y in pts]


class Sheet:
    """One drawing surface size; every method takes design units (0..512)."""

    def __init__(self, side: int, ss: int = 2):
        self.side, self.n = int(side), int(side) * ss
        self.k = self.n / UNITS

    def layer(self) -> Image.Image:
        return Image.new("RGBA", (self.n, self.n), (0, 0, 0, 0))

    def mask(self) -> Image.Image:
        return Image.new("L", (self.n, self.n), 0)

    def pts(self, pts):
        return [(x * self.k, y * self.k) for x, y in pts]

    def box(self, cx, cy, rx, ry):
        k = self.k
        return [(cx - rx) * k, (cy - ry) * k, (cx + rx) * k, (cy + ry) * k]

    # -- shapes (a translucent colour is blended over what is there; ImageDraw alone would replace it) --------
    def _paint(self, im, colors, fn):
        if im.mode == "RGBA" and any(c is not None and len(c) == 4 and c[3] < 255 for c in colors):
            tmp = self.layer()
            fn(ImageDraw.Draw(tmp))
            im.alpha_composite(tmp)
        else:
            fn(ImageDraw.Draw(im))

    def ellipse(self, im, cx, cy, rx, ry, fill=None, outline=None, width: float = 0):
        self._paint(im, (fill, outline), lambda d: d.ellipse(self.box(cx, cy, rx, ry), fill=fill, outline=outline,
                                                              width=round(width * self.k)))

    def rrect(self, im, x0, y0, x1, y1, r, fill=None, outline=None, width: float = 0):
        k = self.k
        self._paint(im, (fill, outline), lambda d: d.rounded_rectangle(
            [x0 * k, y0 * k, x1 * k, y1 * k], radius=r * k, fill=fill, outline=outline, width=round(width * k)))

    def poly(self, im, pts, fill):
        self._paint(im, (fill,), lambda d: d.polygon(self.pts(pts), fill=fill))

    def stroke(self, im, pts, color, width: float):
        """A polyline with round joints and caps."""
        w = width * self.k
        p = self.pts(pts)

        def fn(d):
            d.line(p, fill=color, width=max(1, round(w)), joint="curve")
            for x, y in (p[0], p[-1]):
                d.ellipse([x - w / 2, y - w / 2, x + w / 2, y + w / 2], fill=color)
        self._paint(im, (color,), fn)

    def taper(self, im, pts, color, w0: float, w1: float, w_mid: float | None = None):
        """A stroke whose width goes w0 -> (w_mid) -> w1: brows, lashes, hair strands."""
        p = np.array(pts, float)
        tang = np.gradient(p, axis=0)
        norm = np.stack([-tang[:, 1], tang[:, 0]], 1)
        norm /= np.maximum(np.linalg.norm(norm, axis=1, keepdims=True), 1e-9)
        t = np.linspace(0, 1, len(p))
        w = (w0 + (w1 - w0) * t) if w_mid is None else np.where(t < .5, w0 + (w_mid - w0) * t * 2,
                                                                 w_mid + (w1 - w_mid) * (t - .5) * 2)
        left, right = p + norm * w[:, None] / 2, p - norm * w[:, None] / 2
        self.poly(im, [tuple(x) for x in left] + [tuple(x) for x in right[::-1]], color)

    # -- fills and effects -----------------------------------------------------------------------------------
    def gradient(self, mask: Image.Image, top, bottom, y0: float, y1: float) -> Image.Image:
        """A layer coloured top->bottom between y0 and y1 (design units), visible where mask is."""
        ys = np.clip((np.arange(self.n) / self.k - y0) / max(y1 - y0, 1e-6), 0, 1)[:, None, None]
        col = np.array(top, float) * (1 - ys) + np.array(bottom, float) * ys
        arr = np.broadcast_to(col, (self.n, self.n, 4)).astype(np.uint8).copy()
        arr[..., 3] = (arr[..., 3].astype(np.uint16) * np.asarray(mask) // 255).astype(np.uint8)
        return Image.fromarray(arr, "RGBA")

    def shape_mask(self, draw_fn) -> Image.Image:
        m = self.mask()
        draw_fn(m)
        return m

    @staticmethod
    def clip(im: Image.Image, mask: Image.Image) -> Image.Image:
        out = im.copy()
        out.putalpha(ImageChops.multiply(im.getchannel("A"), mask))
        return out

    def glow(self, im: Image.Image, radius: float, strength: float = 1.0, color=None) -> Image.Image:
        """im over a blurred halo of itself (LED look). Blurs only the drawn box."""
        bbox = im.getbbox()
        if bbox is None:
            return im
        r = radius * self.k
        m = int(3 * r) + 2
        box = (max(0, bbox[0] - m), max(0, bbox[1] - m), min(self.n, bbox[2] + m), min(self.n, bbox[3] + m))
        src = im.crop(box)
        if color is not None:
            src = Image.new("RGBA", src.size, color[:3] + (0,)).copy()
            src.putalpha(im.crop(box).getchannel("A"))
        halo = src.filter(ImageFilter.GaussianBlur(r))
        if strength != 1.0:
            halo.putalpha(halo.getchannel("A").point(lambda a: min(255, int(a * strength))))
        base = self.layer()
        base.paste(halo, box[:2])
        return Image.alpha_composite(base, im)

    def finish(self, im: Image.Image) -> np.ndarray:
        return np.asarray(im.resize((self.side, self.side), Image.LANCZOS)).copy()


def stack(*layers: Image.Image) -> Image.Image:
    out = layers[0]
    for l in layers[1:]:
        out = Image.alpha_composite(out, l)
    return out
