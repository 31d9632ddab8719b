"""The sprite renderer: the right mouth at the right frame, blinking, barge-in, transparency, sprite folders."""
from __future__ import annotations

import time

import numpy as np
import pytest

from livehost.avatar.renderer import AVATARS, AvatarRenderer, SpriteAvatar, SpriteSet
from livehost.avatar.visemes import Viseme, VisemeTrack

SIZE = (128, 128)  # small frames keep the tests quick; the bench measures the real sizes
# rest, a lip closure, an open vowel, rest
TRACK = VisemeTrack([Viseme("sil", 0, 200), Viseme("PP", 200, 300), Viseme("aa", 300, 500),
                     Viseme("sil", 500, 700)], 700).shifted(1000)  # on the reply's audio timeline


def still(name: str = "lumi", **kw) -> SpriteAvatar:
    return AVATARS.create(name, size=kw.pop("size", SIZE), idle_motion=False, blink=False, **kw)


def mouth_box(av: SpriteAvatar) -> tuple[slice, slice]:
    """Where the mouth layers draw (their union), to compare mouths only."""
    boxes = [l for n, l in av._layers.items() if n.startswith("mouth_")]
    y0, x0 = min(l.y for l in boxes), min(l.x for l in boxes)
    y1, x1 = max(l.y + l.rgba.shape[0] for l in boxes), max(l.x + l.rgba.shape[1] for l in boxes)
    return slice(y0 - 3, y1 + 3), slice(x0 - 3, x1 + 3)


def test_registered_and_conforming():
    assert {"lumi", "pip", "sprites"} <= set(AVATARS.names())
    for name in ("lumi", "pip"):
        av = still(name)
        assert isinstance(av, AvatarRenderer)
        frame = av.render(0)
        assert frame.shape == (128, 128, 4) and frame.dtype == np.uint8
        assert (frame[..., 3] == 255).all()  # opaque background by default
    wide = AVATARS.create("pip", size=(160, 120))
    assert wide.render(0).shape == (120, 160, 4)


@pytest.mark.parametrize("name", ["lumi", "pip"])
def test_mouth_follows_the_track(name):
    av = still(name)
    av.set_mode("speaking")
    av.push(TRACK)
    frames = {}
    for t, mouth in [(1100, "mouth_sil"), (1250, "mouth_PP"), (1400, "mouth_aa"), (1460, "mouth_aa"),
                     (1650, "mouth_sil"), (3000, "mouth_sil")]:
        frames[t] = av.render(t)
        assert av.last_layers["mouth"] == mouth, t
    ys, xs = mouth_box(av)
    assert np.array_equal(frames[1400], frames[1460])  # same shape, same frame (no idle motion here)
    assert np.array_equal(frames[1100], frames[3000])  # at rest the frames are identical
    assert not np.array_equal(frames[1250][ys, xs], frames[1400][ys, xs])  # closed vs open differ...
    assert not np.array_equal(frames[1100][ys, xs], frames[1400][ys, xs])
    outside = np.ones(frames[1100].shape[:2], bool)
    outside[ys, xs] = False
    assert np.array_equal(frames[1250][outside], frames[1400][outside])  # ...and only in the mouth
    # The open frame is exactly the base with the aa mouth composited on: compare with a one-viseme track.
    ref = still(name)
    ref.push(VisemeTrack([Viseme("aa", 0, 1000)], 1000))
    assert np.array_equal(ref.render(500), frames[1400])


def test_speaking_frames_change_and_idle_motion_moves():
    av = still()
    av.push(TRACK)
    shapes = {av.render(t).tobytes() for t in range(1000, 1700, 40)}
    assert len(shapes) >= 3
    moving = AVATARS.create("lumi", size=SIZE, blink=False)
    offsets = {(moving.render(t), moving.last_layers["head_offset"])[1] for t in range(0, 6000, 200)}
    assert len(offsets) > 2  # breathing and sway


def test_clear_closes_the_mouth_at_once_and_listens():
    av = still()
    av.set_mode("speaking")
    av.push(TRACK)
    av.render(1400)
    assert av.last_layers["mouth"] == "mouth_aa"
    av.clear()
    av.render(1400)
    assert av.last_layers["mouth"] == "mouth_sil" and av.mode == "listening"
    assert av.last_layers["expression"] == "expr_listening" and av.last_layers["tilt"] > 0


def test_emotions_and_modes():
    av = still()
    av.set_emotion("happy", at_ms=1000)
    av.render(500)
    assert av.last_layers["expression"] == "expr_neutral" and av.last_layers["mouth"] == "mouth_sil"
    av.render(1500)
    assert av.last_layers["expression"] == "expr_happy"
    assert av.last_layers["eyes"] == "eyes_open_happy" and av.last_layers["mouth"] == "mouth_sil_happy"
    av.set_emotion("joy", at_ms=2000)  # aliases
    av.set_emotion("no-such-feeling", at_ms=3000)  # unknown: drawn as neutral, never an error
    av.set_emotion("excited", at_ms=3600)  # not drawn: the nearest that is
    av.render(2500)
    assert av.last_layers["emotion"] == "joy" and av.last_layers["expression"] == "expr_happy"
    av.render(3500)
    assert av.last_layers["expression"] == "expr_neutral" and av.last_layers["mouth"] == "mouth_sil"
    av.render(3700)
    assert av.last_layers["emotion"] == "excited" and av.last_layers["expression"] == "expr_happy"
    av.set_mode("thinking", at_ms=4000)
    av.set_emotion("neutral", at_ms=4000)
    tilts = [(av.render(t), av.last_layers["tilt"])[1] for t in (4000, 4150, 4400)]
    assert tilts[0] == 0 and tilts[-1] == -3 and av.last_layers["expression"] == "expr_thinking"
    with pytest.raises(ValueError, match="unknown avatar mode"):
        av.set_mode("dancing")


def test_transparent_corners():
    av = AVATARS.create("pip", size=SIZE, transparent=True)
    frame = av.render(0)
    for y, x in ((0, 0), (0, -1), (-1, 0), (-1, -1)):
        assert frame[y, x, 3] == 0
    assert frame[64, 64, 3] == 255  # the face is opaque
    edge = frame[..., 3]
    assert ((edge > 0) & (edge < 255)).any()  # anti-aliased edges stay soft


def test_blinks_within_six_seconds_and_deterministically():
    a, b = (AVATARS.create("lumi", size=SIZE, idle_motion=False, seed=7) for _ in range(2))
    closed = []
    for t in range(0, 6000, 10):
        a.render(t)
        if a.last_layers["eyes"] == "eyes_closed":
            closed.append(t)
    assert closed and closed[-1] - closed[0] < 6000
    assert all((b.render(t), b.last_layers["eyes"])[1] == "eyes_closed" for t in closed)
    other = AVATARS.create("lumi", size=SIZE, idle_motion=False, seed=8)
    assert [other._eyes(t) for t in closed] != ["closed"] * len(closed)


@pytest.mark.parametrize("name", ["lumi", "pip"])
def test_sprite_folder_round_trip(name, tmp_path):
    from livehost.avatar.assets import sprite_set
    from livehost.avatar.assets.export import main as export

    export([name, str(tmp_path), "--size", "128"])
    loaded = SpriteSet.from_folder(tmp_path)
    built = sprite_set(name, SIZE)
    assert set(loaded.layers) == set(built.layers)
    assert all(np.array_equal(loaded.layers[n], built.layers[n]) for n in built.layers)
    assert loaded.pivot == pytest.approx(built.pivot, abs=0.01)
    av = AVATARS.create("sprites", folder=str(tmp_path), size=SIZE, idle_motion=False, blink=False)
    ref = still(name)
    for a in (av, ref):
        a.push(TRACK)
        a.set_emotion("surprised", 0)
    assert np.array_equal(av.render(1400), ref.render(1400))


def test_sprite_folder_errors_and_fallbacks(tmp_path):
    from livehost.avatar.assets.export import main as export

    export(["pip", str(tmp_path), "--size", "64"])
    for f in tmp_path.glob("mouth_*.png"):  # keep only the two required mouths
        if f.stem not in ("mouth_sil", "mouth_aa"):
            f.unlink()
    av = AVATARS.create("sprites", folder=str(tmp_path), size=(64, 64), blink=False)
    for vis, layer in [("PP", "mouth_sil"), ("O", "mouth_aa"), ("SS", "mouth_aa"), ("U", "mouth_aa")]:
        av.clear()
        av.push(VisemeTrack([Viseme(vis, 0, 100)], 100))
        av.render(50)
        assert av.last_layers["mouth"] == layer
    (tmp_path / "mouth_aa.png").unlink()
    with pytest.raises(FileNotFoundError, match="mouth_aa.png"):
        SpriteSet.from_folder(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        SpriteSet.from_folder(tmp_path / "nowhere")


def test_fast_enough():
    av = AVATARS.create("lumi", size=(256, 256))
    av.push(VisemeTrack.from_phonemes([("ɑ", 0, 0.2), ("m", 0.2, 0.1), ("i", 0.3, 0.2), ("s", 0.5, 0.1)]))
    for t in range(0, 700, 40):  # fill the head cache
        av.render(t)
    took = []
    for t in range(0, 2000, 40):
        t0 = time.perf_counter()
        av.render(t % 700)
        took.append(time.perf_counter() - t0)
    assert np.median(took) < 0.008  # ~1 ms here; the bound leaves room for a busy shared CPU
