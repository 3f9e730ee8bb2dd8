from __future__ import annotations

import pytest
from ingest_helpers import Landing


@pytest.fixture
def landing(tmp_path):
    land = Landing(tmp_path)
    yield land
    land.con.close()
