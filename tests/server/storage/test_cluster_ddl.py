"""Cluster DDL: golden files for every generated statement, each parsed by the real engine.

No cluster runs here (no Keeper, no second server), so the cluster statements are
checked two ways: against reviewed golden files, and by the ClickHouse parser
(formatQuery) on every transport. Regenerate the files after a schema change with
UPTAKE_UPDATE_GOLDEN=1 and review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from uptake_server.cli import main
from uptake_server.errors import StoreError
from uptake_server.store import ClickHouseStore, SchemaContext
from uptake_server.store.cluster import ClusterSchema
from uptake_server.store.erasure import delete_statement, user_conditions, user_tables
from uptake_server.store.migrations import render, script
from uptake_server.store.policies import retention_statement
from uptake_server.store.schema import RETENTION

GOLDEN = Path(__file__).parent / "golden"
CLUSTER = SchemaContext(cluster="uptake", database="uptake")
EXAMPLE_PSEUDONYM = "00112233445566778899aabbccddeeff"


def maintenance(ctx: SchemaContext) -> str:
    single = [retention_statement(p, p.days(ctx)) for p in RETENTION]
    conditions = user_conditions(EXAMPLE_PSEUDONYM, ctx)
    single += [delete_statement(table, condition) for table, condition in conditions.items()]
    return "".join(f"{statement};\n\n" for statement in render(single, ctx))


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPTAKE_UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert path.read_text() == text, (
        f"{path.name} differs from the generated statements; if the change is intended, "
        "run with UPTAKE_UPDATE_GOLDEN=1 and review the diff"
    )


def statements(text: str) -> list[str]:
    lines = (line for line in text.splitlines() if not line.startswith("--"))
    return [s.strip() for s in "\n".join(lines).split(";\n") if s.strip()]


@pytest.mark.usefixtures("cli_logging")
def test_migrate_print_sql_matches_the_golden_cluster_schema(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["migrate", "--print-sql", "--cluster", "uptake"]
    assert main([*argv, "--store-dsn", "http://uptake@clickhouse:8123/uptake"]) == 0
    printed = capsys.readouterr().out
    assert printed == script(CLUSTER)
    check_golden("cluster.sql", printed)


def test_cluster_retention_and_erasure_match_the_golden_file() -> None:
    check_golden("cluster-maintenance.sql", maintenance(CLUSTER))


def test_the_engine_parses_every_cluster_statement(store: ClickHouseStore) -> None:
    generated = statements(script(CLUSTER)) + statements(maintenance(CLUSTER))
    assert len(generated) > 20
    for statement in generated:
        (formatted,) = store.query("SELECT formatQuery({sql:String})", {"sql": statement})[0]
        if not statement.startswith("INSERT"):
            assert "ON CLUSTER uptake" in formatted, statement


def test_tables_become_replicated_local_tables_behind_distributed_ones() -> None:
    schema = ClusterSchema("c1", "db")
    local, distributed = schema.render(
        ["CREATE TABLE IF NOT EXISTS t (\n    user_id FixedString(16)\n) ENGINE = MergeTree"]
    )
    assert local.startswith("CREATE TABLE IF NOT EXISTS t_local ON CLUSTER 'c1' (")
    assert "ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/{table}'" in local
    assert distributed.endswith("ENGINE = Distributed('c1', 'db', 't_local', cityHash64(user_id))")
    (plain,) = schema.render(
        ["CREATE TABLE IF NOT EXISTS u (n UInt8) ENGINE = ReplacingMergeTree(n) ORDER BY n"]
    )[1:]
    assert plain.endswith("'u_local', rand())")
    altered = schema.render(["ALTER TABLE t ADD COLUMN IF NOT EXISTS x UInt8"])
    assert altered == [
        "ALTER TABLE t_local ON CLUSTER 'c1' ADD COLUMN IF NOT EXISTS x UInt8",
        "ALTER TABLE t ON CLUSTER 'c1' ADD COLUMN IF NOT EXISTS x UInt8",
    ]
    assert schema.render(["DROP TABLE IF EXISTS t"]) == [
        "DROP TABLE IF EXISTS t ON CLUSTER 'c1'",
        "DROP TABLE IF EXISTS t_local ON CLUSTER 'c1'",
    ]
    (view,) = schema.render(
        ["CREATE MATERIALIZED VIEW IF NOT EXISTS v TO u AS SELECT n FROM t JOIN other USING n"]
    )
    assert view == (
        "CREATE MATERIALIZED VIEW IF NOT EXISTS v ON CLUSTER 'c1' TO u_local "
        "AS SELECT n FROM t_local JOIN other USING n"
    )


def test_a_statement_that_cannot_be_rendered_is_refused_by_its_first_line() -> None:
    with pytest.raises(StoreError, match="cannot render this statement for cluster mode: "
                       "CREATE TABLE IF NOT EXISTS m"):  # fmt: skip
        ClusterSchema("c1", "db").render(
            ["CREATE TABLE IF NOT EXISTS m (a UInt8)\nENGINE = Memory"]
        )


def test_the_erasure_covers_every_table_with_a_user_column() -> None:
    assert user_tables(CLUSTER) == user_tables(SchemaContext())
    assert {"events", "kpi_user_hours", "kpi_user_days", "kpi_first_seen"} <= set(
        user_tables(CLUSTER)
    )
    with pytest.raises(StoreError, match="32 lowercase hex digits"):
        user_conditions("x'; DROP TABLE events; --", CLUSTER)
