"""The Uptake client: track() in the caller's thread, delivery on one worker thread."""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Mapping
from datetime import datetime
from types import TracebackType

from uptake._delivery import Sender
from uptake._errors import ConfigurationError
from uptake._event import (
    Pseudonymiser,
    Record,
    SlugCache,
    check_org_unit,
    check_user_id,
    freeze_properties,
    timestamp_ms,
    uuid7,
)
from uptake._options import Mode, OnFull, Options, resolve
from uptake._spool import Spool
from uptake._stats import INVALID, QUEUE_FULL, SHUTDOWN, Counters, OnError, Stats
from uptake._sync import SyncDelivery
from uptake._transport import GrpcTransport, Transport
from uptake._worker import Worker

log = logging.getLogger("uptake")
_MAX_USER_ID_CHARS = 256
_DROP_LOG_INTERVAL = 10.0


class Client:
    """Send adoption events to an Uptake ingestion service.

    Every option left as None comes from its UPTAKE_* environment variable, else
    its default (docs/sdk.md lists them all). One client owns one background thread;
    create one per process and share it.

    Args:
        target: the server's gRPC address, "host:port" (UPTAKE_TARGET).
        api_key: sent as `authorization: Bearer <key>` call metadata (UPTAKE_API_KEY).
        mode: "background" (default) or "sync": send in the caller's thread.
        on_error: called on the worker thread with a Failure for events that will
            not be delivered (rejections with their reasons, drops).
        transport: deliver through this object instead of gRPC (see InMemoryTransport).
    """

    def __init__(
        self,
        target: str | None = None,
        *,
        api_key: str | None = None,
        mode: Mode | None = None,
        batch_size: int | None = None,
        max_batch_bytes: int | None = None,
        flush_interval: float | None = None,
        max_queue_size: int | None = None,
        on_full: OnFull | None = None,
        block_timeout: float | None = None,
        request_timeout: float | None = None,
        retry_initial: float | None = None,
        retry_max: float | None = None,
        retry_max_elapsed: float | None = None,
        gzip: bool | None = None,
        tls: bool | None = None,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        spool_dir: str | None = None,
        spool_max_bytes: int | None = None,
        pseudonym_key: str | None = None,
        strict: bool | None = None,
        atexit_timeout: float | None = None,
        on_error: OnError | None = None,
        transport: Transport | None = None,
    ) -> None:
        arguments = dict(locals())
        del arguments["self"], arguments["on_error"], arguments["transport"]
        self._options = options = resolve(arguments)
        self._on_error = on_error
        self._transport: Transport = transport if transport is not None else GrpcTransport(options)
        self._pseudonymiser = (
            Pseudonymiser(options.pseudonym_key) if options.pseudonym_key is not None else None
        )
        self._slugs = SlugCache()
        self._strict = options.strict
        self._max_queue = options.max_queue_size
        self._batch_size = options.batch_size
        self._block = options.on_full == "block"
        self._closed = False
        self._close_result = False
        self._last_drop_log = 0.0
        self._start()
        _live.add(self)

    def _start(self) -> None:
        """Build the per-process machinery: counters, queue, and worker or sync delivery."""
        options = self._options
        self._lock = threading.Lock()
        self._counters = Counters(self._on_error)
        self._spool: Spool | None = None
        if options.spool_dir is not None:
            try:
                self._spool = Spool(
                    options.spool_dir, max_bytes=options.spool_max_bytes, counters=self._counters
                )
            except OSError as error:
                raise ConfigurationError(
                    f"spool_dir={options.spool_dir!r} cannot be used: {error}"
                ) from None
        sender = Sender(self._transport, options, self._counters)
        self._queue: deque[Record] = deque()
        self._worker: Worker | None = None
        self._sync: SyncDelivery | None = None
        if options.mode == "sync":
            self._sync = SyncDelivery(
                sender=sender,
                counters=self._counters,
                spool=self._spool,
                pseudonymiser=self._pseudonymiser,
                max_batch_bytes=options.max_batch_bytes,
            )
        else:
            self._worker = Worker(
                self._queue,
                options=options,
                sender=sender,
                counters=self._counters,
                spool=self._spool,
                pseudonymiser=self._pseudonymiser,
            )
            self._worker.start()

    @property
    def options(self) -> Options:
        """Return the resolved options."""
        return self._options

    def track(
        self,
        user_id: str,
        action: str,
        *,
        tool: str,
        org_unit: str | None = None,
        feature: str | None = None,
        properties: Mapping[str, str] | None = None,
        timestamp: datetime | None = None,
    ) -> None:
        """Record that a user did `action` in `tool`; never blocks (in background mode).

        Raises TypeError or ValueError for invalid arguments when `strict` (the default);
        otherwise logs and counts them as invalid. Never raises for delivery problems.
        """
        slugs = self._slugs.known
        try:
            fast = (
                properties is None
                and timestamp is None
                and tool in slugs
                and action in slugs
                and type(user_id) is str
                and 0 < len(user_id) <= _MAX_USER_ID_CHARS
                and (org_unit is None or (type(org_unit) is str and len(org_unit) <= 128))
                and (feature is None or feature in slugs)
            )
        except TypeError:  # an unhashable argument: the slow path names it
            fast = False
        frozen = None
        if fast:
            ms = time.time_ns() // 1_000_000
        else:
            try:
                frozen, ms = self._check(
                    user_id, action, tool, org_unit, feature, properties, timestamp
                )
            except (TypeError, ValueError) as error:
                if self._strict:
                    raise
                self._counters.add(INVALID, 1)
                log.warning("uptake: invalid event not tracked: %s", error)
                return
        if self._closed:
            self._drop(SHUTDOWN, "the client is closed")
            return
        # The id carries the time of the call, whatever the event's timestamp says.
        id_ms = ms if timestamp is None else time.time_ns() // 1_000_000
        record = (uuid7(id_ms), ms, tool, action, user_id, org_unit, feature, frozen)
        worker = self._worker
        if worker is None:
            assert self._sync is not None
            self._sync.send(record)
            return
        queue = self._queue
        if len(queue) >= self._max_queue and not (
            self._block and worker.wait_for_room(self._options.block_timeout)
        ):
            self._drop(QUEUE_FULL, f"the queue is full ({self._max_queue:,} events)")
            return
        queue.append(record)
        if len(queue) >= self._batch_size:
            worker.wake()

    def _check(
        self,
        user_id: object,
        action: object,
        tool: object,
        org_unit: object,
        feature: object,
        properties: object,
        timestamp: object,
    ) -> tuple[tuple[tuple[str, str], ...] | None, int]:
        check_user_id(user_id)
        self._slugs.check("action", action)
        self._slugs.check("tool", tool)
        if org_unit is not None:
            check_org_unit(org_unit)
        if feature is not None:
            self._slugs.check("feature", feature)
        frozen = freeze_properties(properties) if properties is not None else None
        ms = timestamp_ms(timestamp) if timestamp is not None else time.time_ns() // 1_000_000
        return frozen, ms

    def _drop(self, outcome: str, why: str) -> None:
        self._counters.add(outcome, 1)
        now = time.monotonic()
        if now - self._last_drop_log >= _DROP_LOG_INTERVAL:
            self._last_drop_log = now
            log.warning("uptake: dropping events (%s): %s; see Client.stats()", outcome, why)

    def flush(self, timeout: float = 5.0) -> bool:
        """Send everything tracked so far; return within `timeout` seconds.

        Returns True when every event tracked before the call was delivered and none
        was dropped since the previous flush; False otherwise (see stats()).
        """
        if self._worker is not None:
            return self._worker.flush(timeout)
        assert self._sync is not None
        return self._sync.flush(timeout)

    def close(self, timeout: float = 5.0) -> bool:
        """Flush within `timeout` seconds, then stop; later events are dropped.

        Events still undelivered at the deadline go to the spool, if one is set, else
        are counted as `shutdown` drops. Returns True when everything was delivered.
        """
        with self._lock:
            if self._closed:
                return self._close_result
            self._closed = True
        _live.discard(self)
        try:
            delivery = self._worker if self._worker is not None else self._sync
            assert delivery is not None
            self._close_result = delivery.stop(timeout)
        finally:
            self._transport.close()
        return self._close_result

    def stats(self) -> Stats:
        """Return what happened to this client's events in this process so far."""
        delivery = self._worker if self._worker is not None else self._sync
        spooled = delivery.pending_in_spool() if delivery is not None else 0
        held = self._worker.unsettled() if self._worker is not None else 0
        return self._counters.snapshot(queued=len(self._queue) + held, spooled=spooled)

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _after_fork(self) -> None:
        """Give a forked child its own queue and worker; the parent sends what it queued."""
        self._transport.after_fork()
        if not self._closed:
            self._start()

    def _at_exit(self) -> None:
        if not self.close(self._options.atexit_timeout):
            log.warning("uptake: some events were not delivered at exit: %s", self.stats())


# Open clients of this process, for the fork and exit hooks. Strong references: a
# client dropped without close() still gets its events flushed at exit.
_live: set[Client] = set()


def _after_fork_in_child() -> None:
    for client in list(_live):
        client._after_fork()


def _at_exit() -> None:
    for client in list(_live):
        client._at_exit()


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_at_exit)
