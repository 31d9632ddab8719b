"""The captions' font: one with Chinese (CJK) glyphs when the system has one, found at run time.

Pillow's own font has Latin glyphs only, so Chinese captions burned into the stream would be boxes. Debian ships
CJK fonts as packages (`apt-get install fonts-noto-cjk`, or the smaller `fonts-wqy-microhei`); the first one found
here is used for every caption. Without one, captions fall back to Pillow's font and the first Chinese caption
logs a warning that says which package to install.
"""
from __future__ import annotations

import functools
import logging
import shutil
import subprocess
from pathlib import Path
from typing import Optional

from PIL import ImageFont

log = logging.getLogger("livehost.stream")

INSTALL_HINT = "apt-get install fonts-noto-cjk (or fonts-wqy-microhei)"
CANDIDATES = (  # Debian's paths: fonts-noto-cjk, fonts-wqy-microhei, fonts-wqy-zenhei, fonts-arphic-ukai
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Medium.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/truetype/arphic/ukai.ttc",
)
_warned = False


def has_cjk(text: str) -> bool:
    return any("\u3400" <= c <= "\u9fff" or "\uf900" <= c <= "\ufaff" or "\u3000" <= c <= "\u303f" for c in text)


@functools.lru_cache(maxsize=1)
def cjk_font_path() -> Optional[Path]:
    """The first CJK font on this system: a known Debian path, else what fontconfig offers for Chinese."""
    for candidate in CANDIDATES:
        if Path(candidate).is_file():
            return Path(candidate)
    if shutil.which("fc-match"):
        try:
            found = subprocess.run(["fc-match", "-f", "%{file}", ":lang=zh-cn"], capture_output=True, text=True,
                                   timeout=5).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            found = ""
        if found and Path(found).is_file() and _covers_chinese(found):
            return Path(found)
    return None


def _covers_chinese(path: str) -> bool:
    """fontconfig falls back to any font when none fits: check that this one really draws 中 (not a box)."""
    try:
        font = ImageFont.truetype(path, 24)
    except OSError:
        return False
    return font.getmask("中").getbbox() is not None and font.getmask("中").getbbox() != font.getmask("\uffff").getbbox()


@functools.lru_cache(maxsize=16)
def _font(size: int):
    path = cjk_font_path()
    if path is not None:
        try:
            return ImageFont.truetype(str(path), size)
        except OSError as e:
            log.warning("CJK font %s could not be read (%s); captions use Pillow's Latin-only font", path, e)
    return ImageFont.load_default(size=size)


def caption_font(size: int, text: str = ""):
    """The font for a caption of `size` px; warns once if `text` is Chinese and no CJK font is installed."""
    global _warned
    if not _warned and has_cjk(text) and cjk_font_path() is None:
        _warned = True
        log.warning("no CJK font found: Chinese captions show as boxes. Install one: %s", INSTALL_HINT)
    return _font(size)
