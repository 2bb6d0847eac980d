"""A test fixture that serves ClickHouse's HTTP interface on loopback and runs each request in chDB.

What it is: the real ClickHouse engine (chDB, in a child process, so the test process
stays free to open its own embedded store) behind the parts of the HTTP protocol
clickhouse-connect uses: the statement in the body and/or the ``query`` URL parameter,
settings and ``param_*`` bind values as URL parameters (or multipart form fields),
``database``, Basic authentication, request ``Content-Encoding`` and response
compression (``enable_http_compression`` + ``Accept-Encoding``), Native data in and
out, ``/ping``, and the ``X-ClickHouse-*`` headers (Summary, Query-Id, Format,
Timezone, Exception-Code).

What it is not: a ClickHouse server. No sessions, no progress headers, no native TCP
protocol, no clusters or Keeper (ON CLUSTER and Replicated engines fail), every
error is HTTP 500 except authentication (403), and one user.

For fault tests it also answers ``POST /fault?mode=...`` (not part of ClickHouse):
``503`` answers 503, ``drop`` closes the connection unanswered, ``stall`` holds the
request until the fault is cleared, ``drop_after`` executes the statement and then
closes the connection (the "did it commit?" case). ``times`` limits a fault to the
next N matching requests, ``match`` to statements containing a string.
``GET /requests`` returns the recorded requests (parameters, encodings, statement head).
"""

from __future__ import annotations

import argparse
import base64
import email.parser
import email.policy
import gzip
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import urllib.parse
import urllib.request
import uuid
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import lz4.frame
from backports import zstd

# URL parameters that are part of the HTTP protocol, not settings.
_TRANSPORT = frozenset(
    {"query", "database", "query_id", "session_id", "session_timeout", "session_check",
     "compress", "decompress", "wait_end_of_query", "client_protocol_version",
     "default_format", "user", "password", "quota_key", "buffer_size", "role"}
)  # fmt: skip
_INSERT_DATA = re.compile(rb"^\s*INSERT\s+INTO\s.*?\bFORMAT\s+(\w+)\s?", re.S | re.I)
_RESULT = re.compile(
    r"^\s*(SELECT|WITH|SHOW|DESCRIBE|DESC|EXPLAIN|EXISTS)\b|\bFORMAT\s+\w+\s*$", re.I
)
_CODE = re.compile(r"Code: (\d+)\.")


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _decode(data: bytes, encoding: str) -> bytes:
    if encoding == "lz4":  # one frame per block, concatenated
        parts, used = [], 0
        while used < len(data):
            part, size = lz4.frame.decompress(data[used:], return_bytes_read=True)
            parts.append(part)
            used += size
        return b"".join(parts)
    codecs = {"zstd": zstd.decompress, "gzip": gzip.decompress, "deflate": zlib.decompress}
    return codecs[encoding](data) if encoding in codecs else data


def _encode(data: bytes, accept: str) -> tuple[bytes, str | None]:
    codecs = {
        "lz4": lz4.frame.compress,
        "zstd": zstd.compress,
        "gzip": gzip.compress,
        "deflate": zlib.compress,
    }
    for name in (n.strip() for n in accept.split(",")):
        if name in codecs:
            return codecs[name](data), name
    return data, None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # the test output stays quiet
        pass

    def do_GET(self) -> None:
        self.do_POST()

    def do_POST(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        params = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        body = self._body()
        if url.path == "/ping":
            return self._reply(200, b"Ok.\n")
        if url.path == "/fault":
            self.server.set_fault(params)
            return self._reply(204, b"")
        if url.path == "/requests":
            return self._reply(200, json.dumps(self.server.log).encode())
        body = _decode(body, self.headers.get("Content-Encoding", ""))
        if self.headers.get_content_type() == "multipart/form-data":
            raw = f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode() + body
            message = email.parser.BytesParser(policy=email.policy.default).parsebytes(raw)
            for part in message.iter_parts():  # type: ignore[attr-defined]
                name = part.get_param("name", header="content-disposition")
                params[name] = part.get_payload(decode=True).decode()
            body = b""
        query = params.get("query", "").encode()
        statement = query + b"\n" + body if query and body else query or body
        head = statement[:200].decode(errors="replace")
        self.server.record(params, self.headers, head)
        fault = self.server.take_fault(head)
        if fault == "503":
            return self._reply(503, b"Service Unavailable\n")
        if fault in ("drop", "stall"):
            if fault == "stall":
                self.server.cleared.wait(60)
            self.close_connection = True
            return None
        user, _, password = (
            base64.b64decode(self.headers.get("Authorization", "Basic Og==").split()[-1])
            .decode()
            .partition(":")
        )
        if password != self.server.password:
            return self._error(
                f"Code: 516. DB::Exception: {user}: Authentication failed. (AUTHENTICATION_FAILED)",
                status=403,
            )
        try:
            result, text = self._execute(params, statement)
        except Exception as exc:  # the engine's error becomes ClickHouse's error reply
            return self._error(str(exc)[str(exc).find("Code:") :])
        if fault == "drop_after":
            self.close_connection = True
            return None
        data, encoding = result.bytes() or b"", None
        if params.get("enable_http_compression") == "1":
            data, encoding = _encode(data, self.headers.get("Accept-Encoding", ""))
        headers = {
            "X-ClickHouse-Query-Id": params.get("query_id") or str(uuid.uuid4()),
            "X-ClickHouse-Timezone": "UTC",
            "X-ClickHouse-Summary": json.dumps(
                {
                    "read_rows": str(result.rows_read()),
                    "read_bytes": str(result.bytes_read()),
                    "written_rows": str(result.rows_read() if text.startswith("INSERT") else 0),
                    "elapsed_ns": str(int(result.elapsed() * 1e9)),
                }
            ),
        }
        if _RESULT.search(text):
            headers["X-ClickHouse-Format"] = "Native" if "FORMAT Native" in text else "TabSeparated"
        if encoding:
            headers["Content-Encoding"] = encoding
        return self._reply(200, data, headers)

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))
        parts = []
        while size := int(self.rfile.readline().split(b";")[0], 16):
            parts.append(self.rfile.read(size))
            self.rfile.readline()
        while self.rfile.readline().strip():  # trailers
            pass
        return b"".join(parts)

    def _execute(self, params: dict[str, str], statement: bytes) -> tuple[Any, str]:
        import chdb

        conn = chdb.connect(self.server.data_dir)
        try:
            conn.query("SET enable_http_compression = 0")  # a server's default; chDB's is 1
            if params.get("database"):
                conn.query(f"USE `{params['database']}`")
            for key, value in params.items():
                if key not in _TRANSPORT and not key.startswith("param_"):
                    conn.query(f"SET {key} = {_quote(value)}")
            bind = {k[6:]: v for k, v in params.items() if k.startswith("param_")}
            insert = _INSERT_DATA.match(statement)
            if insert is None or len(statement) == insert.end():
                text = statement.decode()
                return conn.query(text, "TabSeparated", params=bind), text.lstrip()
            with tempfile.NamedTemporaryFile(suffix=".bin") as data:
                data.write(statement[insert.end() :])
                data.flush()
                sql = statement[: insert.start(1)].decode().rsplit("FORMAT", 1)[0]
                text = f"{sql.strip()} FROM INFILE '{data.name}' FORMAT {insert.group(1).decode()}"
                return conn.query(text, "TabSeparated"), text
        finally:
            conn.close()

    def _error(self, message: str, *, status: int = 500) -> None:
        code = _CODE.search(message)
        headers = {"X-ClickHouse-Exception-Code": code.group(1) if code else "1002"}
        self._reply(status, f"{message} (version chDB)\n".encode(), headers)

    def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, data_dir: str, password: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.data_dir, self.password = data_dir, password
        self.log: list[dict[str, Any]] = []
        self.seen = 0
        self.fault: dict[str, str] = {}
        self.cleared = threading.Event()
        self.guard = threading.Lock()

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # clients hang up in fault tests
            super().handle_error(request, client_address)

    def set_fault(self, params: dict[str, str]) -> None:
        with self.guard:
            self.fault = params if params.get("mode") else {}
            (self.cleared.clear if self.fault else self.cleared.set)()

    def take_fault(self, head: str) -> str | None:
        with self.guard:
            if not self.fault or self.fault.get("match", "") not in head:
                return None
            mode = self.fault["mode"]
            if "times" in self.fault:
                left = int(self.fault["times"]) - 1
                self.fault = {**self.fault, "times": str(left)} if left else {}
            return mode

    def record(self, params: dict[str, str], headers: Any, head: str) -> None:
        with self.guard:
            self.seen += 1
            kept = ("Content-Encoding", "Accept-Encoding", "User-Agent")
            entry = {"n": self.seen, "params": params, "head": head}
            entry["headers"] = {k: headers[k] for k in kept if k in headers}
            self.log = [*self.log[-499:], entry]


class ClickHouseHTTP:
    """Run the fixture in a child process; `url`, `fault()`, `requests()`, `stop()`."""

    def __init__(self, data_dir: Path, *, password: str = "", tls: tuple[Path, Path] | None = None):
        command = [sys.executable, "-m", "tests.support.clickhouse_http", str(data_dir)]
        command += ["--tls", str(tls[0]), str(tls[1])] if tls else []
        # UTC like most servers, and like the X-ClickHouse-Timezone header says.
        env = {**os.environ, "CLICKHOUSE_HTTP_PASSWORD": password, "TZ": "UTC"}
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, env=env, text=True)
        line = self.process.stdout.readline() if self.process.stdout else ""
        if not line.startswith("port "):
            self.stop()
            raise RuntimeError(f"the ClickHouse HTTP fixture did not start: {line!r}")
        self.port = int(line.split()[1])
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self._control = f"http://127.0.0.1:{self.port}"
        if tls:  # the control calls need no TLS verification of the test's own fixture
            import ssl

            self._context: Any = ssl._create_unverified_context()
            self._control = self.url
        else:
            self._context = None

    def fault(self, mode: str | None, *, times: int | None = None, match: str = "") -> None:
        """Inject a fault (503, drop, stall, drop_after) into matching requests; None clears it."""
        query = {"mode": mode or "", "match": match, **({"times": str(times)} if times else {})}
        request = urllib.request.Request(
            f"{self._control}/fault?{urllib.parse.urlencode(query)}", method="POST"
        )
        urllib.request.urlopen(request, timeout=10, context=self._context).close()

    def requests(self, *, since: int = 0) -> list[dict[str, Any]]:
        """Return the recorded requests after number `since` (of the last 500), oldest first."""
        with urllib.request.urlopen(
            f"{self._control}/requests", timeout=10, context=self._context
        ) as reply:
            return [r for r in json.loads(reply.read()) if r["n"] > since]

    def mark(self) -> int:
        """Return the number of the last request recorded, for `requests(since=...)`."""
        recorded = self.requests()
        return int(recorded[-1]["n"]) if recorded else 0

    def stop(self) -> None:
        """Stop the child process."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout:
            self.process.stdout.close()


def main() -> None:
    """Serve until terminated; print the bound port first."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("data_dir")
    parser.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    args = parser.parse_args()
    import chdb

    anchor = chdb.connect(args.data_dir)  # keeps the engine open between requests
    server = _Server(args.data_dir, os.environ.get("CLICKHOUSE_HTTP_PASSWORD", ""))
    if args.tls:
        import ssl

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*args.tls)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    print(f"port {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    finally:
        anchor.close()


if __name__ == "__main__":
    main()
