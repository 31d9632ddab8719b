"""The generic ingest format bots and bridges POST: valid payloads become typed events, bad ones clear errors."""
from __future__ import annotations

import pytest

from livehost.server.livestream.events import Follow, Gift, Join, Message, SuperChat
from livehost.server.livestream.ingest import IngestError, parse_ingest


def payload(**kw):
    base = {"platform": "YouTube", "channel": "mychan", "type": "message",
            "user": {"id": "UC1", "name": "Ann", "badges": ["member"]}, "text": "hello!"}
    base.update(kw)
    return base


def test_valid_events():
    m = parse_ingest(payload(mention=True, ts=1700000000.5, extra_field="ignored"))
    assert isinstance(m, Message) and m == Message("youtube", "mychan", "UC1", "Ann", ts=1700000000.5,
                                                   text="hello!", is_mention=True, badges=("member",))
    g = parse_ingest(payload(type="gift", amount=5, currency="USD", gift_name="rose", count=3,
                             user={"id": 42, "name": "Bo"}))
    assert isinstance(g, Gift) and (g.amount, g.currency, g.count, g.user_id) == (5.0, "USD", 3, "42") and g.paid
    sc = parse_ingest(payload(type="superchat", amount=2.5, currency="EUR"))
    assert isinstance(sc, SuperChat) and sc.text == "hello!" and sc.paid
    f = parse_ingest({"platform": "kick", "type": "follow", "user": {"name": "Neo"}})
    assert isinstance(f, Follow) and f.user_id == "Neo" and f.ts > 0   # no id: the name stands in
    assert isinstance(parse_ingest(payload(type="join", text="")), Join)


@pytest.mark.parametrize("bad, words", [
    ([1, 2], "expected a JSON object, got list"),
    ({}, "platform: Field required; type: Field required; user: Field required"),
    (payload(type="shout"), "type: Input should be 'message', 'gift', 'superchat', 'follow' or 'join'"),
    (payload(user={"id": "1"}), "user.name: Field required"),
    (payload(user={"name": ""}), "user.name: String should have at least 1 character"),
    (payload(text="   "), "text: a message needs non-empty text"),
    (payload(text="x" * 2001), "text: String should have at most 2000 characters"),
    (payload(text="a\x00b"), "text: Value error, text must not contain NUL"),
    (payload(type="gift", amount=5), "currency: required for type 'gift'"),
    (payload(type="superchat", amount=-1, currency="USD"), "amount: Input should be greater than or equal to 0"),
    (payload(platform="you tube"), "platform: String should match pattern"),
    (payload(type="gift", amount=float("nan"), currency="USD"), "amount: Input should be a finite number"),
])
def test_clear_errors(bad, words):
    with pytest.raises(IngestError) as e:
        parse_ingest(bad)
    assert str(e.value).startswith("invalid chat event") and words in str(e.value)
