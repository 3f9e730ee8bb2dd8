"""A standalone Spark cluster on 127.0.0.1 for the Spark tier and the benchmarks: a master, one worker and the Thrift
(HiveServer2) server dbt-spark's `thrift` method talks to, all from the PySpark package's own
jars (the `spark` extra), started as child processes and stopped with them; with `connect`, a
Spark Connect server too, which meterbook's ingest reads the landing files on
(METERBOOK_SPARK_REMOTE) instead of starting a JVM of its own in every command.

    with running_cluster(work) as cluster:   # cluster.thrift_port, cluster.master_url
        ...
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"


@dataclass
class Cluster:
    master_url: str
    thrift_port: int
    connect_url: str | None = None  # sc://host:port, when started
    started_seconds: dict[str, float] = field(default_factory=dict)


def spark_home() -> Path:
    import pyspark  # noqa: PLC0415

    return Path(pyspark.__file__).parent


@contextlib.contextmanager
def running_cluster(
    work: Path, cores: int = 2, memory: str = "6g", connect: bool = False
) -> Iterator[Cluster]:
    """Master, worker and Thrift server up (each waited for on its port), and with `connect`
    the Spark Connect server; then stopped."""
    home, logs = spark_home(), work / "spark-logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, SPARK_HOME=str(home), SPARK_LOCAL_IP=HOST, SPARK_LOG_DIR=str(logs))
    # the Python of the tasks of the ingest (meterbook's readers): this one, with meterbook
    env.setdefault("PYSPARK_PYTHON", sys.executable)
    master_port, thrift_port = _free_port(), _free_port()
    master_url = f"spark://{HOST}:{master_port}"
    cluster, processes = Cluster(master_url, thrift_port), []
    started = time.perf_counter()
    try:
        processes.append(_start(home, env, logs / "master.log", "org.apache.spark.deploy.master.Master",
                                "--host", HOST, "--port", str(master_port), "--webui-port", "0"))  # fmt: skip
        _wait_for_port(master_port, processes[-1], "master")
        cluster.started_seconds["master"] = time.perf_counter() - started
        processes.append(_start(home, env, logs / "worker.log", "org.apache.spark.deploy.worker.Worker",
                                "--host", HOST, "--cores", str(cores), "--memory", memory,
                                "--webui-port", "0", master_url))  # fmt: skip
        if connect:  # started beside the Thrift server, waited for after it
            connect_port = _free_port()
            connect_server = _connect_server(home, env, work, connect_port)
            processes.append(connect_server)
            cluster.connect_url = f"sc://{HOST}:{connect_port}"
        processes.append(_thrift_server(home, env, work, master_url, thrift_port, memory))
        _wait_for_port(thrift_port, processes[-1], "thrift server", timeout=300)
        cluster.started_seconds["thrift"] = time.perf_counter() - started
        if connect:
            _wait_for_port(connect_port, connect_server, "connect server", timeout=300)
            cluster.started_seconds["connect"] = time.perf_counter() - started
        yield cluster
    finally:
        for process in reversed(processes):
            _stop(process)


def _start(home: Path, env: dict, log: Path, main_class: str, *args: str) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [str(home / "bin" / "spark-class"), main_class, *args],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def _thrift_server(home, env, work: Path, master_url: str, port: int, memory: str):
    warehouse = work / "spark-warehouse"
    with open(work / "spark-logs" / "thrift.log", "ab") as out:
        return subprocess.Popen(
            [str(home / "bin" / "spark-submit"),
             "--class", "org.apache.spark.sql.hive.thriftserver.HiveThriftServer2",
             "--master", master_url, "--executor-memory", memory, "--driver-memory", "2g",
             "--conf", f"spark.sql.warehouse.dir={warehouse}",
             "--conf", f"spark.driver.extraJavaOptions=-Dderby.system.home={work}",
             "--conf", "spark.sql.session.timeZone=UTC",
             "--conf", "spark.sql.decimalOperations.allowPrecisionLoss=false",
             "--conf", "spark.sql.sources.partitionOverwriteMode=dynamic",
             "--conf", "spark.sql.shuffle.partitions=8",
             "--conf", "spark.ui.enabled=false",
             "--hiveconf", f"hive.server2.thrift.port={port}",
             "--hiveconf", f"hive.server2.thrift.bind.host={HOST}",
             "spark-internal"],
            env=env, cwd=work, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def _connect_server(home, env, work: Path, port: int):
    """A Spark Connect server of its own driver (`local[2]`): the worker's cores are the Thrift
    server's, which takes them all. Its Python workers run PYSPARK_PYTHON (meterbook's)."""
    with open(work / "spark-logs" / "connect.log", "ab") as out:
        return subprocess.Popen(
            [str(home / "bin" / "spark-submit"),
             "--class", "org.apache.spark.sql.connect.service.SparkConnectServer",
             "--master", "local[2]", "--driver-memory", "1g",
             "--conf", f"spark.connect.grpc.binding.address={HOST}",
             "--conf", f"spark.connect.grpc.binding.port={port}",
             "--conf", f"spark.sql.warehouse.dir={work / 'connect-warehouse'}",
             "--conf", "spark.ui.enabled=false",
             "spark-internal"],
            env=env, cwd=work, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def _wait_for_port(port: int, process: subprocess.Popen, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the Spark {what} exited ({process.returncode}); see its log")
        with socket.socket() as s:
            if s.connect_ex((HOST, port)) == 0:
                return
        time.sleep(0.5)
    raise RuntimeError(f"the Spark {what} did not listen on {HOST}:{port} in {timeout:.0f} s")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]
