"""How batches reach the server: the Transport protocol and its gRPC implementation."""

from __future__ import annotations

import threading
from typing import Protocol, runtime_checkable

import grpc

from uptake._errors import TransportError
from uptake._options import MAX_MESSAGE_BYTES, Options
from uptake._status import retry_delay
from uptake._version import CLIENT_NAME
from uptake.v1.ingest_pb2 import IngestRequest, IngestResponse
from uptake.v1.ingest_pb2_grpc import IngestServiceStub

_STATUS_DETAILS_KEY = "grpc-status-details-bin"


@runtime_checkable
class Transport(Protocol):
    """Something that delivers one IngestRequest and returns the server's answer."""

    def send(self, request: IngestRequest, *, timeout: float) -> IngestResponse:
        """Send one request; raise TransportError for any status other than OK."""
        ...

    def close(self) -> None:
        """Release resources and abort a send in progress; later sends fail."""
        ...

    def after_fork(self) -> None:
        """Prepare for use in a freshly forked child process."""
        ...


class GrpcTransport:
    """Send requests over one lazily opened gRPC channel."""

    def __init__(self, options: Options) -> None:
        self._options = options
        self._metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {options.api_key}"),) if options.api_key else ()
        )
        self._lock = threading.Lock()
        self._channel: grpc.Channel | None = None
        self._stub: IngestServiceStub | None = None
        self._closed = False
        # Channels inherited across fork are kept, never closed: closing one in the
        # child could shut down a socket the parent still uses.
        self._inherited: list[grpc.Channel] = []

    def _open(self) -> IngestServiceStub:
        with self._lock:
            if self._closed:
                raise TransportError("CANCELLED", "the transport is closed")
            if self._stub is None:
                self._channel = self._new_channel()
                self._stub = IngestServiceStub(self._channel)
            return self._stub

    def _new_channel(self) -> grpc.Channel:
        options = self._options
        channel_options = [
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.primary_user_agent", CLIENT_NAME),
        ]
        compression = grpc.Compression.Gzip if options.gzip else grpc.Compression.NoCompression
        if not options.secure:
            return grpc.insecure_channel(
                options.target, options=channel_options, compression=compression
            )
        credentials = grpc.ssl_channel_credentials(
            root_certificates=_read(options.ca_file),
            private_key=_read(options.key_file),
            certificate_chain=_read(options.cert_file),
        )
        return grpc.secure_channel(
            options.target, credentials, options=channel_options, compression=compression
        )

    def send(self, request: IngestRequest, *, timeout: float) -> IngestResponse:
        """Send one request; raise TransportError for any status other than OK."""
        stub = self._open()
        try:
            response: IngestResponse = stub.Ingest(
                request, timeout=max(timeout, 0.001), metadata=self._metadata
            )
        except grpc.RpcError as error:
            raise _transport_error(error) from None
        return response

    def close(self) -> None:
        """Close the channel, which also ends a call in progress with CANCELLED."""
        with self._lock:
            self._closed = True
            channel, self._channel, self._stub = self._channel, None, None
        if channel is not None:
            channel.close()

    def after_fork(self) -> None:
        """Forget the parent's channel; the child opens its own on the next send."""
        if self._channel is not None:
            self._inherited.append(self._channel)
        self._lock = threading.Lock()
        self._channel = None
        self._stub = None


def _read(path: str | None) -> bytes | None:
    if path is None:
        return None
    with open(path, "rb") as handle:
        return handle.read()


def _transport_error(error: grpc.RpcError) -> TransportError:
    code = error.code() if isinstance(error, grpc.Call) else None
    details = error.details() if isinstance(error, grpc.Call) else None
    delay = None
    if isinstance(error, grpc.Call):
        for key, value in error.trailing_metadata() or ():
            if key == _STATUS_DETAILS_KEY and isinstance(value, bytes):
                delay = retry_delay(value)
    name = code.name if code is not None else "UNKNOWN"
    return TransportError(name, details or str(error), retry_after=delay)
