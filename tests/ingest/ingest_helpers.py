"""A landing folder and a warehouse in a temporary directory, for the ingest tests."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from pathlib import Path

from orchestration.ingest.ingest import IngestResult, run_ingest
from orchestration.sql import connect

NOW = datetime(2026, 11, 6, tzinfo=UTC)
EVENT_COLUMNS = (
    "read_seq, path, line_no, event_id, customer_id, event_name, event_ts, "
    "CAST(properties AS VARCHAR) AS properties, source, payload_hash, parse_reason, raw_line, "
    "key_rank, key_repeated"
)
# raw events with their dedupe helpers as ingest documents them: a parsed row outside
# repeated_events holds a key seen once (rank 1, not repeated); a rejected row takes no part
RANKED_EVENTS = """(
    SELECT r.*, k.payload_hash,
        CASE WHEN r.parse_reason IS NULL THEN coalesce(k.key_rank, 1) END AS key_rank,
        CASE WHEN r.parse_reason IS NULL THEN k.read_seq IS NOT NULL END AS key_repeated
    FROM meterbook_raw.raw_events AS r
    LEFT JOIN meterbook_raw.repeated_events AS k USING (read_seq)
)"""


def event(
    event_id="e1",
    customer_id="acme",
    event_name="api.request",
    timestamp="2026-10-02T10:00:00Z",
    **extra,
) -> dict:
    return {
        "event_id": event_id,
        "customer_id": customer_id,
        "event_name": event_name,
        "timestamp": timestamp,
        **extra,
    }


def jsonl(*objects) -> str:
    return "".join(json.dumps(o) + "\n" for o in objects)


class Landing:
    def __init__(self, root: Path) -> None:
        self.dir = root / "landing" / "events"
        self.dir.mkdir(parents=True)
        self.con = connect(root / "warehouse.duckdb")

    def write(self, rel: str, data: str | bytes, gz: bool = False) -> Path:
        path = self.dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        raw = data.encode() if isinstance(data, str) else data
        path.write_bytes(gzip.compress(raw) if gz else raw)
        return path

    def ingest(self, now: datetime = NOW, **kwargs) -> IngestResult:
        return run_ingest(self.con, self.dir, now, **kwargs)

    def rows(self, sql: str, params: list | None = None) -> list[tuple]:
        return self.con.execute(sql, params or []).fetchall()

    def events(self, where: str = "true", params: list | None = None) -> list[dict]:
        cur = self.con.execute(
            f"SELECT {EVENT_COLUMNS} FROM {RANKED_EVENTS} WHERE {where} ORDER BY read_seq",
            params or [],
        )
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def reasons(self) -> list[str | None]:
        return [e["parse_reason"] for e in self.events()]

    def lines_per_file(self) -> list[tuple[str, int, int]]:
        """(path, lines_read, raw rows) of every file on record, by path."""
        return self.rows(
            "SELECT f.path, f.lines_read, count(e.read_seq) FROM meterbook_raw.landing_files f "
            "LEFT JOIN meterbook_raw.raw_events e USING (file_seq) GROUP BY ALL ORDER BY 1"
        )

    def snapshot(self) -> dict[str, list[tuple]]:
        """Every meterbook_raw table, fully ordered: equal snapshots mean nothing changed."""
        return {
            "files": self.rows("SELECT * FROM meterbook_raw.landing_files ORDER BY ALL"),
            "paths": self.rows("SELECT * FROM meterbook_raw.landing_file_paths ORDER BY ALL"),
            "events": self.rows("SELECT * FROM meterbook_raw.raw_events ORDER BY ALL"),
            "repeats": self.rows("SELECT * FROM meterbook_raw.repeated_events ORDER BY ALL"),
        }
