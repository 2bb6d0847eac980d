"""Privacy: minimum group size, complementary suppression, and the cardinality guard.

Pure functions over query rows; no I/O. The rules (docs/kpis.md, "Privacy"):

- A count of people is exported only when it is 0 or at least k.
- Org units are decided once per tool from active users, so every org-unit
  family folds the same units into `org_unit="(other)"`. A unit stays visible only
  when each of its "atoms" (active 1d, active 7d minus 1d, active 28d minus 7d) is
  0 or at least k: then no sum or difference of its series across windows counts
  fewer than k people. Withheld units fold into "(other)"; while "(other)" itself has
  an atom between 1 and k - 1, the smallest visible unit folds too (complementary
  suppression), so the per-tool total minus the visible units never reveals a
  small group. The cardinality guard folds all but the N largest units first.
- Per tool, active-user windows are exported in ascending order only when the
  difference to the last exported window is 0 or at least k.
- Lifecycle states new, returning and resurrected add up to 7-day active users,
  so if the withheld ones sum to 1..k-1, more are withheld.
- Ratios are withheld when a people count in them is withheld.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from uptake_server.kpi.definitions import OTHER, UNKNOWN, Kpi
from uptake_server.registry import WINDOWS

MIN_GROUP_SIZE = "min_group_size"
COMPLEMENTARY = "complementary"
CARDINALITY = "cardinality"
REASONS = (MIN_GROUP_SIZE, COMPLEMENTARY, CARDINALITY)

_ACTIVE = "active_users"
_LIFECYCLE = "lifecycle_users"
_LIFECYCLE_PARTITION = ("new", "returning", "resurrected")
# Ratios whose people counts are per-tool active-user windows.
_RATIO_WINDOWS = {"stickiness_ratio": ("1d", "28d"), "seat_utilisation_ratio": ("28d",)}
_WINDOW_NAMES = tuple(WINDOWS)


@dataclass(frozen=True, slots=True)
class Row:
    """One row of a KPI query."""

    kpi: str
    tool: str
    org_unit: str | None
    labels: tuple[str, ...]
    num: float
    den: float


@dataclass(frozen=True, slots=True)
class Series:
    """One exported sample: metric name, label pairs, value."""

    family: str
    labels: tuple[tuple[str, str], ...]
    value: float


@dataclass(slots=True)
class Protected:
    """The series that may be exported, and how many were withheld, by reason."""

    series: list[Series] = field(default_factory=list)
    suppressed: Counter[str] = field(default_factory=Counter)


def safe(count: float, k: int) -> bool:
    """Tell whether a count of people may be exported (0, or at least k)."""
    return count == 0 or count >= k


def family_name(kpi: Kpi, *, org_unit: bool) -> str:
    """Return the metric name of a KPI's per-tool or per-org-unit family."""
    return f"uptake_org_unit_{kpi.name}" if org_unit else f"uptake_{kpi.name}"


def protect(
    rows: Iterable[Row],
    *,
    kpis: Sequence[Kpi],
    k: int,
    max_org_units: int,
    max_tools: int,
    registered: Iterable[str] = (),
) -> Protected:
    """Apply the privacy rules and the cardinality guards to the rows of one refresh."""
    by_name = {kpi.name: kpi for kpi in kpis}
    out = Protected()
    grouped: dict[str, list[Row]] = {}
    for row in _normalise(rows):
        grouped.setdefault(row.tool, []).append(row)
    for tool in sorted(_kept_tools(grouped, set(registered), max_tools, out)):
        _protect_tool(grouped[tool], by_name, k, max_org_units, out)
    return out


def _normalise(rows: Iterable[Row]) -> list[Row]:
    merged: dict[tuple[str, str, str | None, tuple[str, ...]], list[float]] = {}
    for row in rows:
        unit = row.org_unit
        if unit is not None and unit in ("", UNKNOWN):
            unit = UNKNOWN
        key = (row.kpi, row.tool, unit, row.labels)
        if key in merged and unit is None:
            continue  # a per-tool row is never split; keep the first
        totals = merged.setdefault(key, [0.0, 0.0])
        totals[0] += row.num
        totals[1] += row.den
    return [
        Row(kpi, tool, unit, labels, n, d) for (kpi, tool, unit, labels), (n, d) in merged.items()
    ]


def _kept_tools(
    grouped: Mapping[str, list[Row]], registered: set[str], max_tools: int, out: Protected
) -> list[str]:
    def size(tool: str) -> float:
        return max(
            (r.num for r in grouped[tool] if r.kpi == _ACTIVE and r.org_unit is None), default=0
        )

    others = sorted((t for t in grouped if t not in registered), key=lambda t: (-size(t), t))
    kept = [t for t in grouped if t in registered] + others[:max_tools]
    for tool in others[max_tools:]:
        out.suppressed[CARDINALITY] += len(grouped[tool])
    return kept


def _protect_tool(
    rows: list[Row], kpis: Mapping[str, Kpi], k: int, max_org_units: int, out: Protected
) -> None:
    cells: dict[str, list[float]] = {}
    for row in rows:
        if row.kpi == _ACTIVE and row.org_unit is not None and row.labels[0] in WINDOWS:
            cells.setdefault(row.org_unit, [0.0] * len(WINDOWS))[
                _WINDOW_NAMES.index(row.labels[0])
            ] = row.num
    folded = fold_units(cells, k=k, max_org_units=max_org_units)
    other_safe = _atoms_safe([sum(cells[u][i] for u in folded) for i in range(len(WINDOWS))], k)
    windows = _tool_windows(rows, k, out)
    lifecycle = kpis.get(_LIFECYCLE)
    states = _lifecycle(rows, lifecycle, k, out)
    _no_derivable_group(windows, states, k, out)
    for row in windows.values():
        out.series.append(_series(f"uptake_{_ACTIVE}", row, row.num, ("window",)))
    if lifecycle is not None:
        for row in states.values():
            out.series.append(
                _series(family_name(lifecycle, org_unit=False), row, row.num, ("state",))
            )
    active = {w: r.num for w, r in windows.items()}
    tables: dict[tuple[str, tuple[str, ...]], list[Row]] = {}
    for row in rows:
        kpi = kpis.get(row.kpi)
        if kpi is None:
            continue
        if row.org_unit is not None:
            tables.setdefault((row.kpi, row.labels), []).append(row)
        elif row.kpi == _ACTIVE:
            continue  # handled by _tool_windows
        elif row.kpi == _LIFECYCLE:
            continue  # handled below, as a partition
        else:
            _tool_row(row, kpi, k, active, out)
    for (name, _), table in sorted(tables.items()):
        kpi = kpis.get(name)
        if kpi is not None and kpi.by_org_unit:
            _org_table(table, kpi, folded, other_safe, k, out)


def fold_units(
    cells: Mapping[str, Sequence[float]], *, k: int, max_org_units: int
) -> dict[str, str]:
    """Return the units folded into "(other)", each with the reason it was folded."""
    order = sorted(cells, key=lambda u: (*(-c for c in reversed(cells[u])), u))
    folded = {u: CARDINALITY for u in order[max_org_units:]}
    folded |= {u: MIN_GROUP_SIZE for u in order if u not in folded and not _atoms_safe(cells[u], k)}
    while folded:
        other = [sum(cells[u][i] for u in folded) for i in range(len(WINDOWS))]
        if _atoms_safe(other, k):
            break
        visible = [u for u in order if u not in folded]
        if not visible:
            break
        folded[visible[-1]] = COMPLEMENTARY
    return folded


def _atoms_safe(counts: Sequence[float], k: int) -> bool:
    previous = 0.0
    for count in counts:
        if not safe(count - previous, k):
            return False
        previous = count
    return True


def _tool_windows(rows: list[Row], k: int, out: Protected) -> dict[str, Row]:
    found = {r.labels[0]: r for r in rows if r.kpi == _ACTIVE and r.org_unit is None}
    exported: dict[str, Row] = {}
    last = 0.0
    for window in _WINDOW_NAMES:
        row = found.get(window)
        if row is None:
            continue
        if safe(row.num - last, k):
            exported[window] = row
            last = row.num
        else:
            out.suppressed[MIN_GROUP_SIZE] += 1
    return exported


def _people(row: Row, kpi: Kpi) -> list[float]:
    if not kpi.counts_people:
        return []
    if kpi.ratio and kpi.denominator_counts_people:
        return [row.num, row.den]
    return [row.num]


def _value(row: Row, kpi: Kpi) -> float | None:
    if not kpi.ratio:
        return row.num
    return row.num / row.den if row.den else None


def _tool_row(row: Row, kpi: Kpi, k: int, active: Mapping[str, float], out: Protected) -> None:
    value = _value(row, kpi)
    if value is None:
        return
    needs = _RATIO_WINDOWS.get(kpi.name, ())
    if all(safe(c, k) for c in _people(row, kpi)) and all(w in active for w in needs):
        out.series.append(_series(family_name(kpi, org_unit=False), row, value, kpi.labels))
    else:
        out.suppressed[MIN_GROUP_SIZE] += 1


def _lifecycle(rows: list[Row], kpi: Kpi | None, k: int, out: Protected) -> dict[str, Row]:
    if kpi is None:
        return {}
    states = {r.labels[0]: r for r in rows if r.kpi == kpi.name and r.org_unit is None}
    withheld = {s: MIN_GROUP_SIZE for s, r in states.items() if not safe(r.num, k)}
    while True:
        hidden = sum(states[s].num for s in withheld if s in _LIFECYCLE_PARTITION)
        visible = sorted(
            (s for s in _LIFECYCLE_PARTITION if s in states and s not in withheld),
            key=lambda s: (states[s].num, s),
        )
        if safe(hidden, k) or not visible:
            break
        withheld[visible[0]] = COMPLEMENTARY
    for reason in withheld.values():
        out.suppressed[reason] += 1
    return {s: r for s, r in sorted(states.items()) if s not in withheld}


# Kinds of people the per-tool counts tell apart: (activity level, lifecycle state).
# Level 3: active 1d; 2: active 7d, not 1d; 1: active 28d only.
_KINDS = [(3, s) for s in _LIFECYCLE_PARTITION] + [(2, s) for s in _LIFECYCLE_PARTITION]
_KINDS += [(1, "dormant"), (1, "")]
_LEVELS = {"1d": 3, "7d": 2, "28d": 1}


def _no_derivable_group(
    windows: dict[str, Row], states: dict[str, Row], k: int, out: Protected
) -> None:
    """Withhold per-tool counts until no sum or difference of them counts 1..k-1 people.

    Windows nest and lifecycle states split them (dormant lies in 28d minus 7d), so
    e.g. active 28d minus dormant is a group. Every combination with coefficients
    -1, 0, 1 that counts each kind of person 0 or 1 times is such a group; its size
    is the combination's value.
    """
    while True:
        series = [
            (("w", w), r.num, lambda kind, w=w: kind[0] >= _LEVELS[w]) for w, r in windows.items()
        ]
        series += [
            (("s", st), r.num, lambda kind, st=st: kind[1] == st) for st, r in states.items()
        ]
        leak = _smallest_leak(series, k)
        if leak is None:
            return
        states_in = sorted((v, key) for key, v in leak if key[0] == "s")
        kind, name = (states_in or sorted((v, key) for key, v in leak))[0][1]
        (states if kind == "s" else windows).pop(name)
        out.suppressed[COMPLEMENTARY] += 1


def _smallest_leak(series: list, k: int) -> list[tuple[tuple[str, str], float]] | None:  # type: ignore[type-arg]
    indicators = [[int(f(kind)) for kind in _KINDS] for _, _, f in series]
    for signs in itertools.product((0, 1, -1), repeat=len(series)):
        if not any(signs):
            continue
        counts = [
            sum(s * ind[i] for s, ind in zip(signs, indicators, strict=True))
            for i in range(len(_KINDS))
        ]
        if any(c not in (0, 1) for c in counts):
            continue
        value = sum(s * v for s, (_, v, _) in zip(signs, series, strict=True))
        if 0 < value < k:
            return [(key, v) for s, (key, v, _) in zip(signs, series, strict=True) if s]
    return None


def _org_table(
    table: list[Row],
    kpi: Kpi,
    folded: Mapping[str, str],
    other_safe: bool,
    k: int,
    out: Protected,
) -> None:
    visible: list[Row] = []
    other_num = other_den = 0.0
    other_rows = 0
    for row in table:
        reason = folded.get(row.org_unit or "")
        if reason is None:
            visible.append(row)
        else:
            out.suppressed[reason] += 1
            other_num += row.num
            other_den += row.den
            other_rows += 1
    if other_rows:
        other = Row(kpi.name, table[0].tool, OTHER, table[0].labels, other_num, other_den)
        if other_safe:
            visible.append(other)
        else:
            out.suppressed[MIN_GROUP_SIZE] += 1
    if not all(safe(c, k) for row in visible for c in _people(row, kpi)):
        # A plugin's counts that fail inside visible units: withhold the whole table,
        # so no per-tool total minus the rest can reveal the failing unit.
        out.suppressed[COMPLEMENTARY] += len(visible)
        return
    for row in visible:
        value = _value(row, kpi)
        if value is not None:
            out.series.append(_series(family_name(kpi, org_unit=True), row, value, kpi.labels))


def _series(family: str, row: Row, value: float, names: Sequence[str]) -> Series:
    labels: list[tuple[str, str]] = [("tool", row.tool)]
    if row.org_unit is not None:
        labels.append(("org_unit", row.org_unit))
    labels.extend(zip(names, row.labels, strict=True))
    return Series(family, tuple(labels), value)
