"""The README's map of the code ("How it is built") is true: every module of the packages is on it, everything on it
exists, and the layers point the way it says (speech/, persona/ and avatar/ never import livehost.server)."""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CODE = ("server", "speech", "persona", "avatar")


def code_map() -> dict[str, bool]:
    """Paths on the map -> whether the map lists what is inside (a folder with entries under it)."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## How it is built\n.*?```\n(.*?)```", text, re.S)
    assert block, "README.md has no code block under '## How it is built'"
    paths: dict[str, bool] = {}
    stack: list[tuple[int, str]] = []  # (indent, folder path)
    for line in block.group(1).splitlines():
        if not line.strip():
            continue
        indent, name = len(line) - len(line.lstrip()), line.split()[0]
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = (stack[-1][1] if stack else "") + name
        if stack:
            paths[stack[-1][1]] = True
        paths.setdefault(path, False)
        if name.endswith("/"):
            stack.append((indent, path))
    return paths


def test_everything_on_the_map_exists():
    missing = [p for p in code_map() if not (ROOT / p).exists()]
    assert not missing, f"README's map names what does not exist: {missing}"


def test_every_module_is_on_the_map():
    paths = code_map()
    for top in (*CODE, "web_client", "bench", "tests"):
        assert f"{top}/" in paths, f"README's map leaves out {top}/"
    for top in CODE:
        assert paths[f"{top}/"], f"README's map lists nothing inside {top}/"
    left_out = []
    for folder, listed_inside in paths.items():
        if not (folder.endswith("/") and listed_inside):
            continue
        for child in sorted((ROOT / folder).iterdir()):
            if child.suffix == ".py" and child.name != "__init__.py" and folder + child.name not in paths:
                left_out.append(folder + child.name)
            if child.is_dir() and (child / "__init__.py").exists() and f"{folder}{child.name}/" not in paths:
                left_out.append(f"{folder}{child.name}/")
    assert not left_out, f"README's map leaves out: {left_out}"


def test_every_installed_package_is_on_the_map():
    pyproject = (ROOT / "pyproject.toml").read_text()
    folders = set(re.findall(r'"livehost\.[\w.]+" = "([\w/]+)"', pyproject))
    assert folders, "no package-dir mapping found in pyproject.toml"
    assert not [f for f in folders if f"{f}/" not in code_map()], folders


def test_layers_point_one_way():
    """speech/ imports no other layer; persona/ and avatar/ import speech/ only; nothing below imports server/."""
    allowed = {"speech": set(), "avatar": {"speech"}, "persona": {"speech"}}
    wrong = []
    for layer, may in allowed.items():
        for path in (ROOT / layer).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
                for name in names:
                    parts = name.split(".")
                    if parts[0] == "livehost" and len(parts) > 1 and parts[1] not in may | {layer}:
                        wrong.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not wrong, wrong
