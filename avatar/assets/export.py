"""Write a built-in avatar as a sprite folder: `python -m livehost.avatar.assets.export NAME DIR [--size N]`.

The folder follows the convention in livehost.avatar.renderer, so it is both an example to draw over and a
test of the loader (`livehost serve` with the "sprites" avatar and `folder=DIR` renders it the same)."""
from __future__ import annotations

import argparse

from livehost.avatar.assets import BUILT_IN, sprite_set


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m livehost.avatar.assets.export", description=__doc__.split("\n")[0])
    ap.add_argument("name", choices=BUILT_IN)
    ap.add_argument("folder")
    ap.add_argument("--size", type=int, default=512, help="side of the square layers in px (default 512)")
    args = ap.parse_args(argv)
    sprites = sprite_set(args.name, (args.size, args.size))
    sprites.save(args.folder)
    print(f"wrote {len(sprites.layers)} layers of {args.name} ({args.size}x{args.size}) to {args.folder}")


if __name__ == "__main__":
    main()
