"""Knowledge base: a small fictional tea shop in Markdown, FAQ CSV and HTML; the right chunk answers each question,
off-topic questions get nothing from relevant(); a Chinese FAQ works with the default engine."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from livehost.persona.embeddings import EMBEDDINGS, default_engine
from livehost.persona.knowledge import KnowledgeBase, KnowledgeError, chunk_document, chunk_markdown

POLICY_MD = """\
# Returns and refunds

## Return window
You can return any unused item within 30 days of delivery for a full refund. Items must be in their original
packaging.

## How refunds are paid
Refunds go back to the original payment method within 5 business days after we receive the parcel.

## Items that cannot be returned
Personalised mugs, opened tea packets and gift cards cannot be returned.

# Shipping

## Delivery times
Standard delivery takes 3 to 5 business days. Express delivery arrives the next business day if you order before
2 pm.

## Shipping costs
Shipping is free on orders over 50 euros; otherwise it costs 4.90 euros.

## International shipping
We ship to all EU countries, Switzerland and Norway. We do not ship to the United States.
"""
FAQ_CSV = """\
question,answer
Do you have a physical shop?,"Yes, our shop is at 12 Kettle Lane, Bristol, open Tuesday to Saturday from 10 am to 6 pm."
Which payment methods do you accept?,"We accept Visa, Mastercard, PayPal and bank transfer."
Are your teapots dishwasher safe?,"No. Our clay teapots must be rinsed with hot water only, never with soap or in a dishwasher."
Can I change my order after placing it?,You can change or cancel an order within one hour by replying to the confirmation email.
Do you offer gift wrapping?,"Yes, gift wrapping costs 3 euros per item, and you can add a handwritten card."
"""
ABOUT_HTML = """\
<!doctype html><html><head><title>About us</title><style>.x { color: red } /* STYLEDECOY */</style></head>
<body><nav><a href="/">Home</a></nav>
<h1>About Teapot Corner</h1><p>Teapot Corner was founded in 2009 by Mei Lin, a potter who wanted to share the
teas of her childhood.</p>
<script>var secret = "SCRIPTDECOY";</script>
<h2>Our tea</h2><p>We sell loose-leaf oolong, green and pu-erh teas sourced directly from farms in Fujian and
Yunnan.</p>
<h2>Loyalty stamps</h2><ul><li>Every purchase earns one stamp.</li><li>Ten stamps give you a free 100 g bag of
tea.</li></ul></body></html>
"""
FAQ_ZH = """\
问题,答案
你们支持七天无理由退货吗？,支持。商品签收后七天内，未拆封可以无理由退货，运费由买家承担。
多久发货？,付款后48小时内发货，江浙沪地区一般第二天就能送到。
茶叶怎么保存？,请把茶叶密封后放在阴凉干燥的地方，避免阳光直射和异味。
可以开发票吗？,可以，下单时在备注里填写抬头和税号，我们会随货寄出纸质发票。
"""

QUESTIONS = [  # (question, source, what the first chunk must contain)
    ("How many days do I have to send something back?", "policy.md", "Return window"),
    ("When will my parcel arrive?", "policy.md", "Delivery times"),
    ("Can I pay with PayPal?", "faq.csv", "PayPal"),
    ("Can I put the teapot in the dishwasher?", "faq.csv", "dishwasher"),
    ("Who started the company?", "about.html", "founded in 2009"),
    ("Do you deliver to America?", "policy.md", "International shipping"),
    ("How much does postage cost?", "policy.md", "Shipping costs"),
]
UNRELATED = ["What's the weather on Mars?", "Who won the football world cup in 1998?",
             "How do I fix a flat bicycle tyre?", "Tell me a joke about penguins."]


@pytest.fixture(scope="module")
def embedder():
    return EMBEDDINGS.shared(default_engine("en"))


@pytest.fixture(scope="module")
def zh_embedder():
    return EMBEDDINGS.shared(default_engine("zh"))


def write_shop(folder: Path) -> dict[str, Path]:
    files = {"policy.md": POLICY_MD, "faq.csv": FAQ_CSV, "about.html": ABOUT_HTML, "faq_zh.csv": FAQ_ZH}
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return {name: folder / name for name in files}


@pytest.fixture(scope="module")
def shop(tmp_path_factory, embedder):
    folder = tmp_path_factory.mktemp("shop")
    files = write_shop(folder)
    kb = KnowledgeBase(folder / "knowledge.db", embedder)
    for name in ("policy.md", "faq.csv", "about.html"):
        assert kb.add_file("lumi", files[name]) > 0
    kb.add_file("mei", files["policy.md"])
    yield kb
    kb.close()


@pytest.mark.parametrize("question,source,needle", QUESTIONS)
@pytest.mark.e2e
def test_right_chunk_first(shop, question, source, needle):
    found = shop.relevant("lumi", question)
    assert found, f"nothing relevant for {question!r}: best {shop.search('lumi', question, 1)[0]}"
    assert found[0].source == source and needle in found[0].text, found[0]


@pytest.mark.parametrize("question", UNRELATED)
@pytest.mark.e2e
def test_unrelated_question_gets_nothing(shop, question):
    assert shop.relevant("lumi", question) == [], shop.search("lumi", question, 1)


@pytest.mark.e2e
def test_chinese_faq(tmp_path, zh_embedder):
    files = write_shop(tmp_path)
    kb = KnowledgeBase(tmp_path / "zh.db", zh_embedder)
    assert kb.add_file("mei", files["faq_zh.csv"]) == 4
    assert "七天" in kb.relevant("mei", "买回来不想要了能退吗？")[0].text
    assert "阴凉干燥" in kb.relevant("mei", "茶叶应该放在哪里比较好？")[0].text
    assert "发票" in kb.relevant("mei", "能给我开个发票吗")[0].text
    assert kb.relevant("mei", "火星上的天气怎么样？") == []
    assert kb.relevant("mei", "1998年世界杯冠军是谁？") == []
    kb.close()


@pytest.mark.e2e
def test_characters_are_separate(shop):
    assert {c.source for c in shop.search("mei", "Can I pay with PayPal?", 10)} == {"policy.md"}
    assert {c.character for c in shop.search("lumi", "refunds", 20)} == {"lumi"}
    assert shop.sources("mei") == ["policy.md"] and shop.search("nobody", "refunds") == []


def test_markdown_keeps_heading_path():
    chunks = chunk_markdown(POLICY_MD)
    assert ("Returns and refunds > Return window" in chunks[0][1]) and chunks[0][0].endswith("Return window")
    assert len(chunks) == 6 and all(len(text) < 600 for _, text in chunks)
    long = "# Big\n\n" + " ".join(f"Sentence number {i} is here." for i in range(100))
    parts = chunk_markdown(long)
    assert len(parts) > 3 and all(len(t) <= 500 + len("Big\n") for _, t in parts)
    assert all(t.startswith("Big\n") for _, t in parts)


def test_html_drops_scripts_and_styles():
    chunks = chunk_document("html", ABOUT_HTML.encode())
    text = "\n".join(t for _, t in chunks)
    assert "SCRIPTDECOY" not in text and "STYLEDECOY" not in text and "Home" in text
    assert any(loc == "About Teapot Corner > Loyalty stamps" and "Ten stamps" in t for loc, t in chunks)


def test_faq_rows_and_chinese_sentences():
    rows = chunk_document("csv", FAQ_CSV.encode())
    assert len(rows) == 5 and rows[1] == ("row 3", "Q: Which payment methods do you accept?\n"
                                                   "A: We accept Visa, Mastercard, PayPal and bank transfer.")
    zh = "。".join(f"这是第{i}句关于茶叶保存的说明，内容需要足够长才会被切分" for i in range(40)) + "。"
    parts = chunk_document("txt", zh.encode())
    assert len(parts) > 2 and all(len(t) <= 500 for _, t in parts) and all(t.endswith("。") for _, t in parts)
    with pytest.raises(KnowledgeError, match="question,answer"):
        chunk_document("csv", b"q;a\nx;y\n")


@pytest.mark.e2e
def test_readd_replaces_and_remove(tmp_path, embedder):
    files = write_shop(tmp_path)
    kb = KnowledgeBase(tmp_path / "kb.db", embedder)
    n = kb.add_file("lumi", files["policy.md"])
    assert kb.add_file("lumi", files["policy.md"]) == n and kb.count("lumi") == n  # unchanged: nothing re-embedded
    files["policy.md"].write_text(POLICY_MD + "\n## Pets\nDogs are welcome in the shop.\n")
    assert kb.add_file("lumi", files["policy.md"]) == n + 1 and kb.count("lumi") == n + 1
    assert kb.search("lumi", "Can I bring my dog?", 1)[0].locator == "Shipping > Pets"
    kb.add_file("lumi", files["faq.csv"])
    assert kb.sources("lumi") == ["faq.csv", "policy.md"]
    assert kb.remove("lumi", "policy.md") == n + 1
    assert kb.sources("lumi") == ["faq.csv"] and all(c.source == "faq.csv" for c in kb.search("lumi", "refund", 9))
    kb.close()
    reopened = KnowledgeBase(tmp_path / "kb.db", embedder)
    assert reopened.count("lumi") == 5 and reopened.search("lumi", "PayPal", 1)[0].source == "faq.csv"
    reopened.close()


@pytest.mark.e2e
def test_unsupported_and_pdf(tmp_path, embedder):
    kb = KnowledgeBase(tmp_path / "kb.db", embedder)
    (tmp_path / "x.docx").write_bytes(b"PK")
    with pytest.raises(KnowledgeError, match="unsupported"):
        kb.add_file("lumi", tmp_path / "x.docx")
    (tmp_path / "x.pdf").write_bytes(b"%PDF-1.4\n")
    try:
        import pypdf  # noqa: F401
    except ImportError:
        with pytest.raises(KnowledgeError, match="pip install pypdf"):
            kb.add_file("lumi", tmp_path / "x.pdf")
    kb.close()


def test_text_helpers():
    assert chunk_document("txt", textwrap.dedent("""\
        First paragraph.

        Second paragraph.""").encode()) == [("part 1", "First paragraph.\n\nSecond paragraph.")]


SHIPPED = Path(__file__).resolve().parents[1] / "persona" / "characters" / "knowledge" / "pebble_and_pine"


@pytest.mark.skipif(not SHIPPED.is_dir(), reason="no shipped knowledge")
@pytest.mark.e2e
def test_shipped_bilingual_knowledge(tmp_path, zh_embedder):
    """The shipped shop with the engine its bilingual characters get: English and Chinese questions both land."""
    kb = KnowledgeBase(tmp_path / "kb.db", zh_embedder)
    for path in sorted(SHIPPED.iterdir()):
        kb.add_file("mika", path)
    for question, needle in [("When is the store open?", "Tuesday"), ("Can I return a candle I lit?", "Candles"),
                             ("How much is the oak board?", "Oak"), ("你们几点开门？", "营业"), ("运费多少钱？", "运费")]:
        found = kb.relevant("mika", question)
        assert found and needle in found[0].text, (question, found[:1])
    for question in ["What's the weather on Mars?", "Who won the world cup in 1998?", "火星上的天气怎么样？"]:
        assert kb.relevant("mika", question) == [], question
    kb.close()


# ---- what `livehost kb add` and the server's start read (issue 13 item 16) -----------------------------------------

def test_sources_regular_files_only_unique_names_no_escaping_symlinks(tmp_path):
    import os

    from livehost.persona.retrieval import collect_sources
    docs, outside = tmp_path / "docs", tmp_path / "secret"
    (docs / "a").mkdir(parents=True)
    (docs / "b").mkdir()
    outside.mkdir()
    (docs / "a" / "faq.md").write_text("# A\nfirst")
    (docs / "b" / "faq.md").write_text("# B\nsecond")
    (docs / "big.md").write_text("x" * 5000)
    (outside / "private.md").write_text("# private")
    os.mkfifo(docs / "pipe.md")
    (docs / "zero.txt").symlink_to("/dev/zero")
    (docs / "leak.md").symlink_to(outside / "private.md")
    (docs / "alias.md").symlink_to(docs / "a" / "faq.md")  # inside the folder: fine
    found, refused = collect_sources([docs], max_bytes=4096)
    assert sorted(name for _, name in found) == ["a/faq.md", "alias.md", "b/faq.md"]
    reasons = "\n".join(refused)
    assert "pipe.md: not a regular file" in reasons and "zero.txt: a symlink to /dev/zero" in reasons
    assert "leak.md: a symlink to" in reasons and "outside the folder" in reasons
    assert "big.md" in reasons and "limit" in reasons
    # two files given by name with the same name stay two sources
    found, refused = collect_sources([docs / "a" / "faq.md", docs / "b" / "faq.md", tmp_path / "nope.md"])
    assert len({name for _, name in found}) == 2 and refused == [f"{tmp_path / 'nope.md'}: does not exist"]


def test_reading_a_pipe_or_device_fails_at_once(tmp_path):
    import os

    from livehost.persona.knowledge import read_regular_file
    os.mkfifo(tmp_path / "pipe.md")
    for path in (tmp_path / "pipe.md", Path("/dev/zero")):
        with pytest.raises(KnowledgeError, match="not a regular file"):
            read_regular_file(path)  # returns at once: no writer is waited for, no endless read
    (tmp_path / "ok.md").write_text("hello")
    assert read_regular_file(tmp_path / "ok.md") == b"hello"
    with pytest.raises(KnowledgeError, match="limit"):
        read_regular_file(tmp_path / "ok.md", max_bytes=3)


@pytest.mark.e2e
def test_a_bad_source_is_named_and_the_good_ones_are_used(tmp_path, embedder, caplog):
    from livehost.persona.character import Character
    from livehost.persona.retrieval import sync_character_knowledge
    folder = tmp_path / "kb"
    folder.mkdir()
    (folder / "good.md").write_text("# Hours\nWe open at nine.")
    (folder / "empty.md").write_text("")
    (folder / "broken.csv").write_text("name,price\nmug,3\n")
    character = Character(id="shop", name="Shop", persona="p", style="s", greeting="g",
                          knowledge={"sources": [str(folder)]})
    kb = KnowledgeBase(tmp_path / "kb.db", embedder)
    with caplog.at_level("ERROR"):
        assert sync_character_knowledge(kb, character) == 1
    assert kb.sources("shop") == ["good.md"]
    assert "empty.md: no text found" in caplog.text and "broken.csv: an FAQ CSV needs" in caplog.text
    kb.close()


@pytest.mark.e2e
def test_kb_add_cli_skips_what_it_must_not_read(tmp_path):
    import os

    from click.testing import CliRunner

    from livehost.server.cli import main
    docs = tmp_path / "docs"
    for sub in ("a", "b"):
        (docs / sub).mkdir(parents=True)
        (docs / sub / "faq.md").write_text(f"# Section {sub}\nThe answer from folder {sub}.")
    os.mkfifo(docs / "pipe.md")  # reading it would wait for a writer forever
    (docs / "zero.txt").symlink_to("/dev/zero")
    config = tmp_path / "livehost.yaml"
    config.write_text(f"data_dir: {tmp_path / 'data'}\n")
    runner = CliRunner()
    result = runner.invoke(main, ["kb", "add", "-c", str(config), "mika", str(docs)])
    assert result.exit_code == 1, result.output
    assert "(as a/faq.md)" in result.output and "(as b/faq.md)" in result.output
    assert "pipe.md: not a regular file" in result.output and "zero.txt: a symlink to /dev/zero" in result.output
    listed = runner.invoke(main, ["kb", "list", "-c", str(config), "mika"]).output.split()
    assert {"a/faq.md", "b/faq.md"} <= set(listed)
