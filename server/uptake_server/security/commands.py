"""`uptake-server keys create|list|revoke`: manage the API keys file."""

from __future__ import annotations

import argparse
import json
import sys

from uptake_server.config import env_name, load_settings
from uptake_server.errors import ConfigError
from uptake_server.security.keyfile import KeyFile
from uptake_server.security.keys import PERMISSIONS, ApiKey


def add_key_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `keys` command and its subcommands."""
    keys = commands.add_parser("keys", help="create, list or revoke API keys")
    keys.add_argument(
        "--api-keys-file",
        help=f"the keys file [{env_name('api_keys_file')}]",
    )
    actions = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="make a key; prints it once, stores its hash")
    create.add_argument("--name", required=True, help="what the key is for, e.g. wiki-production")
    create.add_argument(
        "--tool",
        action="append",
        required=True,
        dest="tools",
        help="a tool the key may write (repeat for several; '*' for every tool)",
    )
    create.add_argument(
        "--events-per-second",
        type=float,
        help="rate limit of this key (default: the server's UPTAKE_RATE_LIMIT_EVENTS_PER_SECOND)",
    )
    create.add_argument(
        "--permission",
        action="append",
        dest="permissions",
        choices=PERMISSIONS,
        help="what the key may do: ingest (send events), activities (record adoption "
        "activities); repeat for both (default: ingest)",
    )
    listing = actions.add_parser("list", help="show the keys (ids, names, tools; never secrets)")
    listing.add_argument("--format", choices=("table", "json"), default="table")
    revoke = actions.add_parser("revoke", help="revoke a key by id (takes effect within 1 s)")
    revoke.add_argument("key_id", help="the id shown by `keys list`")


def run_key_command(args: argparse.Namespace) -> int:
    """Run one `keys` subcommand; return the exit status."""
    settings = load_settings({"api_keys_file": args.api_keys_file})
    if not settings.api_keys_file:
        raise ConfigError(f"no keys file: give --api-keys-file or set {env_name('api_keys_file')}")
    keys = KeyFile(settings.api_keys_file, setting=env_name("api_keys_file"))
    if args.keys_command == "create":
        key, entry = keys.create(
            name=args.name,
            tools=args.tools,
            events_per_second=args.events_per_second,
            permissions=args.permissions,
        )
        print(key)
        print(
            f"key {entry.id} ({entry.name}) for {', '.join(sorted(entry.tools))} added to "
            f"{keys.path}. The key is shown only this once: give it to the tool now "
            "(UPTAKE_API_KEY for the SDK).",
            file=sys.stderr,
        )
        return 0
    if args.keys_command == "revoke":
        entry = keys.revoke(args.key_id)
        print(f"key {entry.id} ({entry.name}) revoked at {entry.revoked_at}", file=sys.stderr)
        return 0
    entries = list(keys.load().keys.values())
    if args.format == "json":
        print(json.dumps([_public(e) for e in entries], indent=2))
        return 0
    print(f"{'ID':<13} {'NAME':<24} {'TOOLS':<24} {'CREATED':<21} REVOKED")
    for e in entries:
        tools = ",".join(sorted(e.tools))
        print(f"{e.id:<13} {e.name:<24} {tools:<24} {e.created_at:<21} {e.revoked_at or '-'}")
    return 0


def _public(entry: ApiKey) -> dict[str, object]:
    data = entry.as_entry()
    del data["sha256"]
    return data
