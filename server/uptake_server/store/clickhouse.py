"""The event store, implemented once on clickhouse-connect for chDB and ClickHouse servers.

One client per role (admin, writer, reader, health, ...), never an auto-generated session id
(sessions would serialise a role's calls and pin them to one server); column-oriented inserts
with the column types given (no DESCRIBE per insert); compressed HTTP both ways; connect and
statement timeouts; transient failures retried a bounded number of times, safely
(store/failures.py).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import clickhouse_connect
from clickhouse_connect.driver import options as driver_options
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError, DatabaseError, OperationalError

from uptake_server import __version__
from uptake_server.errors import StoreError, StoreLocked
from uptake_server.model import EVENT_COLUMNS, FAILED_COLUMNS, EventColumns, FailedColumns
from uptake_server.store import memory
from uptake_server.store.dsn import StoreOptions, StoreTarget
from uptake_server.store.failures import classified, classify, retrying
from uptake_server.store.lock import DirectoryLock
from uptake_server.store.rollup import DUPLICATE_FILTER, Rollup, slice_condition
from uptake_server.store.rollup import ROLE as ROLLUP_ROLE
from uptake_server.store.schema import SEQ_COLUMN, SchemaContext
from uptake_server.store.tokens import event_token, failed_token

__all__ = ["ClickHouseStore", "StoreOptions", "event_token", "failed_token"]

log = logging.getLogger(__name__)

_EVENT_NAMES = [name for name, _ in EVENT_COLUMNS]
_EVENT_TYPES = [kind for _, kind in EVENT_COLUMNS]
_FAILED_NAMES = [name for name, _ in FAILED_COLUMNS]
_FAILED_TYPES = [kind for _, kind in FAILED_COLUMNS]
# The duplicate lookup. toFixedString: comparing FixedString to a plain String
# ignores trailing zero bytes, so an id ending in 0x00 would never match.
_IDS = "(SELECT toFixedString(unhex(arrayJoin({ids:Array(String)})), 16))"
_LOOKUP = f"SELECT event_id FROM event_ids WHERE event_id IN {_IDS}"
# Ids per duplicate lookup: keeps each query well under max_query_size.
_LOOKUP_CHUNK = 10_000
HEALTH_ROLE = "health"
HEALTH_TIMEOUT_SECONDS = 5
# clickhouse-connect imports pandas (installed with chDB) at the first insert, to ask
# whether the rows are a DataFrame: 0.2 s and 28 MB of memory kept. The store passes
# lists only, so it answers as the library does when pandas is missing.
driver_options.pd = driver_options.pd_time_test = None


class ClickHouseStore:
    """Events and failed events in ClickHouse, embedded (chDB) or on a server."""

    def __init__(self, target: StoreTarget, *, options: StoreOptions | None = None) -> None:
        self.target = target
        self.options = options or StoreOptions()
        self._lock: DirectoryLock | None = None
        self._clients: dict[str, Client] = {}
        self._client_guard = threading.Lock()
        # Held while the roll-up's state is first read, before any insert is numbered.
        self._insert_lock = threading.Lock()
        # One writer connection per inserting thread (group commit runs several).
        self._writers = threading.local()
        self._writer_threads = 0
        self._rollup: Rollup | None = None
        if target.engine == "chdb":
            memory.tune_allocator()
            self._rollup = Rollup(
                lambda sql: self.command(sql, role=ROLLUP_ROLE),
                lambda sql: self.query(sql, role=ROLLUP_ROLE),
            )
            path = self._path()
            path.mkdir(parents=True, exist_ok=True)
            self._lock = DirectoryLock(path)
            self._lock.acquire()
        try:
            # Fail at start-up, with the reason, when the store cannot be reached.
            self.client("admin")
        except BaseException:
            self.close()
            raise

    def _path(self) -> Path:
        if self.target.path is None:
            raise StoreError("an embedded store needs a path")
        return self.target.path

    def client(self, role: str) -> Client:
        """Return the client of a role (admin, writer, reader, kpi, ...), creating it once."""
        with self._client_guard:
            existing = self._clients.get(role)
            if existing is not None:
                return existing
            self._clients[role] = client = self._connect(role)
            return client

    def _connect(self, role: str) -> Client:
        target, options = self.target, self.options
        try:
            if target.engine == "chdb":
                return clickhouse_connect.get_client(interface="chdb", path=str(self._path()))
            return clickhouse_connect.get_client(
                host=target.host,
                port=target.port,
                username=target.username,
                password=options.password or "",
                # The admin role works before the database exists (it creates it).
                database=None if role == "admin" else target.database,
                secure=target.secure,
                ca_cert=options.ca_file or None,
                connect_timeout=options.connect_timeout_seconds,
                send_receive_timeout=self._statement_timeout(role),
                autogenerate_session_id=False,
                compress=True,
                # Shown in system.query_log, so operators can tell the roles apart.
                client_name=f"uptake-server/{__version__} ({role})",
            )
        except (OperationalError, DatabaseError) as exc:
            if target.engine == "chdb" and "EmbeddedServer" in str(exc):
                raise StoreLocked(
                    f"the data directory {target.path} is in use by another process; "
                    "stop it first, or give this server its own --data-dir"
                ) from None
            raise classify(exc, f"cannot connect to {target.describe()}") from exc

    def _statement_timeout(self, role: str) -> int:
        # A health probe that waits out a stalled server would report it late.
        if role == HEALTH_ROLE:
            return min(self.options.query_timeout_seconds, HEALTH_TIMEOUT_SECONDS)
        return self.options.query_timeout_seconds

    def ensure_database(self, ctx: SchemaContext) -> None:
        """Create the store's database (on every node of a cluster) if it does not exist."""
        if self.target.engine == "chdb":
            return
        from uptake_server.store.migrations import database_statement

        client = self.client("admin")
        self._run(lambda: client.command(database_statement(ctx)))

    def migrate(self, ctx: SchemaContext) -> list[str]:
        """Apply the migrations not yet recorded and converge table policies; return changes."""
        from uptake_server.store.migrations import migrate

        return migrate(self, ctx)

    def existing_ids(self, ids: Sequence[bytes], *, role: str = "writer") -> set[bytes]:
        """Return which of these event ids the store already holds."""
        client = self.client(role)
        found: set[bytes] = set()
        sql = _LOOKUP
        rollup = self._loaded_rollup()
        if rollup is not None:
            # Events not rolled up into the filter yet are looked up where they are.
            after = slice_condition(rollup.mark(DUPLICATE_FILTER))
            sql += f" UNION ALL SELECT event_id FROM events WHERE {after} AND event_id IN {_IDS}"
        for start in range(0, len(ids), _LOOKUP_CHUNK):
            chunk = [i.hex() for i in ids[start : start + _LOOKUP_CHUNK]]
            rows = self._run(
                lambda c=chunk: (
                    client.query(  # type: ignore[misc]
                        sql, parameters={"ids": c}
                    ).result_rows
                )
            )
            found.update(row[0] for row in rows)
        return found

    def insert(
        self,
        events: EventColumns,
        failed: FailedColumns,
        *,
        lookup: Sequence[bytes] | None = None,
    ) -> set[bytes]:
        """Store failed events and the events not stored before; return the ids stored before.

        An id repeated within `events` is stored once, at its first occurrence. Only
        the ids in `lookup` are looked up among stored events (None: every id);
        clients mark first sends, whose ids cannot be stored yet.
        """
        role = self._writer_role()
        already: set[bytes] = set()
        if len(events):
            keep: list[int] = []
            seen: set[bytes] = set()
            for index, event_id in enumerate(events.event_id):
                if event_id not in seen:
                    seen.add(event_id)
                    keep.append(index)
            wanted = list(seen) if lookup is None else list(set(lookup))
            already = self.existing_ids(wanted, role=role)
            if already or len(keep) != len(events):
                events = events.select([i for i in keep if events.event_id[i] not in already])
        if len(events):
            self._insert_events(events, role)
        if len(failed):
            self.insert_columns(
                "failed_events",
                failed.columns(),
                names=_FAILED_NAMES,
                types=_FAILED_TYPES,
                token=failed_token(failed),
                role=role,
            )
        return already

    def _writer_role(self) -> str:
        """Return the calling thread's writer role, so inserts on several threads overlap."""
        role: str | None = getattr(self._writers, "role", None)
        if role is None:
            with self._client_guard:
                self._writer_threads += 1
                role = "writer" if self._writer_threads == 1 else f"writer-{self._writer_threads}"
            self._writers.role = role
        return role

    def _insert_events(self, events: EventColumns, role: str) -> None:
        token = event_token(events.event_id)
        rollup = self._rollup
        if rollup is None:
            self.insert_columns(
                "events",
                events.columns(),
                names=_EVENT_NAMES,
                types=_EVENT_TYPES,
                token=token,
                role=role,
            )
            return
        with self._insert_lock:
            rollup.load()
        seq = rollup.begin()
        stored = 0
        try:
            self.insert_columns(
                "events",
                [*events.columns(), [seq] * len(events)],
                names=[*_EVENT_NAMES, SEQ_COLUMN],
                types=[*_EVENT_TYPES, "UInt64"],
                token=token,
                role=role,
            )
            stored = len(events)
        finally:
            rollup.finish(seq, stored)

    def insert_columns(
        self,
        table: str,
        columns: Sequence[Sequence[Any]],
        *,
        names: list[str],
        types: list[str],
        token: str,
        role: str = "writer",
    ) -> None:
        """Insert column-oriented rows with a deduplication token, retrying transient failures."""
        client = self.client(role)
        settings = {
            **self.options.insert_settings(embedded=self.target.engine == "chdb"),
            "insert_deduplication_token": token,
        }

        def attempt() -> None:
            context = client.create_insert_context(
                table, names, column_type_names=types, column_oriented=True, settings=settings
            )
            try:
                client.insert(data=columns, context=context)
            finally:
                # The context refers to itself (a bound method in its own dict): left
                # alone, it and every row it holds wait for the garbage collector.
                vars(context).clear()

        self._retrying(f"insert into {table}", attempt)

    def command(
        self,
        sql: str,
        parameters: dict[str, Any] | None = None,
        *,
        settings: dict[str, Any] | None = None,
        role: str = "writer",
    ) -> None:
        """Run a statement that returns no rows (DDL, mutations, INSERT ... SELECT)."""
        client = self.client(role)
        self._run(lambda: client.command(sql, parameters=parameters, settings=settings))

    def query(
        self, sql: str, parameters: dict[str, Any] | None = None, *, role: str = "reader"
    ) -> list[tuple[Any, ...]]:
        """Run a read query (on the reader client unless told) and return its rows."""
        client = self.client(role)
        return list(self._run(lambda: client.query(sql, parameters=parameters).result_rows))

    def describe(self) -> str:
        """Return where the store is, fit for logs (never a password)."""
        return self.target.describe()

    def ping(self) -> bool:
        """Return whether the store answers a trivial query."""
        try:
            self.client(HEALTH_ROLE).query("SELECT 1")
        except (ClickHouseError, StoreError, OSError) as exc:
            log.warning("store probe failed: %s", exc)
            return False
        return True

    @property
    def unclean_shutdown(self) -> bool:
        """Tell whether the embedded store's previous process died without closing it."""
        return self._lock is not None and self._lock.unclean

    def recover(self) -> int:
        """Roll up what an earlier process committed and did not; return those events.

        The embedded store only (store/rollup.py); after an unclean shutdown this is
        what keeps the duplicate filter and the KPI aggregates complete.
        """
        rollup = self._loaded_rollup()
        if rollup is None:
            return 0
        backlog = rollup.pending
        rollup.run()
        if self.unclean_shutdown:
            log.warning(
                "the previous process stopped without closing the store; rolled up the "
                "%d events it had committed and not rolled up",
                backlog,
            )
        return backlog

    def roll_up(self) -> int:
        """Bring the KPI aggregates up to the newest insert; return events rolled up.

        Only the embedded store rolls up (store/rollup.py); on a server the views do.
        """
        rollup = self._loaded_rollup()
        return rollup.run() if rollup is not None else 0

    def trim_memory(self, *, code: memory.CodeRelease = "") -> int:
        """Give back what the embedded engine holds unused; see store/memory.py."""
        if self.target.engine != "chdb":
            return 0
        self.command(memory.PURGE_SQL, role=memory.ROLE)
        if code == "evict":
            return memory.release_code_pages(memory.engine_library_dir())
        return memory.code_mappings().unmap() if code == "unmap" else 0

    def _loaded_rollup(self) -> Rollup | None:
        """Return the embedded store's roll-up, its state read (None on a server)."""
        if self._rollup is not None:
            with self._insert_lock:  # the newest number is read while no insert runs
                self._rollup.load()
        return self._rollup

    @property
    def rollup_pending(self) -> int:
        """Return the events committed by this process that wait for a roll-up."""
        return self._rollup.pending if self._rollup is not None else 0

    def close(self) -> None:
        """Roll up, close every client and release the data directory."""
        if self._rollup is not None and self._clients:
            try:
                self.roll_up()
            except StoreError as exc:  # the next start rolls up what is left
                log.warning("the last KPI roll-up failed: %s", exc)
        with self._client_guard:
            clients, self._clients = self._clients, {}
        for role, client in clients.items():
            try:
                client.close()
            except Exception:  # closing must go on for the other clients
                log.exception("closing the %s store client failed", role)
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def _retrying(self, what: str, call: Callable[[], Any]) -> Any:
        return retrying(
            call,
            what=what,
            context=f"{self.target.describe()} failed",
            attempts=self.options.insert_attempts,
            within_seconds=self.options.query_timeout_seconds,
        )

    def _run(self, call: Callable[[], Any]) -> Any:
        return classified(call, f"{self.target.describe()} failed")
