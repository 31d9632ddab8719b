"""The chat page's client-side avatars are the built-in sprite sets (livehost.avatar.assets) packed into one atlas
per avatar under web_client/avatars/: <name>.png (every layer cropped to its visible box, shelf-packed) and
<name>.json ({"size": [w, h], "pivot": [x, y], "layers": {name: [sx, sy, w, h, dx, dy]}}). The test keeps the
committed atlases equal to the drawings; after changing a drawing, rebuild them with

    .venv/bin/python tests/test_web_avatars.py
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

AVATARS = Path(__file__).resolve().parents[1] / "web_client" / "avatars"
SIDE = 384  # drawn size: sharp at the chat page's largest stage on a 2x screen, about 300 KB per avatar
WIDTH = 1536  # atlas width in px


def build(name: str) -> tuple[np.ndarray, dict]:
    """The atlas image (H, W, 4) uint8 and its manifest for one built-in avatar."""
    from livehost.avatar.assets import sprite_set
    sprites = sprite_set(name, (SIDE, SIDE))
    boxes = []
    for layer, a in sorted(sprites.layers.items()):
        ys, xs = np.nonzero(a[..., 3])
        if not len(ys):
            ys, xs = np.array([0]), np.array([0])
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        boxes.append((layer, a[y0:y1, x0:x1], int(x0), int(y0)))
    boxes.sort(key=lambda b: (-b[1].shape[0], b[0]))  # tallest first: simple shelf packing
    placed, x, y, shelf = {}, 0, 0, 0
    for layer, crop, dx, dy in boxes:
        h, w = crop.shape[:2]
        if x + w > WIDTH:
            x, y, shelf = 0, y + shelf + 1, 0
        placed[layer] = (x, y, w, h, dx, dy)
        x, shelf = x + w + 1, max(shelf, h)
    atlas = np.zeros((y + shelf, WIDTH, 4), np.uint8)
    for layer, crop, _, _ in boxes:
        sx, sy, w, h, _, _ = placed[layer]
        atlas[sy:sy + h, sx:sx + w] = crop
    manifest = {"name": name, "size": [SIDE, SIDE], "pivot": [round(float(v), 2) for v in sprites.pivot],
                "layers": {k: list(v) for k, v in sorted(placed.items())}}
    return atlas, manifest


def write(name: str) -> None:
    from PIL import Image
    atlas, manifest = build(name)
    AVATARS.mkdir(parents=True, exist_ok=True)
    Image.fromarray(atlas, "RGBA").save(AVATARS / f"{name}.png", optimize=True)
    (AVATARS / f"{name}.json").write_text(json.dumps(manifest, separators=(",", ":")) + "\n")


@pytest.mark.parametrize("name", ["lumi", "pip", "nuomi"])
def test_atlas_matches_the_drawings(name):
    from PIL import Image
    atlas, manifest = build(name)
    assert json.loads((AVATARS / f"{name}.json").read_text()) == manifest, "stale atlas: run tests/test_web_avatars.py"
    committed = np.asarray(Image.open(AVATARS / f"{name}.png").convert("RGBA"))
    visible = atlas[..., 3] > 0
    assert committed.shape == atlas.shape
    assert np.array_equal(committed[visible], atlas[visible]), "stale atlas: run tests/test_web_avatars.py"
    for layer in ("base", "eyes_open", "eyes_closed", "mouth_sil", "mouth_aa"):
        assert layer in manifest["layers"]


if __name__ == "__main__":
    for avatar in ("lumi", "pip", "nuomi"):
        write(avatar)
        print(f"wrote {AVATARS / avatar}.png and .json")
