"""A plain (non-editable) install must carry everything `livehost serve` needs besides Python: the web pages, the
bundled characters and the avatar assets. Builds the wheel and looks inside it."""
from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_carries_pages_characters_and_avatars(tmp_path):
    # built from a copy: a stale build/ folder in the checkout could hold files the package list no longer takes
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".venv", "build", "*.egg-info", "artifacts", ".git",
                                                             "__pycache__", ".pytest_cache", "data"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path), str(src)], check=True, timeout=300)
    wheel, = tmp_path.glob("livehost-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    pages = {f"livehost/web_client/{p.relative_to(ROOT / 'web_client').as_posix()}"
             for p in (ROOT / "web_client").rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert "livehost/web_client/index.html" in pages and "livehost/web_client/lib/session.js" in pages
    assert pages <= names, f"missing from the wheel: {sorted(pages - names)}"
    characters = [n for n in names if n.startswith("livehost/persona/characters/")]
    assert any(n.endswith("lumi.yaml") or "/lumi/" in n for n in characters), characters
    assert "livehost/avatar/assets/lumi.py" in names
    assert "livehost/server/cli.py" in names and "livehost/server/livestream/host.py" in names
