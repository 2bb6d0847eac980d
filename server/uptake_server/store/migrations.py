"""Apply the schema: versioned migrations, recorded, then table policies converged.

Safe when several replicas start at once: every statement is idempotent (IF NOT
EXISTS, or converging to a value), so two runs that interleave end in the same
schema, and a version recorded twice collapses in the ReplacingMergeTree
``schema_migrations`` (reads use DISTINCT). A run that dies half-way is finished by
the next one, because a version is recorded only after all its statements succeed.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from uptake_server.store.cluster import ClusterSchema
from uptake_server.store.policies import converge
from uptake_server.store.schema import MIGRATIONS, MIGRATIONS_TABLE, Migration, SchemaContext

if TYPE_CHECKING:
    from uptake_server.store.clickhouse import ClickHouseStore

log = logging.getLogger(__name__)


def _renderer(ctx: SchemaContext) -> Callable[[list[str]], list[str]]:
    if not ctx.cluster:
        return lambda statements: [s.strip() for s in statements]
    # Primed with the whole schema, so it knows every sharded table.
    schema = ClusterSchema(ctx.cluster, ctx.database)
    schema.render([MIGRATIONS_TABLE])
    for migration in MIGRATIONS:
        schema.render(migration.statements(ctx))
    return schema.render


def render(statements: list[str], ctx: SchemaContext) -> list[str]:
    """Return statements as they run in this context (rewritten for a cluster)."""
    return _renderer(ctx)(statements)


def plan(ctx: SchemaContext) -> list[tuple[Migration | None, list[str]]]:
    """Return every step with its statements: the migrations table (None), then each migration."""
    run = _renderer(ctx)
    return [(None, run([MIGRATIONS_TABLE])), *((m, run(m.statements(ctx))) for m in MIGRATIONS)]


def database_statement(ctx: SchemaContext) -> str:
    """Return the statement that creates the store's database (on every node of a cluster)."""
    on_cluster = f" ON CLUSTER '{ctx.cluster}'" if ctx.cluster else ""
    return f"CREATE DATABASE IF NOT EXISTS `{ctx.database}`{on_cluster}"


def script(ctx: SchemaContext) -> str:
    """Return the whole schema as one SQL script, for review (``migrate --print-sql``)."""
    parts = [f"-- database\n{database_statement(ctx)};"]
    for migration, statements in plan(ctx):
        title = (
            "migrations table" if migration is None else f"{migration.version}: {migration.name}"
        )
        if not statements:
            parts.append(f"-- {title}: no statements for this store")
            continue
        parts.append(f"-- {title}\n" + "\n\n".join(f"{s};" for s in statements))
    return "\n\n".join(parts) + "\n"


def migrate(store: ClickHouseStore, ctx: SchemaContext) -> list[str]:
    """Apply the migrations not yet recorded and converge table policies; return what changed."""
    # The DDL names the database (Distributed tables): always the store's own.
    ctx = dataclasses.replace(
        ctx, database=store.target.database, rollup=store.target.engine == "chdb"
    )
    store.ensure_database(ctx)
    steps = plan(ctx)
    for migration, statements in steps:
        if migration is None:
            for statement in statements:
                store.command(statement)
    done = {row[0] for row in store.query("SELECT DISTINCT version FROM schema_migrations")}
    changes = []
    for migration, statements in steps:
        if migration is None or migration.version in done:
            continue
        for statement in statements:
            store.command(statement)
        store.insert_columns(
            "schema_migrations",
            [[migration.version], [migration.name]],
            names=["version", "name"],
            types=["UInt32", "String"],
            token=f"uptake-migration-{migration.version}",
        )
        changes.append(f"{migration.version}: {migration.name}")
        log.info("schema migration %s applied", changes[-1])
    changes.extend(converge(store, ctx, render=lambda s: render(s, ctx)))
    return changes
