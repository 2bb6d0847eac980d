"""`uptake-server kpis`: the current KPI table, the same numbers as /metrics.

The embedded store admits one process per data directory, so while a server runs
on it this command reads that server's /metrics (the metrics address setting)
instead of computing: the numbers are then exactly what Prometheus scrapes. When
no server holds the store (or the store is a ClickHouse server), it computes one
snapshot itself with the same plugins and privacy rules.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.table import Table

from uptake_server.config import Settings, env_name
from uptake_server.errors import StoreError, StoreLocked
from uptake_server.store import open_store, schema_context

_INGEST_PREFIXES = ("uptake_ingest_", "uptake_store_", "uptake_build_", "uptake_api_")


@dataclass(frozen=True, slots=True)
class KpiLine:
    """One KPI sample."""

    metric: str
    labels: dict[str, str]
    value: float


def current_kpis(settings: Settings) -> tuple[list[KpiLine], str]:
    """Return the KPI samples and where they came from."""
    try:
        store = open_store(settings)
    except StoreLocked:
        url = scrape_url(settings)
        return parse_exposition(_fetch(url)), f"the running server at {url}"
    try:
        from uptake_server.kpi.exporter import KpiExporter

        store.migrate(schema_context(settings))
        registry = CollectorRegistry()
        exporter = KpiExporter(settings, store, registry=registry)
        exporter.refresher.refresh()
        text = generate_latest(registry).decode()
        exporter.stop()
    finally:
        store.close()
    return parse_exposition(text), f"a refresh of {store.describe()}"


def scrape_url(settings: Settings) -> str:
    """Return the /metrics URL of the server running with these settings."""
    host, _, port = settings.metrics_listen.rpartition(":")
    if host in ("0.0.0.0", "::", "[::]", ""):
        host = "127.0.0.1"
    return f"http://{host}:{port}/metrics"


def _fetch(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return str(response.read().decode())
    except (urllib.error.URLError, OSError) as exc:
        raise StoreError(
            f"the data directory is in use by a running server, but its metrics at {url} "
            f"do not answer ({exc}); point {env_name('metrics_listen')} at that server"
        ) from None


def parse_exposition(text: str) -> list[KpiLine]:
    """Return the KPI samples of a Prometheus text exposition."""
    lines = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.name.startswith("uptake_") or sample.name.startswith(_INGEST_PREFIXES):
                continue
            if sample.name.endswith("_created"):
                continue
            lines.append(KpiLine(sample.name, dict(sample.labels), float(sample.value)))
    return lines


def show_kpis(settings: Settings, *, tool: str | None, fmt: str) -> int:
    """Print the KPI table or JSON lines; return the exit status."""
    lines, source = current_kpis(settings)
    if tool is not None:
        lines = [line for line in lines if line.labels.get("tool", tool) == tool]
    if fmt == "json":
        for line in lines:
            print(json.dumps({"metric": line.metric, "labels": line.labels, "value": line.value}))
        return 0
    table = Table(title=f"Uptake KPIs (from {source})")
    for column in ("metric", "tool", "org_unit", "labels", "value"):
        table.add_column(column, justify="right" if column == "value" else "left")
    for line in lines:
        rest = {k: v for k, v in line.labels.items() if k not in ("tool", "org_unit")}
        table.add_row(
            line.metric,
            line.labels.get("tool", ""),
            line.labels.get("org_unit", ""),
            ",".join(f"{k}={v}" for k, v in rest.items()),
            f"{line.value:.6g}",
        )
    Console(width=160).print(table)
    return 0
