"""SDK clients that remember which events the server acknowledged, for loss tests."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import uptake
from uptake._errors import TransportError
from uptake._transport import GrpcTransport
from uptake.v1.ingest_pb2 import IngestRequest, IngestResponse


class RecordingTransport:
    """The SDK's gRPC transport, remembering every event id an OK answer acknowledged."""

    def __init__(self, options: uptake.Options, ledger: Ledger) -> None:
        self._inner = GrpcTransport(options)
        self._ledger = ledger

    def send(self, request: IngestRequest, *, timeout: float) -> IngestResponse:
        """Send through gRPC; record the acknowledged ids, or the failure."""
        try:
            response = self._inner.send(request, timeout=timeout)
        except TransportError as error:
            self._ledger.failed(error.code)
            raise
        rejected = {r.index for r in response.rejections}
        events = uptake.RecordedEvent.of_request(request)
        ids = [e.event_id.bytes for i, e in enumerate(events) if i not in rejected]
        self._ledger.acknowledge(ids)
        return response

    def close(self) -> None:
        """Close the channel."""
        self._inner.close()

    def after_fork(self) -> None:
        """Forget the parent's channel."""
        self._inner.after_fork()


@dataclass
class Ledger:
    """Acknowledged event ids (with repeats, as answered) and failed sends by status."""

    acknowledged: list[bytes] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def acknowledge(self, ids: list[bytes]) -> None:
        with self._lock:
            self.acknowledged.extend(ids)

    def failed(self, code: str) -> None:
        with self._lock:
            self.failures[code] += 1

    def count(self) -> int:
        with self._lock:
            return len(self.acknowledged)

    def wait_for(self, count: int, timeout: float = 60) -> None:
        """Wait until at least `count` acknowledgements arrived."""
        deadline = time.monotonic() + timeout
        while self.count() < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {self.count()} of {count} events acknowledged")
            time.sleep(0.02)


class Producers:
    """Threads that each track events through their own client until stopped."""

    def __init__(
        self,
        target: str,
        ledger: Ledger,
        *,
        clients: int,
        api_key: str | None,
        events_per_second: int = 1000,
    ) -> None:
        self._burst = max(1, events_per_second // 100)
        options = uptake.Options(
            target=target,
            api_key=api_key,
            batch_size=100,
            flush_interval=0.02,
            max_queue_size=200_000,
            request_timeout=5.0,
            retry_initial=0.05,
            retry_max=0.5,
        )
        self.clients = [
            uptake.Client(
                target,
                api_key=api_key,
                batch_size=options.batch_size,
                flush_interval=options.flush_interval,
                max_queue_size=options.max_queue_size,
                request_timeout=options.request_timeout,
                retry_initial=options.retry_initial,
                retry_max=options.retry_max,
                transport=RecordingTransport(options, ledger),
            )
            for _ in range(clients)
        ]
        self.tracked = [0] * clients
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._produce, args=(n,), daemon=True) for n in range(clients)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def _produce(self, number: int) -> None:
        client = self.clients[number]
        while not self._stop.is_set():
            for _ in range(self._burst):
                n = self.tracked[number]
                client.track(f"user-{number}-{n % 500}@example.com", "view", tool="wiki")
                self.tracked[number] = n + 1
            time.sleep(0.01)

    def finish(self, timeout: float = 60) -> list[uptake.Stats]:
        """Stop tracking, deliver what is queued, close the clients; return their stats."""
        self._stop.set()
        for thread in self._threads:
            thread.join()
        for client in self.clients:
            client.flush(timeout)
        stats = [client.stats() for client in self.clients]
        for client in self.clients:
            client.close(5)
        return stats
