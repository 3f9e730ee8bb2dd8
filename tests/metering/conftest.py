"""One warehouse with a catalog and events that touch every metering rule, built once."""

from __future__ import annotations

import pytest
from metering_dataset import CATALOG, EVENTS, WINDOWS
from metering_fixtures import Warehouse, catalog_from_yaml


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> Warehouse:
    """The warehouse after one full `dbt build` (every day, every close month)."""
    folder = tmp_path_factory.mktemp("metering_built")
    warehouse = Warehouse(folder)
    warehouse.setup(catalog_from_yaml(folder, CATALOG), EVENTS, WINDOWS)
    warehouse.dbt("build")
    return warehouse
