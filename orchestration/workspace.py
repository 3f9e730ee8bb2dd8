"""Where a deployment keeps its files (SPEC section 1).

Everything is derived from one folder, `METERBOOK_HOME` (default `./.meterbook`), so a
workspace can be copied, inspected and thrown away as a unit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

DEFAULT_HOME = ".meterbook"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
DBT_PROJECT_DIR = PROJECT_ROOT / "dbt_project"


@dataclass(frozen=True)
class Workspace:
    home: Path

    @classmethod
    def from_env(cls, home: str | os.PathLike | None = None) -> Workspace:
        chosen = home or os.environ.get("METERBOOK_HOME") or DEFAULT_HOME
        return cls(Path(chosen).expanduser().resolve())

    @property
    def catalog_dir(self) -> Path:
        return self.home / "catalog"

    @property
    def landing_dir(self) -> Path:
        return self.home / "landing" / "events"

    @property
    def warehouse_path(self) -> Path:
        return self.home / "warehouse.duckdb"

    @property
    def lake_dir(self) -> Path:
        """Parquet handed between DuckDB and Spark (settings.warehouse: spark); METERBOOK_LAKE
        puts it where a Spark cluster on other machines reads it too."""
        return Path(os.environ.get("METERBOOK_LAKE") or self.home / "lake")

    @property
    def dagster_home(self) -> Path:
        return Path(os.environ.get("DAGSTER_HOME") or self.home / "dagster")

    @property
    def documents_dir(self) -> Path:
        return self.home / "documents"

    def ensure(self) -> Workspace:
        for folder in (self.catalog_dir, self.landing_dir, self.dagster_home, self.documents_dir):
            folder.mkdir(parents=True, exist_ok=True)
        return self


def now_utc() -> datetime:
    """The wall clock, or `METERBOOK_NOW` so that tests and replays are deterministic."""
    fixed = os.environ.get("METERBOOK_NOW")
    if fixed:
        parsed = datetime.fromisoformat(fixed.replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            raise ValueError(f"METERBOOK_NOW must carry an offset: {fixed!r}")
        return parsed.astimezone(UTC)
    return datetime.now(UTC)
