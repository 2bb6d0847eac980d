"""The tool registry: go-live, seats, core actions, features and targets per tool, from YAML.

The file is validated at start-up; every error names the file, the tool (or declared
KPI) and the field. Tools not in the registry are still measured, without the
registry-derived figures (seat utilisation, go-live, target, feature breadth).

```yaml
tools:
  wiki:
    name: Wiki
    go_live: "2026-01-12"
    licensed_seats: 1200
    adoption_target: 0.6
    core_actions: [page_view, page_edit]
    features: [search, comments]
kpis:
  - name: wiki_editors
    help: People who edited a wiki page in the last 7 days.
    kind: users
    tool: wiki
    action: page_edit
    window: 7d
org_units: [sales, support]      # known before their first event (for activities)
activities:                      # docs/activities.md
  - id: wiki-roadshow-sales
    tool: wiki
    kind: roadshow
    title: Wiki roadshow at the sales offices
    start: "2026-03-02"          # a date is the whole UTC day; or a time, e.g. 2026-03-02T09:00Z
    end: "2026-03-04"
    org_units: [sales]           # none: every org unit
    link: https://intranet.example/wiki-roadshow
```
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Annotated, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

from uptake_server.errors import ConfigError

SLUG_PATTERN = r"^[a-z][a-z0-9_.\-]{0,63}$"
METRIC_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,80}$"
WINDOWS: dict[str, int] = {"1d": 1, "7d": 7, "28d": 28}

Slug = Annotated[str, StringConstraints(pattern=SLUG_PATTERN)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ToolSpec(_Strict):
    """What the registry says about one tool."""

    name: str = ""
    go_live: dt.date | None = None
    licensed_seats: int | None = Field(default=None, ge=1)
    adoption_target: float | None = Field(default=None, gt=0, le=1)
    core_actions: tuple[Slug, ...] = ()
    features: tuple[Slug, ...] = ()


class DeclaredKpi(_Strict):
    """A simple KPI declared in YAML: users who did an action in a window, or events per day."""

    name: Annotated[str, StringConstraints(pattern=METRIC_NAME_PATTERN)]
    help: str = Field(min_length=1)
    kind: Literal["users", "events_per_day"]
    action: Slug
    tool: Slug | None = None
    window: Literal["1d", "7d", "28d"] = "1d"


def _moment(value: object) -> object:
    # A bare date is a whole day, whether YAML parsed it or it was quoted.
    if isinstance(value, str) and len(value.strip()) == len("2026-01-12"):
        return dt.date.fromisoformat(value.strip())
    return value


Moment = Annotated[dt.datetime | dt.date, BeforeValidator(_moment)]
ActivityKind = Literal[
    "webinar", "training", "event", "coaching", "roadshow", "communication", "other"
]
ACTIVITY_KINDS: tuple[str, ...] = get_args(ActivityKind)


def moment_ms(moment: dt.datetime | dt.date, *, end: bool) -> int:
    """Return a date or time in ms: a date is its first ms, or with `end` its last; naive is UTC."""
    if not isinstance(moment, dt.datetime):
        day = moment + dt.timedelta(days=1) if end else moment
        ms = int(dt.datetime.combine(day, dt.time(), dt.UTC).timestamp() * 1000)
        return ms - 1 if end else ms
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)
    return int(aware.timestamp() * 1000)


class ActivitySpec(_Strict):
    """An adoption activity declared in YAML (docs/activities.md)."""

    id: Slug
    tool: Slug
    kind: ActivityKind
    title: str = Field(min_length=1, max_length=200)
    start: Moment
    end: Moment | None = None
    org_units: tuple[str, ...] = ()
    link: str = ""

    @property
    def start_ms(self) -> int:
        """Return the start in ms: a date starts at 00:00 UTC."""
        return moment_ms(self.start, end=False)

    @property
    def end_ms(self) -> int:
        """Return the end in ms: a date ends at its last millisecond; no end: as the start."""
        return moment_ms(self.end if self.end is not None else self.start, end=True)


class Registry(_Strict):
    """Every registered tool and declared KPI, the known org units and declared activities."""

    tools: dict[Slug, ToolSpec] = Field(default_factory=dict)
    kpis: tuple[DeclaredKpi, ...] = ()
    org_units: tuple[str, ...] = ()
    activities: tuple[ActivitySpec, ...] = ()

    def tool(self, tool: str) -> ToolSpec | None:
        """Return the spec of a tool, or None when it is not registered."""
        return self.tools.get(tool)

    def core_pairs(self) -> list[str]:
        """Return "tool/action" for every core action of every tool that has some."""
        return [f"{t}/{a}" for t, spec in self.tools.items() for a in spec.core_actions]

    def core_tools(self) -> list[str]:
        """Return the tools whose activity is narrowed to core actions."""
        return [t for t, spec in self.tools.items() if spec.core_actions]


EMPTY_REGISTRY = Registry()


def load_registry(path: str | Path | None) -> Registry:
    """Read and validate a registry file; an empty path means no registry."""
    if path is None or str(path) == "":
        return EMPTY_REGISTRY
    file = Path(path)
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read the tool registry {file}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"tool registry {file} is not valid YAML: {exc}") from None
    return parse_registry(raw, source=str(file))


def parse_registry(raw: object, *, source: str = "registry") -> Registry:
    """Validate a parsed registry document; errors name the source, tool and field."""
    if raw is None:
        return EMPTY_REGISTRY
    if not isinstance(raw, dict):
        raise ConfigError(f"tool registry {source}: the top level must be a mapping with 'tools'")
    try:
        registry = Registry.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(_describe(error, raw) for error in exc.errors())
        raise ConfigError(f"tool registry {source}: {problems}") from None
    for what, names in (
        ("KPI names", [k.name for k in registry.kpis]),
        ("activity ids", [a.id for a in registry.activities]),
    ):
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ConfigError(f"tool registry {source}: {what} repeated: {', '.join(duplicates)}")
    for spec in registry.activities:
        if spec.tool not in registry.tools:
            raise ConfigError(
                f"tool registry {source}: activity {spec.id!r} field tool: {spec.tool!r} is not "
                "a tool of this registry"
            )
    return registry


def _describe(error: object, raw: dict[str, object]) -> str:
    assert isinstance(error, dict)
    loc = [str(part) for part in error["loc"]]
    message = str(error["msg"])
    if len(loc) >= 2 and loc[0] == "tools":
        if loc[2:] == ["[key]"] or not re.fullmatch(SLUG_PATTERN, loc[1]):
            return f"tool id {loc[1]!r}: must be a lowercase slug (a-z, 0-9, '_', '-', '.')"
        where = f"tool {loc[1]!r}"
        field = ".".join(loc[2:]) or "(tool)"
        return f"{where} field {field}: {message}"
    for section, what, key in (("kpis", "KPI", "name"), ("activities", "activity", "id")):
        if len(loc) >= 2 and loc[0] == section:
            name = _entry_name(raw.get(section), loc[1], key)
            return f"{what} {name} field {'.'.join(loc[2:]) or f'({what.lower()})'}: {message}"
    return f"field {'.'.join(loc) or '(top level)'}: {message}"


def _entry_name(entries: object, index: str, key: str) -> str:
    """Return the name of a list entry (its `key` value) for messages, else its index."""
    if isinstance(entries, list) and index.isdigit() and int(index) < len(entries):
        entry = entries[int(index)]
        if isinstance(entry, dict) and key in entry:
            return repr(entry[key])
    return index
