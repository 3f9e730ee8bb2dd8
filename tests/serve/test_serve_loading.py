"""Reading a snapshot a chunk at a time gives what json.loads of the whole file would, wherever
the chunks end, and refuses whatever json.loads would refuse."""

from __future__ import annotations

import io
import json
import time

import pytest
from serve_snapshots import publish, snapshot_document

from orchestration.billing.entitlements.publish import snapshot_path
from orchestration.serve import loading
from orchestration.serve.loading import load_snapshot
from orchestration.serve.snapshot import RETIRED_SECONDS, SnapshotStore

COMPACT = {"sort_keys": True, "separators": (",", ":")}


def load(text: str):
    return load_snapshot(io.BytesIO(text.encode()))


def expected_answers(document: dict) -> dict:
    return {
        customer_id: (
            {code: json.dumps(doc, **COMPACT).encode() for code, doc in c["entitlements"].items()},
            json.dumps(c["usage"], **COMPACT).encode(),
        )
        for customer_id, c in document["customers"].items()
    }


def answers(snapshot) -> dict:
    assert snapshot.entitlements.keys() == snapshot.usage.keys()
    return {cid: (snapshot.entitlements[cid], snapshot.usage[cid]) for cid in snapshot.usage}


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 1 << 16])
@pytest.mark.parametrize("layout", ["compact", "indented"])
def test_any_chunk_size_and_layout_gives_the_same_snapshot(monkeypatch, chunk, layout):
    document = snapshot_document(42)
    document["customers"]["zoë ünïcode"] = document["customers"].pop("globex")
    options = COMPACT if layout == "compact" else {"indent": 2, "ensure_ascii": False}
    monkeypatch.setattr(loading, "CHUNK_BYTES", chunk)
    snapshot = load(json.dumps(document, **options))
    assert answers(snapshot) == expected_answers(document)
    assert (snapshot.as_of, snapshot.published_at) == (document["as_of"], document["published_at"])
    assert snapshot.features == {"sso", "emails", "api_calls"}
    assert json.loads(snapshot.health)["customers"] == 3


def test_entitlements_are_kept_in_feature_code_order():
    snapshot = load(json.dumps(snapshot_document(1)))  # the document lists sso first
    assert list(snapshot.entitlements["acme"]) == ["api_calls", "emails", "sso"]


def test_a_number_cut_by_a_chunk_is_read_whole(monkeypatch):
    head = '{"customers":{},"features":{},"as_of":null,"format":1'
    monkeypatch.setattr(loading, "CHUNK_BYTES", len(head))  # the first chunk ends after the 1
    assert load(head + "}").usage == {}
    with pytest.raises(ValueError, match="format 10"):
        load(head + "0}")


@pytest.mark.parametrize("chunk", [5, 1 << 16])
def test_every_truncation_is_refused(monkeypatch, chunk):
    text = json.dumps(snapshot_document(3, customers=("acme",)), **COMPACT)
    monkeypatch.setattr(loading, "CHUNK_BYTES", chunk)
    for end in range(0, len(text) - 1, 3):
        with pytest.raises(ValueError):
            load(text[:end])


@pytest.mark.parametrize(
    "text",
    [
        '{"format":1,"features":{},"customers":{}} {}',  # two documents
        '{"format":1,"features":{},"customers":{},}',  # a trailing comma
        '{"format":1,"features":{},"customers":[]}',
        '{"format":1,"features":[],"customers":{}}',
        '{"features":{},"customers":{}}',  # no format
        '{"format":1,"features":{},"customers":{"acme":{"usage":{}}}}',  # no entitlements
        '{"format":1,"features":{},"customers":{"acme":{"entitlements":{}}}}',  # no usage
        '{"format":1,"features":{},"customers":{"acme":{"entitlements":{"x":1},"usage":{}}}}',
        "[1, 2]",
    ],
)
def test_what_is_not_a_snapshot_is_refused(text):
    with pytest.raises(ValueError):
        load(text)


def test_invalid_utf8_is_refused():
    with pytest.raises(ValueError):
        load_snapshot(io.BytesIO(b'{"format":1,"features":{},"customers":{"\xff":{}}}'))


def test_the_loader_pauses_between_customers():
    calls = []
    document = snapshot_document(1)
    load_snapshot(io.BytesIO(json.dumps(document).encode()), pause=lambda: calls.append(1))
    assert len(calls) == len(document["customers"])


def test_a_replaced_snapshot_is_freed_only_once_nothing_holds_it(tmp_path):
    home = tmp_path / "home"
    store = SnapshotStore(snapshot_path(home), poll_seconds=60)
    publish(home, generation=1)
    assert store.refresh()
    first = store.current
    publish(home, generation=2)
    assert store.refresh() and store.current is not first
    store.free_retired()  # replaced just now: kept
    assert first.usage.keys() == {"acme", "globex", "initech"}
    later = time.monotonic() + RETIRED_SECONDS
    store.free_retired(now=later)  # `first` is held here, as a request would hold it: kept
    assert len(first.usage) == 3
    usage, entitlements = first.usage, first.entitlements  # watched, not the snapshot
    del first
    store.free_retired(now=later + RETIRED_SECONDS)
    assert usage == {} and entitlements == {}
    assert json.loads(store.current.usage["acme"])["meters"]["emails"] == "2"  # untouched
