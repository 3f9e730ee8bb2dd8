"""The Dagster instance on PostgreSQL (settings.dagster_storage): the dagster.yaml meterbook
writes from the catalog, and a real close whose run and materializations are read back from a
PostgreSQL server this test starts on 127.0.0.1."""

from __future__ import annotations

import json
import textwrap

import pytest
import yaml
from meterbook_commands import ok
from postgres_server import running_postgres, server_binaries

from orchestration.catalog.loader import CatalogError, load_catalog
from orchestration.instance import MARKER, dagster_yaml_text, write_dagster_yaml

CATALOG = """
settings:
  invoice_prefix: PG
  default_currency: USD
  dagster_storage:
    postgres: {{host: 127.0.0.1, port: {port}, database: dagster, username: meterbook}}
meters:
  - {{code: api_calls, name: API calls, event_name: api.request, aggregation: count}}
plans:
  - code: pro
    currency: USD
    versions:
      - version: 1
        effective_from: 2026-01-01
        charges: [{{meter: api_calls, model: per_unit, unit_price: "0.10"}}]
customers:
  - {{id: acme, currency: USD}}
subscriptions:
  - {{id: sub_acme, customer_id: acme, plan: pro, start_date: 2026-10-01}}
"""


def _catalog(folder, port=5432):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "catalog.yaml").write_text(textwrap.dedent(CATALOG.format(port=port)))
    return folder


def test_without_the_setting_the_instance_stays_on_sqlite_with_telemetry_off():
    assert yaml.safe_load(dagster_yaml_text(None)) == {"telemetry": {"enabled": False}}


def test_the_setting_becomes_dagsters_postgres_storage_with_the_password_from_the_environment(
    tmp_path,
):
    catalog = load_catalog(_catalog(tmp_path / "catalog"))
    written = yaml.safe_load(dagster_yaml_text(catalog.settings.dagster_storage))
    assert written["storage"] == {
        "postgres": {
            "postgres_db": {
                "username": "meterbook",
                "hostname": "127.0.0.1",
                "db_name": "dagster",
                "port": 5432,
            }
        }
    }
    text = (tmp_path / "catalog" / "catalog.yaml").read_text()
    (tmp_path / "catalog" / "catalog.yaml").write_text(
        text.replace("username: meterbook}", "username: meterbook, password_env: PG_PASSWORD}")
    )
    storage = load_catalog(tmp_path / "catalog").settings.dagster_storage
    database = yaml.safe_load(dagster_yaml_text(storage))["storage"]["postgres"]["postgres_db"]
    assert database["password"] == {"env": "PG_PASSWORD"}  # the name, never the secret


def test_a_password_written_in_the_catalog_is_refused_naming_where_it_goes(tmp_path):
    folder = _catalog(tmp_path / "catalog")
    text = (folder / "catalog.yaml").read_text()
    (folder / "catalog.yaml").write_text(
        text.replace("username: meterbook}", "username: meterbook, password: hunter2}")
    )
    with pytest.raises(CatalogError) as raised:
        load_catalog(folder)
    message = str(raised.value)
    assert "catalog.yaml:6: settings.dagster_storage.postgres" in message
    assert "password_env" in message and "hunter2" not in message


def test_the_file_follows_the_catalog_but_a_hand_written_one_is_left_alone(tmp_path):
    home, catalog = tmp_path / "dagster", tmp_path / "catalog"
    home.mkdir()
    catalog.mkdir()
    (catalog / "catalog.yaml").write_text("settings: {invoice_prefix: PG}\n")
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")  # an older meterbook's
    path = write_dagster_yaml(home, catalog)
    assert path.read_text().startswith(MARKER)
    assert "storage" not in yaml.safe_load(path.read_text())

    _catalog(catalog, port=6543)
    write_dagster_yaml(home, catalog)
    assert "port: 6543" in path.read_text()

    (catalog / "catalog.yaml").write_text("settings: {grace_days: -1}\n")  # a broken catalog
    write_dagster_yaml(home, catalog)
    assert "port: 6543" in path.read_text()  # keeps the storage it had

    own = "storage:\n  sqlite:\n    base_dir: /srv/dagster\n"
    path.write_text(own)
    _catalog(catalog, port=7654)
    write_dagster_yaml(home, catalog)
    assert path.read_text() == own


@pytest.mark.slow
@pytest.mark.skipif(server_binaries() is None, reason="no PostgreSQL server binaries here")
def test_a_close_is_recorded_in_postgresql_runs_and_materializations(tmp_path):
    with running_postgres() as pg:
        pg.create_database("dagster")
        home = tmp_path / "home"
        _catalog(home / "catalog", port=pg.port)
        (home / "landing" / "events").mkdir(parents=True)
        events = [
            {"event_id": f"e{day}", "customer_id": "acme", "event_name": "api.request",
             "timestamp": f"2026-10-{day:02d}T12:00:00Z", "properties": {}}
            for day in range(1, 11)
        ]  # fmt: skip
        landing = home / "landing" / "events" / "2026-10.jsonl"
        landing.write_text("".join(json.dumps(e) + "\n" for e in events))

        ok(home, "2026-11-10T00:00:00Z", "close", "--period", "2026-10")

        con = pg.connect("dagster")
        with con, con.cursor() as cur:
            cur.execute("select run_id, pipeline_name, status, partition from runs")
            (run_id, job, status, partition), *others = cur.fetchall()
            cur.execute(
                "select distinct asset_key from event_logs "
                "where run_id = %s and dagster_event_type = 'ASSET_MATERIALIZATION'",
                (run_id,),
            )
            materialized = {json.loads(key)[-1] for (key,) in cur.fetchall()}  # ["name"]
        con.close()
    assert (job, status, partition, others) == ("month_end_close", "SUCCESS", "2026-10", [])
    assert {"fct_invoices", "invoice_documents", "revenue_leakage"} <= materialized
    history = home / "dagster" / "history"
    assert not (history / "runs.db").exists()  # nothing went to SQLite
