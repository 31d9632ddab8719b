"""Write a built-in avatar as a sprite folder: `python -m livehost.avatar.assets.export NAME DIR [--size N]`.

The folder follows the convention in livehost.avatar.renderer, so it is both an example to draw over and a
test of the loader (`livehost serve` with the "sprites" avatar and `folder=DIR` renders it the same)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from livehost.avatar.assets import BUILT_IN, sprite_set
from livehost.avatar.renderer import SpriteSet


def write_folder(sprites: SpriteSet, path) -> None:
    """Write a sprite set as a sprite folder (the convention in livehost.avatar.renderer)."""
    from PIL import Image

    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    for n, a in sprites.layers.items():
        Image.fromarray(a, "RGBA").save(folder / f"{n}.png", optimize=True)
    if sprites.pivot is not None:
        (folder / "avatar.json").write_text(json.dumps({"pivot": [round(v, 2) for v in sprites.pivot]}) + "\n")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m livehost.avatar.assets.export", description=__doc__.split("\n")[0])
    ap.add_argument("name", choices=BUILT_IN)
    ap.add_argument("folder")
    ap.add_argument("--size", type=int, default=512, help="side of the square layers in px (default 512)")
    args = ap.parse_args(argv)
    sprites = sprite_set(args.name, (args.size, args.size))
    write_folder(sprites, args.folder)
    print(f"wrote {len(sprites.layers)} layers of {args.name} ({args.size}x{args.size}) to {args.folder}")


if __name__ == "__main__":
    main()
