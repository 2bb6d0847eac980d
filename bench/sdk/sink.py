"""Sinks for the SDK benchmark, run in their own process: gRPC for Uptake, HTTP for the others.

Prints one line, "<grpc port> <http port>", once both listen; stops on SIGTERM.
"""

from __future__ import annotations

import signal
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc

from uptake.v1 import ingest_pb2, ingest_pb2_grpc


class Ingest(ingest_pb2_grpc.IngestServiceServicer):
    """Acknowledge every event."""

    def Ingest(
        self, request: ingest_pb2.IngestRequest, context: grpc.ServicerContext
    ) -> ingest_pb2.IngestResponse:
        """Accept the whole batch."""
        return ingest_pb2.IngestResponse(
            accepted=len(request.events) + len(request.columns.event_id)
        )


class Handler(BaseHTTPRequestHandler):
    """Read any POST body and answer 200 with a small JSON body, as PostHog and Segment do."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        """Drain the body and acknowledge."""
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = b'{"status": 1}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST

    def log_message(self, format: str, *args: object) -> None:
        """Stay quiet."""


def main() -> None:
    """Serve both sinks until SIGTERM."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    ingest_pb2_grpc.add_IngestServiceServicer_to_server(Ingest(), server)
    grpc_port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(grpc_port, http.server_address[1], flush=True)
    stop.wait()
    http.shutdown()
    server.stop(grace=1).wait()


if __name__ == "__main__":
    main()
