"""The shared scenarios' event files: every file ingests, and the parse-level verdicts agree
with the scenarios' hand checks and with a plain-Python reading of the same files."""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import shutil
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from ingest_helpers import NOW, Landing

SCENARIOS = Path(__file__).resolve().parents[3] / "shared" / "scenarios"
FOLDERS = sorted(p.parent for p in SCENARIOS.glob("*/events")) if SCENARIOS.exists() else []
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")
# what the hand checks say about parse-level rejections (the rest of each scenario has none
# besides bulk_a, whose generator mixes them in; it is checked against the reference below)
HAND_CHECKED = {
    "dedupe_and_exclusions": {"malformed": 2, "missing_field": 3, "bad_timestamp": 1},
}


def reference_reason(obj) -> str | None:
    """SPEC 2.3's catalog-independent checks, written plainly, for well-behaved files."""
    if not isinstance(obj, dict):
        return "malformed"
    if any(
        obj.get(k) in (None, "") for k in ("event_id", "customer_id", "event_name", "timestamp")
    ):
        return "missing_field"
    stamp = obj["timestamp"]
    if isinstance(stamp, str):
        if not RFC3339.fullmatch(stamp):
            return "bad_timestamp"
        try:
            at = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        except ValueError:
            return "bad_timestamp"
    else:
        at = datetime.fromtimestamp(stamp / 1000 if abs(stamp) >= 1e11 else stamp, NOW.tzinfo)
    if at > NOW + timedelta(hours=24):
        return "too_far_in_future"
    props = obj.get("properties") or {}
    if any(isinstance(v, dict | list) for v in props.values()):
        return "bad_property"
    return None


def reference_lines(path: Path) -> list[str | None]:
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    text = data.decode("utf-8-sig")
    if ".csv" in path.name:
        return [_csv_reason(row) for row in csv.DictReader(io.StringIO(text))]
    reasons = []
    for line in text.splitlines():
        if line.strip():
            try:
                reasons.append(reference_reason(json.loads(line)))
            except json.JSONDecodeError:
                reasons.append("malformed")
    return reasons


def _csv_reason(row: dict) -> str | None:
    obj = {k: v for k, v in row.items() if v and not k.startswith("properties")}
    if row.get("properties"):
        obj["properties"] = json.loads(row["properties"])
    return reference_reason(obj)


@pytest.fixture(scope="module", params=FOLDERS, ids=lambda p: p.name)
def scenario(request, tmp_path_factory):
    land = Landing(tmp_path_factory.mktemp(request.param.name))
    shutil.rmtree(land.dir)
    shutil.copytree(request.param / "events", land.dir)
    result = land.ingest()
    yield request.param, land, result
    land.con.close()


def test_every_file_ingests(scenario):
    folder, land, result = scenario
    files = sorted(
        p.relative_to(folder / "events").as_posix()
        for p in (folder / "events").rglob("*")
        if p.is_file()
    )
    assert sorted([f.path for f in result.files] + result.skipped_copies) == files
    assert all(f.error is None for f in result.files)


def test_parse_verdicts_match_a_plain_reading(scenario):
    folder, land, result = scenario
    for f in result.files:
        expected = reference_lines(folder / "events" / f.path)
        got = [e["parse_reason"] for e in land.events("path = ?", [f.path])]
        assert f.lines_read == len(expected) == len(got), f.path
        assert got == expected, f.path


def test_parse_rejections_match_the_hand_checks(scenario):
    folder, land, _ = scenario
    counts = Counter(r for r in land.reasons() if r is not None)
    if folder.name in HAND_CHECKED:
        assert counts == HAND_CHECKED[folder.name]
    elif folder.name == "bulk_a":  # "malformed lines, ... bad timestamps", and repeats
        assert counts["malformed"] > 0 and counts["bad_timestamp"] > 0
        repeats = "SELECT count(*) FROM meterbook_raw.repeated_events WHERE key_rank > 1"
        assert land.rows(repeats)[0][0] > 0
    else:
        assert counts == {}
