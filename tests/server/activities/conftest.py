"""Fixtures of the activity tests: one embedded store per module, emptied between examples."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator, Sequence

import pytest

from tests.server.kpi.conftest import KpiStore
from uptake_server.activities.effect import Effect, plan_all
from uptake_server.activities.measure import Measurer
from uptake_server.activities.model import Activity
from uptake_server.cli import main
from uptake_server.registry import Registry


class EffectStore(KpiStore):
    """An embedded store that measures activities on the events loaded into it."""

    def reset(self) -> None:
        super().reset()
        self.reader.command("TRUNCATE TABLE activities")

    def effects(
        self, activities: Sequence[Activity], registry: Registry, *, k: int, now: dt.datetime
    ) -> dict[str, Effect]:
        measurer = Measurer(self.reader, registry=registry, k=k)
        found = measurer.measure(plan_all(activities), now=now)
        return {effect.activity.id: effect for effect in found}


@pytest.fixture(scope="module")
def effect_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EffectStore]:
    opened = EffectStore(tmp_path_factory.mktemp("activities") / "store")
    yield opened
    opened.store.close()


@pytest.fixture
def empty_store(effect_store: EffectStore) -> EffectStore:
    effect_store.reset()
    return effect_store


def cli(argv: Sequence[str]) -> int:
    """Run `uptake-server` in-process, keeping the log handlers the test process had.

    The command line points the root logger at the stderr of the moment: here the
    test's captured one, which closes when the test ends.
    """
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        return main(list(argv))
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
