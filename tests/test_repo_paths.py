"""A clone is all a user has: nothing in tests/, bench/ or .ci/ may reach for a path outside the repository."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECKED = ("tests", "bench", ".ci")
TEXT_SUFFIXES = {".py", ".js", ".md", ".sh", ".toml", ".cfg", ".ini", ".txt", ".yaml", ".yml", ".json", ""}

# Strings that name a place beside or above the clone: the team's read-only shared folder (however reached), the
# workplace's own folders, or a step up from the repository root. ("../x" alone is left alone: tests of path
# traversal send it as data.)
OUTSIDE = re.compile(r"(?<![\w.])shared/(fixtures|reference|hooks)|\.\./+shared\b|/work/|\.library|"
                     r"\bROOT\.parent\b|\bROOT\s*/\s*[\"']\.\.[\"'/]")
PARENTS_INDEX = re.compile(r"__file__\)?(?:\.resolve\(\))?\.parents\[(\d+)\]")
PARENT_CHAIN = re.compile(r"__file__\)?(?:\.resolve\(\))?((?:\.parent)+)\b")
BUILT_SHARED = re.compile(r"\.parent\s*/\s*[\"']shared[\"']")


def checked_files() -> list[Path]:
    files = []
    for top in CHECKED:
        for path in sorted((ROOT / top).rglob("*")):
            if path.is_file() and path.suffix in TEXT_SUFFIXES and "artifacts" not in path.parts \
                    and "__pycache__" not in path.parts and path.resolve() != Path(__file__).resolve():
                files.append(path)
    return files


def escapes(path: Path, text: str) -> list[str]:
    """What in `text` (the contents of `path`) points outside the repository."""
    depth = len(path.relative_to(ROOT).parts) - 1  # folders between the file and the root
    found = [f"{m.group(0)!r}" for m in OUTSIDE.finditer(text)]
    # Path(__file__).parents[depth] (or depth + 1 times .parent) is the root; anything higher is outside.
    found += [m.group(0) for m in PARENTS_INDEX.finditer(text) if int(m.group(1)) > depth]
    found += [m.group(0) for m in PARENT_CHAIN.finditer(text) if m.group(1).count(".parent") > depth + 1]
    found += [m.group(0) for m in BUILT_SHARED.finditer(text)]  # ROOT.parent / "shared": the same escape, in parts
    return found


def test_the_check_sees_an_escape():
    """The check itself can fail: the old ways of finding the fixtures are caught."""
    conftest = ROOT / "tests" / "conftest.py"
    assert escapes(conftest, 'Path(__file__).resolve().parents[2] / "x"')
    assert escapes(conftest, 'Path(__file__).resolve().parent.parent.parent / "x"')
    assert not escapes(conftest, 'Path(__file__).resolve().parent.parent / "x"')
    assert escapes(conftest, 'ROOT.parent / "shared" / "fixtures"')
    assert escapes(conftest, '"../shared/fixtures/audio/jfk.flac"')
    assert escapes(conftest, 'ROOT / ".." / "data"')
    assert not escapes(conftest, '{"user_id": "../../etc/passwd"}')
    assert not escapes(conftest, 'Path(__file__).resolve().parents[0] / "fixtures" / "audio"')
    assert not escapes(ROOT / "bench" / "common.py", 'Path(__file__).resolve().parents[1]')


@pytest.mark.parametrize("path", checked_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_path_outside_the_repository(path: Path):
    text = path.read_text(errors="replace")
    assert not escapes(path, text), f"{path.relative_to(ROOT)} refers outside the repository: {escapes(path, text)}"


def test_fixtures_are_in_the_repository():
    audio = ROOT / "tests" / "fixtures" / "audio"
    sources = (audio / "SOURCES.md").read_text()
    for name in ("jfk.flac", "multilingual.mp3"):
        assert (audio / name).stat().st_size > 100_000, name
        assert name in sources, f"SOURCES.md does not say where {name} comes from"
