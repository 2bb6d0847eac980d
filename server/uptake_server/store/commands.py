"""Storage commands of ``uptake-server``: print the schema, purge one user."""

from __future__ import annotations

from uptake_server.config import Settings
from uptake_server.store import open_store, schema_context
from uptake_server.store.erasure import purge_user
from uptake_server.store.migrations import script


def print_schema(settings: Settings) -> int:
    """Print every schema statement as it would run for these settings; return the exit status."""
    print(script(schema_context(settings)), end="")
    return 0


def purge(settings: Settings, *, pseudonym: bytes) -> int:
    """Erase one user's rows, print what was removed per table; return the exit status."""
    store = open_store(settings)
    try:
        report = purge_user(store, pseudonym, schema_context(settings))
    finally:
        store.close()
    print(f"purged pseudonym {report.pseudonym}: {report.total} rows in {store.describe()}")
    width = max(len(table) for table in report.removed)
    for table, rows in report.removed.items():
        print(f"  {table:<{width}}  {rows}")
    return 0
