"""Render the single-node schema for a ClickHouse cluster (shards x replicas, ClickHouse Keeper).

Every table of the schema becomes two in cluster mode: ``<name>_local``, a
Replicated*MergeTree on every node (one replica set per shard, coordinated through
Keeper), and ``<name>``, a Distributed table over them. Tables with a ``user_id``
are sharded by ``cityHash64(user_id)``, so one user's events and per-user aggregates
live on one shard and per-user aggregation is shard-local; other tables are sharded
at random. Materialized views read and write the local tables, so each runs on the
shard that receives the rows. Readers and writers keep using the plain names.

Statements are written once, for a single node, and rewritten here; a statement this
module cannot rewrite is refused with its first line, never passed through.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from uptake_server.errors import StoreError

LOCAL_SUFFIX = "_local"
# {shard} and {replica} come from each server's <macros>; {database} and {table}
# are filled in by ClickHouse.
REPLICA_PATH = "'/clickhouse/tables/{shard}/{database}/{table}', '{replica}'"

_CREATE_TABLE = re.compile(
    r"CREATE TABLE IF NOT EXISTS (?P<name>\w+)\s*\((?P<columns>.*)\)\s*"
    r"ENGINE\s*=\s*(?P<engine>\w*MergeTree)(?:\((?P<args>[^()]*)\))?(?P<rest>.*)",
    re.S,
)
_CREATE_VIEW = re.compile(
    r"CREATE MATERIALIZED VIEW IF NOT EXISTS (?P<name>\w+)\s+TO\s+(?P<target>\w+)(?P<rest>.*)",
    re.S,
)
_PLAIN_VIEW = re.compile(r"CREATE VIEW IF NOT EXISTS (?P<name>\w+)(?P<rest>.*)", re.S)
_ALTER = re.compile(r"ALTER TABLE (?P<name>\w+)\s+(?P<action>.*)", re.S)
_LOCAL_ACTION = re.compile(r"(MODIFY (TTL|SETTING)|MATERIALIZE|DELETE|UPDATE)\b")
_DELETE = re.compile(r"DELETE FROM (?P<name>\w+)\s+(?P<rest>WHERE.*)", re.S)
_DROP = re.compile(r"DROP (?P<kind>TABLE|VIEW) IF EXISTS (?P<name>\w+)(?P<rest>.*)", re.S)
_DATABASE = re.compile(r"CREATE DATABASE IF NOT EXISTS (?P<name>`?\w+`?)(?P<rest>.*)", re.S)
_READS = re.compile(r"\b(FROM|JOIN)\s+(\w+)\b")
_USER_COLUMN = re.compile(r"^\s*user_id\s", re.M)


class ClusterSchema:
    """Rewrite single-node statements for one cluster and database, remembering the tables."""

    def __init__(self, cluster: str, database: str) -> None:
        self.cluster = cluster
        self.database = database
        self.on_cluster = f"ON CLUSTER '{cluster}'"
        self.sharded: set[str] = set()

    def render(self, statements: Iterable[str]) -> list[str]:
        """Return the cluster statements for single-node statements, in order."""
        return [out for statement in statements for out in self._render(statement.strip())]

    def _render(self, sql: str) -> list[str]:
        if sql.startswith("INSERT INTO"):
            return [sql]  # through the Distributed table, which routes rows to their shard
        for pattern, rewrite in (
            (_CREATE_TABLE, self._table),
            (_CREATE_VIEW, self._materialized_view),
            (_PLAIN_VIEW, self._view),
            (_ALTER, self._alter),
            (_DELETE, self._delete),
            (_DROP, self._drop),
            (_DATABASE, self._database),
        ):
            match = pattern.fullmatch(sql)
            if match:
                return rewrite(match)
        first_line = sql.splitlines()[0] if sql else "(empty statement)"
        raise StoreError(f"cannot render this statement for cluster mode: {first_line}")

    def _table(self, m: re.Match[str]) -> list[str]:
        name, columns, engine = m["name"], m["columns"], m["engine"]
        args = f", {m['args'].strip()}" if m["args"] and m["args"].strip() else ""
        self.sharded.add(name)
        key = "cityHash64(user_id)" if _USER_COLUMN.search(columns) else "rand()"
        local = name + LOCAL_SUFFIX
        return [
            f"CREATE TABLE IF NOT EXISTS {local} {self.on_cluster} ({columns})\n"
            f"ENGINE = Replicated{engine}({REPLICA_PATH}{args}){m['rest'].rstrip()}",
            f"CREATE TABLE IF NOT EXISTS {name} {self.on_cluster} AS {local}\n"
            f"ENGINE = Distributed('{self.cluster}', '{self.database}', '{local}', {key})",
        ]

    def _materialized_view(self, m: re.Match[str]) -> list[str]:
        target = self._local(m["target"])
        body = _READS.sub(lambda r: f"{r[1]} {self._local(r[2])}", m["rest"])
        return [
            f"CREATE MATERIALIZED VIEW IF NOT EXISTS {m['name']} {self.on_cluster} "
            f"TO {target}{body}"
        ]

    def _view(self, m: re.Match[str]) -> list[str]:
        return [f"CREATE VIEW IF NOT EXISTS {m['name']} {self.on_cluster}{m['rest']}"]

    def _alter(self, m: re.Match[str]) -> list[str]:
        name, action = m["name"], m["action"]
        if name not in self.sharded:
            return [f"ALTER TABLE {name} {self.on_cluster} {action}"]
        local = [f"ALTER TABLE {name}{LOCAL_SUFFIX} {self.on_cluster} {action}"]
        if _LOCAL_ACTION.match(action):
            return local
        # Column changes apply to the local tables and to the Distributed table over them.
        return [*local, f"ALTER TABLE {name} {self.on_cluster} {action}"]

    def _delete(self, m: re.Match[str]) -> list[str]:
        return [f"DELETE FROM {self._local(m['name'])} {self.on_cluster} {m['rest']}"]

    def _drop(self, m: re.Match[str]) -> list[str]:
        name, kind, rest = m["name"], m["kind"], m["rest"]
        drops = [f"DROP {kind} IF EXISTS {name} {self.on_cluster}{rest}"]
        if name in self.sharded:
            drops.append(f"DROP TABLE IF EXISTS {name}{LOCAL_SUFFIX} {self.on_cluster}{rest}")
        return drops

    def _database(self, m: re.Match[str]) -> list[str]:
        return [f"CREATE DATABASE IF NOT EXISTS {m['name']} {self.on_cluster}{m['rest']}"]

    def _local(self, name: str) -> str:
        return name + LOCAL_SUFFIX if name in self.sharded else name


def has_user_column(statement: str) -> str | None:
    """Return the table a CREATE TABLE statement makes if it has a user_id column."""
    m = _CREATE_TABLE.fullmatch(statement.strip())
    return m["name"] if m and _USER_COLUMN.search(m["columns"]) else None
