"""The event store, implemented once on clickhouse-connect for chDB and ClickHouse servers.

One client per role (admin, writer, reader, health, ...), never an auto-generated session id
(sessions would serialise a role's calls and pin them to one server); column-oriented inserts
with the column types given (no DESCRIBE per insert); compressed HTTP both ways; connect and
statement timeouts; transient failures retried a bounded number of times, safely: every
insert carries an ``insert_deduplication_token`` (store/tokens.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import clickhouse_connect
from clickhouse_connect.driver import options as driver_options
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError, DatabaseError, OperationalError

from uptake_server import __version__
from uptake_server.errors import StoreError, StoreLocked, StoreUnavailable
from uptake_server.model import EVENT_COLUMNS, FAILED_COLUMNS, EventColumns, FailedColumns
from uptake_server.store import memory
from uptake_server.store.dsn import StoreOptions, StoreTarget
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
# ClickHouse errors that say "not now" rather than "never": overload, timeouts,
# network trouble, replicas or Keeper away, a commit of unknown outcome.
TRANSIENT_CODES = frozenset(
    {3, 159, 202, 203, 209, 210, 241, 242, 252, 285, 286, 319, 425, 999, 1000}
)
RETRY_BASE_SECONDS = 0.2
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
        # Inserts into events, one at a time: their numbers follow commit order.
        self._insert_lock = threading.Lock()
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
            raise self._classify(exc, f"cannot connect to {target.describe()}") from exc

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

    def existing_ids(self, ids: Sequence[bytes]) -> set[bytes]:
        """Return which of these event ids the store already holds."""
        client = self.client("writer")
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
        already: set[bytes] = set()
        if len(events):
            keep: list[int] = []
            seen: set[bytes] = set()
            for index, event_id in enumerate(events.event_id):
                if event_id not in seen:
                    seen.add(event_id)
                    keep.append(index)
            already = self.existing_ids(list(seen) if lookup is None else list(set(lookup)))
            if already or len(keep) != len(events):
                events = events.select([i for i in keep if events.event_id[i] not in already])
        if len(events):
            self._insert_events(events)
        if len(failed):
            self.insert_columns(
                "failed_events",
                failed.columns(),
                names=_FAILED_NAMES,
                types=_FAILED_TYPES,
                token=failed_token(failed),
            )
        return already

    def _insert_events(self, events: EventColumns) -> None:
        token = event_token(events.event_id)
        rollup = self._rollup
        if rollup is None:
            self.insert_columns(
                "events", events.columns(), names=_EVENT_NAMES, types=_EVENT_TYPES, token=token
            )
            return
        with self._insert_lock:
            rollup.load()
            seq = rollup.next_seq()
            self.insert_columns(
                "events",
                [*events.columns(), [seq] * len(events)],
                names=[*_EVENT_NAMES, SEQ_COLUMN],
                types=[*_EVENT_TYPES, "UInt64"],
                token=token,
            )
            rollup.committed(seq, len(events))

    def insert_columns(
        self,
        table: str,
        columns: Sequence[Sequence[Any]],
        *,
        names: list[str],
        types: list[str],
        token: str,
    ) -> None:
        """Insert column-oriented rows with a deduplication token, retrying transient failures."""
        client = self.client("writer")
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
        started = time.monotonic()
        attempts = self.options.insert_attempts
        attempt = 1
        while True:
            try:
                return self._run(call)
            except StoreUnavailable as exc:
                spent = time.monotonic() - started
                if attempt >= attempts or spent > self.options.query_timeout_seconds:
                    raise
                delay = RETRY_BASE_SECONDS * 2 ** (attempt - 1)
                log.warning(
                    "%s failed (attempt %d of %d, retrying in %.1f s): %s",
                    what,
                    attempt,
                    attempts,
                    delay,
                    exc,
                )
                time.sleep(delay)
                attempt += 1

    def _run(self, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except (OperationalError, DatabaseError) as exc:
            raise self._classify(exc, f"{self.target.describe()} failed") from exc

    def _classify(self, exc: ClickHouseError, context: str) -> StoreError:
        code = getattr(exc, "code", None)
        if isinstance(exc, OperationalError) or code in TRANSIENT_CODES:
            return StoreUnavailable(f"{context} (unavailable): {exc}")
        return StoreError(f"{context}: {exc}")
