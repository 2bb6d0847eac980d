"""`uptake-server activities add|list|remove|report`: record activities and read their effect.

The command works on the store the settings name. The embedded store admits one
process per data directory, so while a server runs on it the command sends the same
request to that server's ActivityService instead (the gRPC address setting; with
`--api-key-file` when the server requires keys), and reads back what it answers.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from rich.console import Console
from rich.table import Table

from uptake_server.activities.effect import MEASURED, Effect, Group
from uptake_server.activities.model import KINDS, Activity, ActivityError
from uptake_server.config import Settings
from uptake_server.errors import StoreLocked
from uptake_server.registry import moment_ms


class Activities(Protocol):
    """What the commands do, on the store or through a running server."""

    min_group_size: int

    def add(self, draft: Activity) -> Activity: ...
    def find(self, *, tool: str | None, limit: int) -> list[Activity]: ...
    def remove(self, activity_id: str) -> Activity: ...
    def report(self, *, tool: str, activity_id: str) -> list[Effect]: ...


def add_arguments(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> list[Any]:
    """Add `activities` and its actions; return the parsers that take the setting flags."""
    parser = commands.add_parser(
        "activities", help="record adoption activities and report their measured effect"
    )
    actions = parser.add_subparsers(dest="activities_command", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="record an activity")
    add.add_argument("--id", default="", help="a slug (default: made from kind, tool and date)")
    add.add_argument("--tool", required=True, help="the tool the activity promotes")
    add.add_argument("--kind", required=True, choices=KINDS)
    add.add_argument("--title", required=True, help="what people saw, e.g. 'CRM roadshow'")
    add.add_argument(
        "--start", required=True, help="a UTC date (2026-03-02: the whole day) or time"
    )
    add.add_argument("--end", help="a UTC date or time (default: as the start)")
    add.add_argument(
        "--org-unit",
        action="append",
        default=[],
        dest="org_units",
        help="an org unit it targeted (repeat; none: every org unit)",
    )
    add.add_argument("--link", default="", help="http(s) link to the material")
    listing = actions.add_parser("list", help="show recorded activities, newest first")
    listing.add_argument("--tool", help="only this tool")
    listing.add_argument("--limit", type=int, default=100, help="at most N (default 100)")
    remove = actions.add_parser("remove", help="remove an activity (not one from the registry)")
    remove.add_argument("activity_id", help="the id shown by `activities list`")
    report = actions.add_parser(
        "report", help="the measured effect of each activity, with its group sizes"
    )
    report.add_argument("--tool", default="", help="only this tool")
    report.add_argument("--id", default="", dest="only", help="only this activity")
    every = [add, listing, remove, report]
    for action in every:
        action.add_argument(
            "--api-key-file",
            type=Path,
            help="file holding an API key with the activities permission, for a running server",
        )
    for action in (listing, report):
        action.add_argument("--format", choices=("table", "json"), default="table")
    return every


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Run one `activities` action; return the exit status."""
    with _opened(settings, args) as book:
        command = args.activities_command
        if command == "add":
            draft = Activity(
                id=args.id,
                tool=args.tool,
                kind=args.kind,
                title=args.title,
                start_ms=_moment(args.start, end=False, flag="--start"),
                end_ms=_moment(args.end or args.start, end=True, flag="--end"),
                org_units=tuple(args.org_units),
                link=args.link,
            )
            added = book.add(draft)
            print(added.id)
            print(f"activity {added.id} recorded for {added.tool}", file=sys.stderr)
        elif command == "remove":
            removed = book.remove(args.activity_id)
            print(f"activity {removed.id} removed", file=sys.stderr)
        elif command == "list":
            _print_list(book.find(tool=args.tool, limit=args.limit), fmt=args.format)
        else:
            found = book.report(tool=args.tool, activity_id=args.only)
            _print_report(found, k=book.min_group_size, fmt=args.format)
    return 0


def _moment(text: str, *, end: bool, flag: str) -> int:
    value = text.strip()
    try:
        moment: dt.date = (
            dt.date.fromisoformat(value)
            if len(value) == len("2026-03-02")
            else dt.datetime.fromisoformat(value)
        )
    except ValueError:
        raise ActivityError(
            f"{flag} {text!r} is neither a date (2026-03-02) nor a time (2026-03-02T09:00Z)"
        ) from None
    return moment_ms(moment, end=end)


@contextmanager
def _opened(settings: Settings, args: argparse.Namespace) -> Iterator[Activities]:
    from uptake_server.store import open_store

    try:
        store = open_store(settings)
    except StoreLocked:
        from uptake_server.activities.remote import RemoteActivities

        remote = RemoteActivities(settings, api_key_file=args.api_key_file)
        try:
            yield remote
        finally:
            remote.close()
        return
    try:
        from uptake_server.activities.local import LocalActivities

        yield LocalActivities(settings, store)
    finally:
        store.close()


def _day(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M")


def _print_list(found: Sequence[Activity], *, fmt: str) -> None:
    if fmt == "json":
        for a in found:
            print(json.dumps(_activity_json(a)))
        return
    table = Table(title=f"Adoption activities ({len(found)})")
    for column in ("id", "tool", "kind", "start (UTC)", "end (UTC)", "org units", "title"):
        table.add_column(column)
    table.add_column("source")
    for a in found:
        units = ", ".join(a.org_units) or "(all)"
        table.add_row(
            a.id, a.tool, a.kind, _day(a.start_ms), _day(a.end_ms), units, a.title, a.source
        )
    Console(width=180).print(table)


def _activity_json(a: Activity) -> dict[str, Any]:
    return dataclasses.asdict(a)


def _people(group: Group, *, k: int) -> str:
    if group.withheld:
        return f"<{k}"
    return f"{group.people_before} / {group.people_after}"


def _means(group: Group) -> str:
    change = group.change
    if group.withheld or change is None:
        return "-"
    return f"{group.mean_before:.1f} -> {group.mean_after:.1f} ({change:+.1%})"


def _print_report(found: Sequence[Effect], *, k: int, fmt: str) -> None:
    if fmt == "json":
        for effect in found:
            print(json.dumps(_effect_json(effect)))
        return
    table = Table(
        title="Measured effect of adoption activities: 7-day active users, 14 days before and "
        f"after (k = {k})",
        caption="people: counted before / after; mean: daily 7-day active users, before -> "
        "after; uplift: change of targeted minus change of comparison (docs/activities.md)",
    )
    for column in ("activity", "tool", "kind", "days", "status"):
        table.add_column(column)
    for column in ("targeted people", "targeted mean", "comparison people", "comparison mean"):
        table.add_column(column, justify="right")
    table.add_column("uplift", justify="right")
    table.add_column("note")
    for e in found:
        p = e.plan.periods
        table.add_row(
            e.activity.id,
            e.activity.tool,
            e.activity.kind,
            f"{p.before_first:%m-%d}..{p.before_last:%m-%d} | {p.after_first:%m-%d}.."
            f"{p.after_last:%m-%d}",
            e.status,
            _people(e.targeted, k=k),
            _means(e.targeted),
            _people(e.comparison, k=k),
            _means(e.comparison),
            f"{e.uplift:+.1%}" if e.status == MEASURED and e.uplift is not None else "-",
            e.reason
            + (f"; overlaps {', '.join(e.plan.overlapping)}" if e.plan.overlapping else ""),
        )
    Console(width=200).print(table)


def _group_json(group: Group) -> dict[str, Any]:
    return {**dataclasses.asdict(group), "change": group.change}


def _effect_json(e: Effect) -> dict[str, Any]:
    p = e.plan.periods
    return {
        "activity": e.activity.id,
        "tool": e.activity.tool,
        "kind": e.activity.kind,
        "status": e.status,
        "reason": e.reason,
        "before": [p.before_first.isoformat(), p.before_last.isoformat()],
        "after": [p.after_first.isoformat(), p.after_last.isoformat()],
        "targeted": _group_json(e.targeted),
        "comparison": _group_json(e.comparison),
        "comparison_org_units": list(e.comparison_units),
        "uplift": e.uplift,
        "overlapping": list(e.plan.overlapping),
    }
