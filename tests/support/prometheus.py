"""Run the real Prometheus for tests: on loopback, with a temporary config and storage directory.

`Prometheus` starts the Debian package's server with a generated configuration
(scrape jobs, rule files, a short scrape and evaluation interval), answers
queries through its HTTP API and stops it. History a fresh Prometheus cannot
have is written into its storage before it starts: `exporter_history` computes
what the KPI exporter would have exported at past instants, from the same store,
as OpenMetrics, and `backfill` turns that into TSDB blocks with promtool.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from tests.support.servers import free_port

READY_TIMEOUT_SECONDS = 30.0


class PrometheusError(Exception):
    """Prometheus answered a request with an error."""


class Prometheus:
    """One Prometheus server on 127.0.0.1 and a free port, storing under `workdir`."""

    def __init__(
        self,
        binary: str,
        workdir: Path,
        *,
        jobs: Mapping[str, Sequence[str]],
        rule_files: Sequence[Path] = (),
        interval: str = "1s",
        retention: str = "15d",
    ) -> None:
        self.binary = binary
        self.workdir = Path(workdir)
        self.data_dir = self.workdir / "data"
        self.port = free_port()
        self.log = self.workdir / "prometheus.log"
        self.config = self.workdir / "prometheus.yml"
        self.retention = retention
        self.process: subprocess.Popen[bytes] | None = None
        self.workdir.mkdir(parents=True, exist_ok=True)
        document = {
            "global": {
                "scrape_interval": interval,
                "scrape_timeout": interval,
                "evaluation_interval": interval,
            },
            "rule_files": [str(path) for path in rule_files],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": list(targets)}]}
                for job, targets in jobs.items()
            ],
        }
        self.config.write_text(yaml.safe_dump(document, sort_keys=False))

    @property
    def url(self) -> str:
        """Return the base URL of the HTTP API and UI."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, timeout: float = READY_TIMEOUT_SECONDS) -> None:
        """Start the server and wait until it is ready to answer queries."""
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [
                    self.binary,
                    f"--config.file={self.config}",
                    f"--storage.tsdb.path={self.data_dir}",
                    f"--storage.tsdb.retention.time={self.retention}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited during start:\n{self.output()}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response,
            ):
                if response.status == 200:
                    return
            time.sleep(0.2)
        raise TimeoutError(f"prometheus was not ready after {timeout} s:\n{self.output()}")

    def output(self, tail: int = 4000) -> str:
        """Return the end of what the server logged."""
        return self.log.read_text(errors="replace")[-tail:] if self.log.exists() else ""

    def api(self, endpoint: str, **params: str | float) -> Any:
        """Return the `data` of a GET /api/v1/<endpoint>; raise PrometheusError on an error."""
        query = urllib.parse.urlencode({k: str(v) for k, v in params.items()})
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{endpoint}?{query}", timeout=10) as r:
                body = json.load(r)
        except urllib.error.HTTPError as exc:
            # Bad queries answer 400 or 422 with the parser's message in the body.
            try:
                body = json.load(exc)
            except ValueError:
                raise PrometheusError(f"{endpoint} {params}: HTTP {exc.code}") from None
        if body.get("status") != "success":
            raise PrometheusError(
                f"{endpoint} {params}: {body.get('errorType')}: {body.get('error')}"
            )
        return body["data"]

    def query(self, promql: str, *, at: float | None = None) -> list[dict[str, Any]]:
        """Return the series of an instant query (now, or at a Unix time)."""
        params: dict[str, str | float] = {"query": promql}
        if at is not None:
            params["time"] = at
        result: list[dict[str, Any]] = self.api("query", **params)["result"]
        return result

    def query_range(
        self, promql: str, *, start: float, end: float, step: float
    ) -> list[dict[str, Any]]:
        """Return the series of a range query."""
        data = self.api("query_range", query=promql, start=start, end=end, step=step)
        result: list[dict[str, Any]] = data["result"]
        return result

    def wait_for(self, promql: str, timeout: float = 60.0) -> list[dict[str, Any]]:
        """Return the first non-empty answer to an instant query; fail after `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, PrometheusError):
                result = self.query(promql)
                if result:
                    return result
            time.sleep(0.5)
        raise AssertionError(f"no result for {promql}:\n{self.output(2000)}")

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 30 s)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> Prometheus:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def backfill(promtool: str, openmetrics: Path, data_dir: Path) -> str:
    """Write the samples of an OpenMetrics file into a Prometheus storage dir; return the report."""
    data_dir.mkdir(parents=True, exist_ok=True)
    # Weekly blocks: a handful of directories instead of one per two hours.
    result = subprocess.run(
        [
            promtool,
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            "--max-block-duration=168h",
            str(openmetrics),
            str(data_dir),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        raise RuntimeError(f"promtool could not backfill {openmetrics}:\n{result.stderr}")
    return result.stdout


def exporter_history(
    *,
    data_dir: Path,
    registry_file: Path,
    times: Sequence[float],
    labels: Mapping[str, str],
    out: Path,
) -> None:
    """Write, as OpenMetrics, what the KPI exporter exports at each of `times`.

    Runs in a subprocess: the embedded store admits one process at a time, so no
    server may hold `data_dir` meanwhile. The settings are the test server's
    (dev mode, default privacy limits); `labels` (job, instance) are the ones
    Prometheus gives the live scrapes, so history and scrapes form one series.
    """
    command = [
        sys.executable,
        "-m",
        "tests.support.prometheus",
        "--data-dir",
        str(data_dir),
        "--registry-file",
        str(registry_file),
        "--labels",
        json.dumps(dict(labels)),
        "--out",
        str(out),
        *(f"--at={moment}" for moment in times),
    ]
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(command, capture_output=True, text=True, cwd=root, timeout=240)
    if result.returncode != 0:
        raise RuntimeError(f"computing the exporter history failed:\n{result.stderr[-4000:]}")


def _write_exporter_history(args: argparse.Namespace) -> None:
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import Metric
    from prometheus_client.openmetrics.exposition import generate_latest

    from uptake_server.config import load_settings
    from uptake_server.kpi.exporter import KpiExporter
    from uptake_server.store import open_store, schema_context

    settings = load_settings(
        {"data_dir": args.data_dir, "registry_file": args.registry_file, "dev": True}, environ={}
    )
    extra = json.loads(args.labels)
    merged: dict[str, Metric] = {}
    store = open_store(settings)
    try:
        store.migrate(schema_context(settings))
        registry = CollectorRegistry()
        exporter = KpiExporter(settings, store, registry=registry)
        for moment in sorted(args.at):
            exporter.refresher.refresh(now=dt.datetime.fromtimestamp(moment, dt.UTC))
            for family in registry.collect():
                into = merged.setdefault(
                    family.name, Metric(family.name, family.documentation, family.type)
                )
                for sample in family.samples:
                    labels = {**sample.labels, **extra}
                    into.add_sample(sample.name, labels, sample.value, timestamp=moment)
        exporter.stop()
    finally:
        store.close()
    for family in merged.values():
        # OpenMetrics keeps each series' samples together, oldest first.
        family.samples.sort(key=lambda s: (s.name, sorted(s.labels.items()), s.timestamp))

    class _History:
        def collect(self) -> list[Metric]:
            return list(merged.values())

    history = CollectorRegistry(auto_describe=False)
    history.register(_History())
    Path(args.out).write_bytes(generate_latest(history))


def main(argv: Sequence[str] | None = None) -> int:
    """Compute the KPI exporter's history (the subprocess of `exporter_history`)."""
    parser = argparse.ArgumentParser(prog="python -m tests.support.prometheus")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--registry-file", required=True)
    parser.add_argument("--labels", required=True, help="JSON object of labels to add")
    parser.add_argument("--out", required=True)
    parser.add_argument("--at", type=float, action="append", required=True, help="Unix time")
    _write_exporter_history(parser.parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
