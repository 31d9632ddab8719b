"""The avatar renderer seam, and the 2D sprite renderer behind it.

A renderer draws the host at any moment on the reply's audio clock: `render(t_ms)` is a pure function of t and
of what was pushed (viseme tracks, emotions, mode), so audio and video share one clock, a frame for any time can be
drawn (late, early, twice), and barge-in is `clear()`. Who keeps the clock is the caller's business.

Sprite folders (the PNGTuber convention; every PNG the same size, RGBA, layered in this order):

    back.png           optional  behind the body, moves with the head (long hair, a tail)
    body.png           optional  neck and shoulders; breathes but does not sway
    base.png           REQUIRED  the head without eyes or mouth
    eyes_open.png      REQUIRED  eyes_closed.png REQUIRED   eyes_half.png optional (blink in-between)
    mouth_sil.png      REQUIRED  closed mouth        mouth_aa.png REQUIRED  wide open mouth
    mouth_<viseme>.png optional  any of PP FF TH DD kk CH SS nn RR E I O U; a missing one falls back along
                                 MOUTH_FALLBACK (PP->sil, FF->SS->I->E->aa, O->aa, U->O, CH->U, ...), so
                                 the classic two-frame PNGTuber (closed/open) works
    expr_<emotion>.png optional  overlay over the face (brows, blush, tears) while that emotion shows; also
                                 expr_listening / expr_thinking, used in those modes while the emotion is neutral
    <layer>_<emotion>.png        optional  replaces an eyes_* or mouth_* layer under that emotion
                                 (eyes_open_happy.png, mouth_sil_sad.png, ...)
    avatar.json        optional  {"pivot": [x, y]}: the point the head tilts around (default: under the chin)
"""
from __future__ import annotations

import functools
import json
import random
from collections import OrderedDict
from dataclasses import dataclass
from math import pi, sin
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from livehost.avatar.visemes import OPENNESS, VISEMES, VisemeTrack, dominant
from livehost.speech.registry import Registry

AVATARS: Registry = Registry("avatar")

MODES = ("idle", "listening", "thinking", "speaking")
# An emotion the set does not draw shows as the nearest one it does (else neutral).
_SIMILAR = {"excited": "happy", "joy": "happy", "glad": "happy", "shy": "happy", "calm": "neutral",
            "sadness": "sad", "surprise": "surprised", "scared": "surprised", "afraid": "surprised",
            "anger": "angry", "mad": "angry", "disgusted": "angry", "curious": "thinking", "confused": "thinking"}
REQUIRED = ("base", "eyes_open", "eyes_closed", "mouth_sil", "mouth_aa")
MOUTH_FALLBACK = {"PP": "sil", "FF": "SS", "SS": "I", "I": "E", "E": "aa", "TH": "DD", "DD": "E", "nn": "DD",
                  "kk": "E", "CH": "U", "RR": "U", "U": "O", "O": "aa"}
_TILT_DEG = {"idle": 0, "listening": 4, "thinking": -3, "speaking": 0}
_POSE_EASE_MS = 300.0


@runtime_checkable
class AvatarRenderer(Protocol):
    size: tuple[int, int]  # (width, height) of the frames

    def push(self, track: VisemeTrack) -> None: ...  # already on the reply's audio timeline (ms)
    def set_emotion(self, emotion: str, at_ms: float) -> None: ...
    def set_mode(self, mode: str, at_ms: float | None = None) -> None: ...
    def clear(self) -> None: ...  # barge-in: drop every track, close the mouth, listen
    def render(self, t_ms: float) -> np.ndarray: ...  # (H, W, 4) uint8 RGBA


@dataclass
class SpriteSet:
    layers: dict[str, np.ndarray]  # name -> (H, W, 4) uint8 straight RGBA, all one size
    pivot: tuple[float, float] | None = None  # head tilt centre in px; None: under the chin
    name: str = "sprites"

    def __post_init__(self):
        missing = [n for n in REQUIRED if n not in self.layers]
        if missing:
            raise ValueError(f"sprite set {self.name!r} lacks the layer(s) {', '.join(missing)}")
        shape = self.layers["base"].shape
        for n, a in self.layers.items():
            if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 4 or a.shape != shape:
                raise ValueError(f"layer {n!r} of {self.name!r} must be {shape} uint8 RGBA, got {a.shape} {a.dtype}")

    @property
    def size(self) -> tuple[int, int]:
        h, w = self.layers["base"].shape[:2]
        return w, h

    @classmethod
    def from_folder(cls, path) -> "SpriteSet":
        from PIL import Image

        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(f"sprite folder {folder} does not exist")
        for n in REQUIRED:
            if not (folder / f"{n}.png").is_file():
                raise FileNotFoundError(f"sprite folder {folder} lacks {n}.png (required: "
                                        f"{', '.join(r + '.png' for r in REQUIRED)})")
        layers = {}
        for f in sorted(folder.glob("*.png")):
            with Image.open(f) as im:
                layers[f.stem] = np.asarray(im.convert("RGBA")).copy()
            if layers[f.stem].shape != layers.get("base", layers[f.stem]).shape:
                raise ValueError(f"{f} is {layers[f.stem].shape[1]}x{layers[f.stem].shape[0]}; every layer must "
                                 f"match base.png")
        meta = json.loads((folder / "avatar.json").read_text()) if (folder / "avatar.json").is_file() else {}
        pivot = tuple(meta["pivot"]) if meta.get("pivot") else None
        return cls(layers, pivot, folder.name)


class _Layer:
    """Premultiplied RGBA cropped to its visible box, with 255-alpha ready for blending."""
    __slots__ = ("rgba", "inv", "x", "y")

    def __init__(self, premul: np.ndarray):
        ys, xs = np.nonzero(premul[..., 3])
        if len(ys) == 0:
            premul, y0, x0 = premul[:1, :1], 0, 0
        else:
            y0, x0 = ys.min(), xs.min()
            premul = premul[y0:ys.max() + 1, x0:xs.max() + 1]
        self.rgba = np.ascontiguousarray(premul)
        self.inv = (255 - self.rgba[..., 3:4]).astype(np.uint16)
        self.x, self.y = int(x0), int(y0)


def _premultiply(a: np.ndarray) -> np.ndarray:
    out = a.astype(np.uint16)
    out[..., :3] = (out[..., :3] * out[..., 3:4] + 127) // 255
    return out.astype(np.uint8)


def _over(dst: np.ndarray, layer: _Layer, dx: int = 0, dy: int = 0) -> None:
    """dst = layer over dst, premultiplied, in place; integer maths only (no floats per frame)."""
    x, y = layer.x + dx, layer.y + dy
    h, w = layer.rgba.shape[:2]
    H, W = dst.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
    if x0 >= x1 or y0 >= y1:
        return
    d = dst[y0:y1, x0:x1]
    tmp = d * layer.inv[y0 - y:y1 - y, x0 - x:x1 - x]
    tmp += 128
    tmp += tmp >> 8
    tmp >>= 8  # == round(d * (255 - a) / 255)
    tmp += layer.rgba[y0 - y:y1 - y, x0 - x:x1 - x]
    d[...] = tmp


class SpriteAvatar:
    """Composites pre-rendered layers per frame: a cached head (base+eyes+mouth+expression, tilted) over the
    body, moved by integer offsets for breathing and sway. `last_layers` tells what the last frame showed."""

    def __init__(self, sprites: SpriteSet, size: tuple[int, int] = (256, 256), transparent: bool = False,
                 background: tuple[int, int, int] = (30, 32, 48), seed: int = 0, idle_motion: bool = True,
                 blink: bool = True, cache_mb: float = 48.0):
        from PIL import Image

        self.size = (int(size[0]), int(size[1]))
        self.sprites, self.seed, self.idle_motion, self.blink = sprites, int(seed), idle_motion, blink
        W, H = self.size
        sw, sh = sprites.size
        scale = min(W / sw, H / sh)
        nw, nh = max(1, round(sw * scale)), max(1, round(sh * scale))
        ox, oy = (W - nw) // 2, H - nh  # fit, centred, standing on the bottom edge
        self._layers: dict[str, _Layer] = {}
        self._full: dict[str, np.ndarray] = {}  # whole-canvas copies of the layers that get tilted
        for n, a in sprites.layers.items():
            if (nw, nh) != (sw, sh):  # Pillow resamples RGBA premultiplied, so edges keep their colour
                a = np.asarray(Image.fromarray(a, "RGBA").resize((nw, nh), Image.LANCZOS))
            full = np.zeros((H, W, 4), np.uint8)
            full[oy:oy + nh, ox:ox + nw] = _premultiply(a)
            self._layers[n] = _Layer(full)
            if n in ("base", "back"):
                self._full[n] = full
        px, py = sprites.pivot if sprites.pivot is not None else (sw / 2, sh * 0.72)
        self._pivot = (ox + px * scale, oy + py * scale)
        self._body = self._layers.get("body")
        self._k = H / 256.0  # motion amplitudes are designed at 256 px
        self.transparent = transparent
        self._bg = np.zeros((H, W, 4), np.uint8)
        if not transparent:
            self._bg[...] = (*background, 255)
        self._cache: OrderedDict = OrderedDict()
        self._cache_max = max(16, int(cache_mb * 2 ** 20 / (W * H * 6)))
        self._tracks: tuple[VisemeTrack, ...] = ()
        self._emotions: tuple[tuple[float, str], ...] = ((float("-inf"), "neutral"),)
        self._mode: tuple[str, str, float | None] = ("idle", "idle", None)
        self.last_layers: dict = {}

    # ---- state (each setter swaps one immutable value, so a render thread never sees half an update) --------
    def push(self, track: VisemeTrack) -> None:
        keep = tuple(t for t in self._tracks if t.end_ms > track.start_ms - 30_000)
        self._tracks = tuple(sorted(keep + (track,), key=lambda t: t.start_ms))

    def set_emotion(self, emotion: str, at_ms: float = 0.0) -> None:
        e = (float(at_ms), emotion.strip().lower() or "neutral")
        self._emotions = tuple(sorted(self._emotions + (e,), key=lambda x: x[0]))[-64:]

    def set_mode(self, mode: str, at_ms: float | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown avatar mode {mode!r}; choose one of {', '.join(MODES)}")
        self._mode = (mode, self._mode[0], at_ms)

    def clear(self) -> None:
        self._tracks = ()
        self._mode = ("listening", self._mode[0], None)

    @property
    def mode(self) -> str:
        return self._mode[0]

    # ---- drawing -------------------------------------------------------------------------------------------
    def render(self, t_ms: float) -> np.ndarray:
        mode, prev_mode, mode_at = self._mode
        emotion = self._emotion_at(t_ms)
        expr = self._expression(emotion, mode)
        weights = self._mouth(t_ms)
        viseme = dominant(weights)
        opening = sum(OPENNESS.get(n, 0.3) * w for n, w in weights.items())
        eyes = self._layer(f"eyes_{self._eyes(t_ms)}", expr)
        mouth = self._mouth_layer(viseme, expr)
        overlay = f"expr_{expr}" if f"expr_{expr}" in self._layers else None
        tilt = self._tilt(t_ms, mode, prev_mode, mode_at)
        dx, dy, body_dy = self._motion(t_ms, mode, opening)

        frame = self._bg.copy()
        if "back" in self._layers:
            _over(frame, self._cached(("back", tilt), lambda: self._full["back"], tilt), dx, dy)
        if self._body is not None:
            _over(frame, self._body, 0, body_dy)
        _over(frame, self._cached((eyes, mouth, overlay, tilt), lambda: self._compose(eyes, mouth, overlay), tilt),
              dx, dy)
        if self.transparent:
            _unpremultiply(frame)
        self.last_layers = {"eyes": eyes, "mouth": mouth, "expression": overlay, "viseme": viseme,
                            "emotion": emotion, "mode": mode, "tilt": tilt, "head_offset": (dx, dy),
                            "body_offset": (0, body_dy)}
        return frame

    def _emotion_at(self, t_ms: float) -> str:
        current = "neutral"
        for at, e in self._emotions:
            if at > t_ms:
                break
            current = e
        return current

    def _expression(self, emotion: str, mode: str) -> str:
        """The emotion if the set draws it, else a similar one it draws, else neutral (a listening or thinking
        pose while neutral)."""
        for e in (emotion, _SIMILAR.get(emotion)):
            if e and any(f"{kind}_{e}" in self._layers for kind in ("expr", "eyes_open", "mouth_sil")):
                break
        else:
            e = "neutral"
        if e == "neutral" and mode in ("listening", "thinking") and f"expr_{mode}" in self._layers:
            e = mode
        return e

    def _mouth(self, t_ms: float) -> dict[str, float]:
        for tr in reversed(self._tracks):  # the latest track that reaches t (its ramps included)
            if tr.start_ms - tr.ramp_ms <= t_ms <= tr.end_ms + tr.ramp_ms:
                return tr.at(t_ms)
        return {"sil": 1.0}

    def _layer(self, name: str, expr: str) -> str:
        return f"{name}_{expr}" if f"{name}_{expr}" in self._layers else name

    def _mouth_layer(self, viseme: str, expr: str) -> str:
        v = viseme if viseme in VISEMES else "sil"
        while f"mouth_{v}" not in self._layers:
            v = MOUTH_FALLBACK.get(v, "sil")
        return self._layer(f"mouth_{v}", expr)

    def _eyes(self, t_ms: float) -> str:
        """Blink about every 2-6 s (one pseudo-random blink per 4 s slot, seeded), 150 ms long."""
        if not self.blink:
            return "open"
        slot = int(t_ms // 4000)
        at = slot * 4000 + random.Random(self.seed * 1_000_003 + slot).uniform(300, 2800)
        phase = t_ms - at
        if 0 <= phase < 150:
            half = "half" if "eyes_half" in self._layers else "closed"
            return half if phase < 40 or phase >= 110 else "closed"
        return "open"

    def _tilt(self, t_ms: float, mode: str, prev: str, at: float | None) -> int:
        target = _TILT_DEG[mode]
        if at is None or t_ms >= at + _POSE_EASE_MS:
            return target
        f = max(0.0, (t_ms - at) / _POSE_EASE_MS)
        f = f * f * (3 - 2 * f)
        return round(_TILT_DEG[prev] + (target - _TILT_DEG[prev]) * f)  # whole degrees keep the cache small

    def _motion(self, t_ms: float, mode: str, opening: float) -> tuple[int, int, int]:
        if not self.idle_motion:
            return 0, 0, 0
        k, s = self._k, t_ms / 1000.0
        breath = 1.6 * k * sin(2 * pi * s / 4.2)
        sway = (2.2 if mode in ("idle", "listening") else 0.9) * k * sin(2 * pi * s / 5.3 + 0.7)
        bob = 0.8 * k * sin(2 * pi * s / 3.1)
        lean = 2.0 * k if mode == "listening" else 0.0
        nod = 1.5 * k * opening  # the head dips a little with the jaw
        return round(sway), round(breath + bob + lean + nod), round(breath)

    def _compose(self, eyes: str, mouth: str, overlay: str | None) -> np.ndarray:
        head = self._full["base"].copy()
        for n in (eyes, mouth, overlay):
            if n is not None:
                _over(head, self._layers[n])
        return head

    def _cached(self, key, make, tilt: int) -> _Layer:
        layer = self._cache.get(key)
        if layer is not None:
            self._cache.move_to_end(key)
            return layer
        img = make()
        if tilt:
            img = self._rotate(img, tilt)
        layer = self._cache[key] = _Layer(img)
        if len(self._cache) > self._cache_max:
            self._cache.popitem(last=False)
        return layer

    def _rotate(self, premul: np.ndarray, deg: float) -> np.ndarray:
        from PIL import Image

        H, W = premul.shape[:2]
        im = Image.frombytes("RGBa", (W, H), premul.tobytes())  # already premultiplied: no halo
        out = np.array(im.rotate(deg, Image.BICUBIC, center=self._pivot))
        np.minimum(out[..., :3], out[..., 3:4], out=out[..., :3])  # bicubic overshoot
        return out


def _unpremultiply(frame: np.ndarray) -> None:
    a = frame[..., 3]
    ys, xs = np.nonzero((a > 0) & (a < 255))  # only edges need it; opaque pixels are already straight
    if len(ys):
        px = frame[ys, xs].astype(np.uint32)
        px[:, :3] = np.minimum(255, (px[:, :3] * 255 + px[:, 3:4] // 2) // px[:, 3:4])
        frame[ys, xs] = px


@AVATARS.register("sprites")
def sprites_avatar(folder: str, **options) -> SpriteAvatar:
    return SpriteAvatar(SpriteSet.from_folder(folder), **options)


def _built_in(name: str, size: tuple[int, int] = (256, 256), **options) -> SpriteAvatar:
    from livehost.avatar.assets import sprite_set
    side = int(min(size))
    return SpriteAvatar(sprite_set(name, (side, side)), size=size, **options)


for _name in ("lumi", "pip", "nuomi"):  # drawn in code: livehost/avatar/assets/<name>.py
    AVATARS.register(_name)(functools.partial(_built_in, _name))
