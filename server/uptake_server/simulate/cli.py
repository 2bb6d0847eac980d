"""`uptake-server simulate`: send the synthetic adoption through the SDK, with a progress bar.

The scenario's adoption activities are recorded through the server's ActivityService
once the events are sent (one already recorded under the same id is kept).
"""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import grpc
import yaml
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from uptake_server.simulate.model import (
    ActivityModel,
    default_scenario,
    generate,
    registry_document,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the simulate options to a parser."""
    parser.add_argument("--target", default="127.0.0.1:50051", help="the server's gRPC address")
    parser.add_argument("--seed", type=int, default=42, help="random seed (same seed, same data)")
    parser.add_argument("--days", type=int, default=56, help="days of history (at most 390)")
    parser.add_argument("--users", type=int, default=400, help="simulated people")
    parser.add_argument(
        "--registry-out", type=Path, help="also write a tool registry YAML for the simulated tools"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--api-key-file",
        type=Path,
        help="file holding an API key (ingest and activities permissions) for a server that "
        "requires keys",
    )
    parser.add_argument(
        "--no-activities", action="store_true", help="do not record the scenario's activities"
    )


def run(args: argparse.Namespace) -> int:
    """Run the simulation; return the exit status."""
    import uptake

    if not 1 <= args.days <= 390:
        raise SystemExit("uptake-server simulate: --days must be between 1 and 390")
    if args.users < 1:
        raise SystemExit("uptake-server simulate: --users must be at least 1")
    now = dt.datetime.now(dt.UTC)
    scenario = default_scenario(seed=args.seed, days=args.days, users=args.users)
    console = Console(stderr=True)
    if args.registry_out is not None:
        args.registry_out.write_text(yaml.safe_dump(registry_document(scenario, now=now)))
        console.print(f"registry written to {args.registry_out}")
    api_key = args.api_key_file.read_text().strip() if args.api_key_file else None
    client = uptake.Client(
        args.target,
        batch_size=1000,
        max_queue_size=200_000,
        on_full="block",
        api_key=api_key,
    )
    sent = 0
    with Progress(
        TextColumn("[bold]simulating[/] {task.fields[day]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("days  {task.fields[events]:>9,} events"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=args.no_progress,
    ) as progress:
        task = progress.add_task("days", total=scenario.days, day="", events=0)
        for day in generate(scenario, now=now):
            for event in day:
                client.track(
                    event.user_id,
                    event.action,
                    tool=event.tool,
                    org_unit=event.org_unit,
                    feature=event.feature,
                    timestamp=event.at,
                )
            sent += len(day)
            label = day[0].at.date().isoformat() if day else ""
            progress.update(task, advance=1, day=label, events=sent)
    delivered = client.close(timeout=60)
    stats = client.stats()
    console.print(
        f"sent {sent:,} events for {len(scenario.tools)} tools and {len(scenario.org_units)} "
        f"org units over {scenario.days} days: {stats.delivered:,} delivered, "
        f"{stats.rejected:,} rejected"
    )
    recorded = True
    if not args.no_activities:
        recorded = record_activities(
            args.target, scenario.activities, now=now, api_key=api_key, console=console
        )
    return 0 if delivered and stats.delivered == sent and recorded else 1


def record_activities(
    target: str,
    activities: Sequence[ActivityModel],
    *,
    now: dt.datetime,
    api_key: str | None,
    console: Console,
) -> bool:
    """Record the scenario's activities through the ActivityService; return whether all are."""
    from uptake.v1 import activity_pb2, activity_pb2_grpc
    from uptake_server.activities.model import Activity
    from uptake_server.activities.wire import to_proto

    metadata: tuple[tuple[str, str | bytes], ...] = (
        (("authorization", f"Bearer {api_key}"),) if api_key else ()
    )
    ok = True
    with grpc.insecure_channel(target) as channel:
        stub = activity_pb2_grpc.ActivityServiceStub(channel)
        for model in activities:
            start, end = model.span(now=now)
            activity = Activity(
                id=model.id,
                tool=model.tool,
                kind=model.kind,
                title=model.title,
                start_ms=int(start.timestamp() * 1000),
                end_ms=int(end.timestamp() * 1000),
                org_units=model.org_units,
            )
            request = activity_pb2.AddActivityRequest(activity=to_proto(activity))
            try:
                stub.AddActivity(request, metadata=metadata, timeout=30)
                console.print(f"activity {model.id} recorded ({model.kind}, {model.tool})")
            except grpc.RpcError as exc:
                if exc.code() == grpc.StatusCode.ALREADY_EXISTS:
                    console.print(f"activity {model.id} was recorded before; kept as it is")
                    continue
                console.print(f"activity {model.id} not recorded: {exc.details()}")
                ok = False
    return ok
