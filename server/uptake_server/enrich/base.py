"""The enricher interface and discovery through the `uptake.enrichers` entry-point group.

An enricher sees each batch before validation, with raw user ids, and may fill
fields the event left empty. It never sees stored data and must not block for
long: it runs on the request path. An entry point names a factory that takes the
`Settings` and returns an `Enricher`, or None to stay off.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from typing import Protocol

from uptake_server.config import Settings
from uptake_server.errors import ConfigError

log = logging.getLogger(__name__)

ENRICHER_GROUP = "uptake.enrichers"


class EventFields(Protocol):
    """The fields of an incoming event an enricher may read and fill."""

    user_id: str
    org_unit: str
    feature: str
    tool: str
    action: str


class Enricher(Protocol):
    """Fill missing fields of incoming events, in place."""

    def enrich(self, events: Sequence[EventFields]) -> None:
        """Fill the empty fields this enricher knows about."""
        ...


def load_enrichers(settings: Settings) -> list[Enricher]:
    """Return the built-in CSV org-unit mapper (when configured) and every plugin enricher."""
    from uptake_server.enrich.csv_org_units import CsvOrgUnits

    found: list[Enricher] = []
    if settings.org_unit_csv:
        found.append(CsvOrgUnits(settings.org_unit_csv))
    for ep in entry_points(group=ENRICHER_GROUP):
        try:
            factory = ep.load()
            enricher = factory(settings)
        except Exception as exc:
            raise ConfigError(
                f"enricher entry point {ep.name!r} ({ep.value}) failed: {exc}"
            ) from exc
        if enricher is None:
            continue
        if not callable(getattr(enricher, "enrich", None)):
            raise ConfigError(f"enricher entry point {ep.name!r} gave an object without enrich()")
        log.info("enricher %s enabled", ep.name)
        found.append(enricher)
    return found


def chain(enrichers: Sequence[Enricher]) -> Callable[[Sequence[EventFields]], None] | None:
    """Return one callable running every enricher in order, or None when there are none."""
    if not enrichers:
        return None

    def run(events: Sequence[EventFields]) -> None:
        for enricher in enrichers:
            enricher.enrich(events)

    return run
