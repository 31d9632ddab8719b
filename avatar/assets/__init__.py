"""The built-in avatars, drawn in code at load time (so they are sharp at any size and need no asset files).

`python -m livehost.avatar.assets.export NAME DIR` writes one as a sprite folder (see livehost.avatar.renderer).
"""
from __future__ import annotations

import functools
import importlib

from livehost.avatar.renderer import SpriteSet

BUILT_IN = ("lumi", "pip", "nuomi")


@functools.lru_cache(maxsize=8)
def sprite_set(name: str, size: tuple[int, int] = (256, 256)) -> SpriteSet:
    """The drawn sprite set, square with the frame's shorter side (shared by every session: layers are read-only)."""
    if name not in BUILT_IN:
        raise ValueError(f"unknown built-in avatar {name!r}; choose one of {', '.join(BUILT_IN)}")
    side = int(min(size))
    mod = importlib.import_module(f"livehost.avatar.assets.{name}")
    layers = mod.draw(side)
    for a in layers.values():
        a.setflags(write=False)
    k = side / 512
    return SpriteSet(layers, (mod.PIVOT[0] * k, mod.PIVOT[1] * k), name)
