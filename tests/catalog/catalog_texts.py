"""A catalog written from a YAML text into a test's folder: loaded, or its errors as text."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestration.catalog import CatalogError, load_catalog


def load_text(tmp_path: Path, text: str):
    (tmp_path / "catalog.yaml").write_text(text)
    return load_catalog(tmp_path)


def issues_of(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(CatalogError) as caught:
        load_text(tmp_path, text)
    return [str(issue) for issue in caught.value.issues]
