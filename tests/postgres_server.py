"""A throwaway PostgreSQL server on 127.0.0.1 for the tests that need one: Debian's server
binaries (`initdb`, `pg_ctl`), a cluster in a temporary folder, trust authentication for one
user, stopped and removed afterwards. As root it runs as the `postgres` system user, since
PostgreSQL refuses to run as root. On sys.path through the root conftest's folder."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

USER = "meterbook"


@dataclass(frozen=True)
class Postgres:
    host: str
    port: int
    user: str

    def connect(self, database: str):
        import psycopg2  # noqa: PLC0415

        return psycopg2.connect(host=self.host, port=self.port, user=self.user, dbname=database)

    def create_database(self, name: str) -> None:
        con = self.connect("postgres")
        con.autocommit = True  # CREATE DATABASE refuses a transaction (so no `with con`)
        try:
            with con.cursor() as cur:
                cur.execute(f'create database "{name}"')
        finally:
            con.close()


def server_binaries() -> Path | None:
    """The folder of `initdb` and `pg_ctl`: on the PATH, or Debian's versioned folder."""
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(found).resolve().parent
    folders = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    return Path(folders[-1]) if folders else None


@contextlib.contextmanager
def running_postgres() -> Iterator[Postgres]:
    binaries = server_binaries()
    if binaries is None:
        raise FileNotFoundError("no PostgreSQL server binaries (initdb, pg_ctl)")
    # outside pytest's tmp_path: the server's socket path must stay short and world-readable
    folder = Path(tempfile.mkdtemp(prefix="meterbook-pg-"))
    data, port = folder / "data", _free_port()
    as_user = _run_as()
    if as_user:
        shutil.chown(folder, user=as_user)
    try:
        _run(as_user, binaries / "initdb", "-D", data, "-U", USER, "--auth=trust", "-E", "UTF8")
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {folder} -c fsync=off"
        _run(as_user, binaries / "pg_ctl", "-D", data, "-o", options, "-w", "-l",
             folder / "server.log", "start")  # fmt: skip
        try:
            yield Postgres("127.0.0.1", port, USER)
        finally:
            _run(as_user, binaries / "pg_ctl", "-D", data, "-m", "fast", "-w", "stop")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _run_as() -> str | None:
    return "postgres" if os.geteuid() == 0 else None


def _run(as_user: str | None, *command) -> None:
    argv = [str(part) for part in command]
    if as_user:
        argv = ["runuser", "-u", as_user, "--", *argv]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}:\n{done.stderr[-2000:]}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
