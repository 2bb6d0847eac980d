"""Command line: parse flags -> Settings -> build -> serve -> stop gracefully."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import Any

from uptake_server import __version__, collector
from uptake_server.config import Settings, load_settings
from uptake_server.errors import UptakeError
from uptake_server.logs import configure_logging

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2


def _add_setting_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("settings (each also an UPTAKE_* environment variable)")
    for f in dataclasses.fields(Settings):
        flag = "--" + f.name.replace("_", "-")
        help_text = f"{f.metadata['doc']} [{f.metadata['env']}, default {f.default!r}]"
        if isinstance(f.default, bool):
            group.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=None, help=help_text
            )
        else:
            group.add_argument(flag, type=type(f.default), default=None, help=help_text)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="uptake-server", description="Uptake: adoption metrics for collaboration tools."
    )
    parser.add_argument("--version", action="version", version=f"uptake-server {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser("serve", help="run the ingestion service")
    _add_setting_flags(serve)
    migrate = commands.add_parser("migrate", help="apply schema migrations and exit")
    _add_setting_flags(migrate)
    migrate.add_argument(
        "--print-sql", action="store_true", help="print the schema statements, apply nothing"
    )
    purge = commands.add_parser("purge", help="erase one user's stored rows (right to erasure)")
    purge.add_argument("--user", required=True, help="the user id, as the tools send it")
    _add_setting_flags(purge)
    events = commands.add_parser(
        "events", help="show stored or failed events (pseudonymised ids only)"
    )
    events.add_argument("--failed", action="store_true", help="show rejected events instead")
    events.add_argument("--tool", help="only events of this tool")
    events.add_argument("--limit", type=int, default=20, help="newest N events (default 20)")
    events.add_argument("--format", choices=("table", "json"), default="table")
    _add_setting_flags(events)
    kpi = commands.add_parser("kpi", help="run the KPI exporter only (no ingestion)")
    _add_setting_flags(kpi)
    kpis = commands.add_parser("kpis", help="show the current KPIs (the numbers of /metrics)")
    kpis.add_argument("--tool", help="only this tool")
    kpis.add_argument("--format", choices=("table", "json"), default="table")
    _add_setting_flags(kpis)
    from uptake_server.activities.commands import add_arguments as add_activity_arguments

    for action in add_activity_arguments(commands):
        _add_setting_flags(action)
    from uptake_server.simulate.cli import add_arguments

    add_arguments(commands.add_parser("simulate", help="send synthetic adoption through the SDK"))
    from uptake_server.security.commands import add_key_commands

    add_key_commands(commands)
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    names = {f.name for f in dataclasses.fields(Settings)}
    overrides: dict[str, Any] = {k: v for k, v in vars(args).items() if k in names}
    return load_settings(overrides)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the uptake-server command line; return the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "keys":
            from uptake_server.security.commands import run_key_command

            return run_key_command(args)
        settings = _settings(args)
        configure_logging(level=settings.log_level, fmt=settings.log_format)
        if args.command in ("serve", "kpi"):
            return _serve(settings, kpi_only=args.command == "kpi")
        if args.command == "migrate" and args.print_sql:
            from uptake_server.store.commands import print_schema

            return print_schema(settings)
        if args.command == "migrate":
            return _migrate(settings)
        if args.command == "purge":
            from uptake_server.ingest.pseudonym import Pseudonymiser, load_key
            from uptake_server.store.commands import purge

            return purge(settings, pseudonym=Pseudonymiser(load_key(settings))(args.user))
        if args.command == "kpis":
            from uptake_server.kpi.report import show_kpis

            return show_kpis(settings, tool=args.tool, fmt=args.format)
        if args.command == "simulate":
            from uptake_server.simulate.cli import run

            return run(args)
        if args.command == "activities":
            from uptake_server.activities.commands import run as run_activities

            return run_activities(settings, args)
        from uptake_server.inspection import show_events

        return show_events(
            settings, failed=args.failed, tool=args.tool, limit=args.limit, fmt=args.format
        )
    except UptakeError as exc:
        print(f"uptake-server: error: {exc}", file=sys.stderr)
        return EXIT_ERROR


def _migrate(settings: Settings) -> int:
    from uptake_server.store import open_store, schema_context

    store = open_store(settings)
    try:
        applied = store.migrate(schema_context(settings))
        from uptake_server.kpi.backfill import backfill_with_progress

        backfill_with_progress(store)
    finally:
        store.close()
    print("applied: " + ", ".join(applied) if applied else "schema is up to date")
    return EXIT_OK


def _serve(settings: Settings, *, kpi_only: bool = False) -> int:
    from uptake_server.app import Service
    from uptake_server.kpi.exporter import KpiService

    service = KpiService(settings) if kpi_only else Service(settings)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():
            _say(settings, "already stopping")
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        service.start()
        collector.tune()
        _announce(service)
        # A short wait, not one long one: a signal the kernel hands to another thread
        # runs its Python handler only once the main thread wakes up.
        while not stop.wait(0.5):
            pass
        _say(settings, "stopping (draining in-flight requests)")
    finally:
        service.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    _say(settings, "stopped")
    return EXIT_OK


def _say(settings: Settings, message: str) -> None:
    """Tell the operator on stderr: a plain line, or a log record when logs are JSON."""
    # JSON logs are read by machines: every line on stderr must be one object.
    if settings.log_format == "json":
        logging.getLogger(__name__).info("%s", message)
    else:
        print(f"uptake-server: {message}", file=sys.stderr, flush=True)


def _announce(service: Any) -> None:
    settings: Settings = service.settings
    lines = [
        f"Uptake {__version__} is running" + (" in DEV MODE" if settings.dev else ""),
        f"  gRPC ingest   {getattr(service, 'grpc_target', 'off (KPI exporter only)')}",
        f"  metrics       {service.metrics_url}",
        f"  store         {service.store.describe()}",
        f"  access        {_access(settings) if hasattr(service, 'grpc_target') else '-'}",
        f"  tracing       {settings.tracing if hasattr(service, 'grpc_target') else '-'}",
    ]
    if settings.dev:
        lines += [
            "  DEV MODE: "
            + ("" if settings.api_keys_file else "no authentication; ")
            + "the pseudonym key is kept in "
            f"{settings.data_path / 'pseudonym.key'}. Do not use dev mode in production.",
        ]
    if settings.log_format == "json":
        # One record, so a log pipeline that merges stdout and stderr sees JSON only.
        logging.getLogger(__name__).info("%s", "; ".join(line.strip() for line in lines))
        return
    lines.append("Press Ctrl-C to stop.")
    print("\n".join(lines), flush=True)


def _access(settings: Settings) -> str:
    keys = (
        f"API keys from {settings.api_keys_file}"
        if settings.api_keys_file
        else "OPEN: no API keys, anyone who reaches the port may send"
    )
    tls = "plaintext"
    if settings.tls_cert_file:
        tls = "mutual TLS" if settings.tls_client_ca_file else "TLS"
    return f"{keys}; {tls}"


if __name__ == "__main__":
    sys.exit(main())
