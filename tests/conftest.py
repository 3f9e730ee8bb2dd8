"""Shared by every test: dbt's manifest exists before any test reads a model through it.

Python names dbt models through the manifest (orchestration/warehouse/models.py); the product
parses the project before it reads a model (the Dagster definitions and the CLI's reports do),
and tests that call the billing functions directly get the same here, once per session.
"""

import os

import pytest

from orchestration.defs.dbt.project import ensure_manifest

# PDFs cost ~0.2 s of CPU each and every finalize in the suite would print them: off for the
# suite (and the processes it starts); the tests of PDFs delete it or ask for PDFs outright
# (tests/close/test_close_documents.py, tests/billing/test_documents_pdf.py)
os.environ.setdefault("METERBOOK_PDF", "off")


def pytest_configure(config):
    if not hasattr(config, "workerinput"):
        # before pytest-xdist starts its workers: they find the manifest fresh, and no two of
        # them parse the project into the same target folder at once
        ensure_manifest()


# The longest units of work, longest first (`scripts/test.sh --durations=150`, 2026-12-06:
# 680, 500, 350 and 230 s of a worker's time; the Spark tier, 2026-12-07: the close file
# about 830 s (the scenarios' Spark closes, compared with the scenario file's DuckDB closes,
# the nasty inputs, the re-rate), its other files about 100 and 60 s, a JVM each)
LONGEST_FIRST = (
    "tests/scenarios/test_scenarios.py",
    "tests/spark/test_close_on_spark.py",
    "tests/e2e/",
    "tests/close/test_close_lifecycle_property.py",
    "tests/revenue/test_revenue_examples.py",
    "tests/spark/",
)


def _start_rank(item, slow: set) -> int:
    path = item.path.relative_to(item.config.rootpath).as_posix()
    unknown = len(LONGEST_FIRST) + (item.path not in slow)
    return next((i for i, start in enumerate(LONGEST_FIRST) if path.startswith(start)), unknown)


def pytest_collection_modifyitems(items):
    # The longest files first, then the other files with slow tests, then the rest, each file
    # whole and in its own order (a stable sort): two workers (scripts/test.sh, which keeps
    # this order: --no-loadscope-reorder) then start the long files early and fill in with
    # short ones, rather than end on one long file while the other worker idles. (pytest-xdist
    # otherwise orders files by their number of tests, which put the long ones, a few tests
    # each, last.)
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: _start_rank(item, slow))


@pytest.fixture(scope="session", autouse=True)
def dbt_manifest():
    return ensure_manifest()


# The end-to-end files share one session fixture (tests/e2e/conftest.py, `flows`) that starts
# every flow their tests need at once, knowing the tests of the whole session, not of its
# worker: two workers each running one of these files would each start all the flows. They
# are one unit of work, the other files one each, as with --dist loadfile.
SCOPE_OF_ITS_OWN = ("tests/e2e/",)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling  # noqa: PLC0415 (only with pytest-xdist)

    class FileScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return next((d for d in SCOPE_OF_ITS_OWN if path.startswith(d)), path)

    return FileScheduling(config, log)
