"""Draw the Uptake dashboards from the query answers the end-to-end test collected.

No Grafana runs here, so docs/images holds pictures drawn with matplotlib: each
dashboard's panels in its own grid layout, every value from the JSON that
tests/e2e/test_dashboards_e2e.py writes (the answers of a real Prometheus
scraping the real service). See docs/dashboards.md:

    UPTAKE_DASHBOARD_DATA=docs/images/data/dashboards.json.gz \\
        .venv/bin/python -m pytest tests/e2e/test_dashboards_e2e.py
    .venv/bin/python scripts/render_dashboards.py docs/images/data/dashboards.json.gz
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import io
import json
import math
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.dates as mdates
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import FuncFormatter
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.deploy.dashboards import dashboard_files, load_dashboard, panels  # noqa: E402

# Grafana's dark theme and classic palette.
BACKGROUND, PANEL, BORDER, TEXT, MUTED = "#111217", "#181b1f", "#2c3235", "#ccccdc", "#8e8e9a"
PALETTE = ["#73bf69", "#f2cc0c", "#8ab8ff", "#b877d9", "#f2495c", "#ff9830", "#5794f2", "#96d98d"]
NAMED = {"green": "#73bf69", "red": "#f2495c", "orange": "#ff9830", "blue": "#5794f2"}
ROW_INCHES, WIDTH_INCHES = 0.25, 16.0
Series = tuple[str, list[float], list[float]]  # legend, times, values


def short(value: float, decimals: int | None = None) -> str:
    """Return a number the way Grafana's "short" unit writes it."""
    for limit, suffix in ((1e9, " Bil"), (1e6, " Mil"), (1e3, " K")):
        if abs(value) >= limit:
            return f"{value / limit:.{1 if decimals is None else decimals}f}{suffix}"
    if decimals is not None:
        return f"{value:.{decimals}f}"
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.3g}"


def duration(seconds: float) -> str:
    """Return seconds as Grafana's "s" unit writes them."""
    for limit, unit in ((86400, "day"), (3600, "hour"), (60, "min")):
        if abs(seconds) >= limit:
            return f"{seconds / limit:.1f} {unit}"
    if abs(seconds) >= 1 or seconds == 0:
        return f"{seconds:.1f} s"
    return f"{seconds * 1000:.1f} ms"


def formatted(value: float, unit: str | None, decimals: int | None = None) -> str:
    """Return a value in a panel's unit."""
    if math.isnan(value):
        return "NaN"
    if unit == "percentunit":
        return f"{value * 100:.{1 if decimals is None else decimals}f}%"
    if unit == "s":
        return duration(value)
    text = short(value, decimals)
    return {"reqps": f"{text} req/s", "ops": f"{text} ops/s"}.get(unit or "", text)


def legend(template: str | None, labels: Mapping[str, str], ref_id: str) -> str:
    """Return a series' legend: the target's legendFormat with labels filled in."""
    if template and template != "__auto":
        return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template)
    shown = {k: v for k, v in labels.items() if k != "__name__"}
    return ", ".join(f"{k}={v}" for k, v in shown.items()) or labels.get("__name__", ref_id)


def threshold_color(value: float, defaults: Mapping[str, Any]) -> str:
    """Return the colour of the last threshold step a value reaches."""
    color = "blue"
    for step in defaults.get("thresholds", {}).get("steps", []):
        if step["value"] is None or value >= step["value"]:
            color = step["color"]
    return NAMED.get(color, color)


class Answers:
    """The collected answers of one run, by panel title and query refId."""

    def __init__(self, records: Sequence[Mapping[str, Any]], dashboard: str) -> None:
        self._by_key = {
            (r["name"], r["ref_id"]): r
            for r in records
            if r["dashboard"] == dashboard and r["kind"] == "panel"
        }

    def series(self, panel: Mapping[str, Any], *, live_only: bool) -> list[Series]:
        """Return each target's series over time (history, then the live scrapes)."""
        found: list[Series] = []
        for target in panel.get("targets", []):
            record = self._by_key.get((panel["title"], target["refId"]), {})
            merged: dict[str, list[list[Any]]] = {}
            parts = ["live"] if live_only else ["history", "live", "instant"]
            for part in parts:
                for item in record.get(part) or []:
                    name = legend(target.get("legendFormat"), item["metric"], target["refId"])
                    merged.setdefault(name, []).extend(item.get("values") or [item["value"]])
            for name, points in merged.items():
                points.sort(key=lambda p: float(p[0]))
                found.append((name, [float(p[0]) for p in points], [float(p[1]) for p in points]))
        return found

    def instant(self, panel: Mapping[str, Any]) -> list[tuple[str, dict[str, str], float]]:
        """Return (refId, labels, value) of each series, now (the last value of ranges)."""
        found = []
        for target in panel.get("targets", []):
            record = self._by_key.get((panel["title"], target["refId"]), {})
            for item in record.get("instant") or record.get("live") or []:
                point = item.get("value") or item["values"][-1]
                found.append((target["refId"], dict(item["metric"]), float(point[1])))
        return found


def draw_timeseries(ax: Axes, panel: Mapping[str, Any], answers: Answers, live: bool) -> None:
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    unit = defaults.get("unit")
    dashed = [
        re.compile(o["matcher"]["options"])
        for o in panel.get("fieldConfig", {}).get("overrides", [])
        if o["matcher"]["id"] == "byRegexp"
    ]
    negative = {
        o["matcher"]["options"]
        for o in panel.get("fieldConfig", {}).get("overrides", [])
        for prop in o["properties"]
        if prop["id"] == "custom.transform" and prop["value"] == "negative-Y"
    }
    stacked = defaults.get("custom", {}).get("stacking", {}).get("mode") == "normal"
    below: dict[float, float] = {}
    bases: list[str] = []
    for name, times, values in answers.series(panel, live_only=live):
        style = "--" if any(p.match(name) for p in dashed) else "-"
        base = re.sub(r" (target|weekly average)$", "", name) if style == "--" else name
        bases += [] if base in bases else [base]
        color = PALETTE[bases.index(base) % len(PALETTE)]
        if name in negative:
            values = [-v for v in values]
        elif stacked:
            floor = [below.get(t, 0.0) for t in times]
            values = [f + v for f, v in zip(floor, values, strict=True)]
            below.update(zip(times, values, strict=True))
        x, y = _broken(times, values)
        ax.plot(x, y, style, color=color, linewidth=1.2, label=name, marker=".", markersize=2)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: formatted(v, unit)))
    if defaults.get("min") is not None:
        ax.set_ylim(bottom=defaults["min"])
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S" if live else "%d %b"))
    ax.xaxis.set_major_locator(mdates.AutoDateLocator(maxticks=6))
    ax.grid(color=BORDER, linewidth=0.5)
    ax.tick_params(colors=MUTED, labelsize=6)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if ax.lines:
        ax.legend(
            loc="upper left", fontsize=5.5, frameon=False, labelcolor=TEXT, ncol=3, handlelength=1.5
        )


def _broken(times: Sequence[float], values: Sequence[float]) -> tuple[list[Any], list[float]]:
    """Return the points with a gap wherever a day of history is missing, as Grafana draws."""
    x: list[Any] = []
    y: list[float] = []
    for index, (moment, value) in enumerate(zip(times, values, strict=True)):
        if index and moment - times[index - 1] > 1.5 * 86400:
            x.append(dt.datetime.fromtimestamp(moment - 1, dt.UTC))
            y.append(math.nan)
        x.append(dt.datetime.fromtimestamp(moment, dt.UTC))
        y.append(value)
    return x, y


def draw_values(ax: Axes, panel: Mapping[str, Any], answers: Answers) -> None:
    """Draw a stat panel: one big coloured value per series."""
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    mappings = {
        key: option["text"]
        for mapping in defaults.get("mappings", [])
        for key, option in mapping.get("options", {}).items()
    }
    targets = {t["refId"]: t for t in panel.get("targets", [])}
    values = answers.instant(panel)
    for index, (ref_id, labels, value) in enumerate(values):
        x = (index + 0.5) / len(values)
        name = legend(targets[ref_id].get("legendFormat"), labels, ref_id)
        text = mappings.get(
            short(value), formatted(value, defaults.get("unit"), defaults.get("decimals"))
        )
        size = 20 if len(values) == 1 else max(8, 20 - 2 * len(values))
        color = threshold_color(value, defaults)
        ax.text(x, 0.45, text, ha="center", va="center", fontsize=size, color=color, weight="bold")
        if len(values) > 1:
            ax.text(x, 0.85, name, ha="center", va="center", fontsize=6, color=MUTED)


def draw_bars(ax: Axes, panel: Mapping[str, Any], answers: Answers) -> None:
    """Draw a horizontal bar gauge: one bar per series."""
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    targets = {t["refId"]: t for t in panel.get("targets", [])}
    values = answers.instant(panel)[:14]
    low = defaults.get("min", 0) or 0
    high = defaults.get("max") or max((v for _, _, v in values), default=1) or 1
    for index, (ref_id, labels, value) in enumerate(values):
        y = 1 - (index + 0.5) / max(len(values), 4)
        share = min(max((value - low) / (high - low), 0), 1)
        color = threshold_color(value, defaults)
        ax.add_patch(Rectangle((0.3, y - 0.035), 0.55, 0.07, color=BORDER))
        ax.add_patch(Rectangle((0.3, y - 0.035), 0.55 * share, 0.07, color=color))
        name = legend(targets[ref_id].get("legendFormat"), labels, ref_id)
        ax.text(0.28, y, name, ha="right", va="center", fontsize=6.5, color=TEXT)
        ax.text(
            0.87, y, formatted(value, defaults.get("unit")), va="center", fontsize=7, color=color
        )


def draw_table(ax: Axes, panel: Mapping[str, Any], answers: Answers) -> None:
    """Draw a table: instant series merged on their labels, organised as the panel says."""
    organize: dict[str, Any] = {}
    for transformation in panel.get("transformations", []):
        if transformation["id"] == "organize":
            organize = transformation["options"]
    rows: dict[tuple[tuple[str, str], ...], dict[str, float | str]] = {}
    single = len(panel.get("targets", [])) == 1
    for ref_id, labels, value in answers.instant(panel):
        labels.pop("__name__", None)
        row = rows.setdefault(tuple(sorted(labels.items())), dict(labels))
        row["Value" if single else f"Value #{ref_id}"] = value
    order = organize.get("indexByName") or {}
    columns = sorted({c for row in rows.values() for c in row}, key=lambda c: order.get(c, 99))
    names = [organize.get("renameByName", {}).get(c, c) for c in columns]
    units = {
        o["matcher"]["options"]: {p["id"]: p["value"] for p in o["properties"]}
        for o in panel.get("fieldConfig", {}).get("overrides", [])
        if o["matcher"]["id"] == "byName"
    }
    xs = [(i + 0.02) / len(columns) for i in range(len(columns))]
    for x, name in zip(xs, names, strict=True):
        ax.text(x, 0.95, name, fontsize=6.5, color=MUTED, weight="bold", va="top")
    for index, row in enumerate(sorted(rows.values(), key=lambda r: str(r.get(columns[0])))):
        y = 0.95 - (index + 1) * 0.11
        for x, column, name in zip(xs, columns, names, strict=True):
            cell = row.get(column, "")
            if isinstance(cell, float):
                spec = units.get(name, {})
                cell = formatted(cell, spec.get("unit"), spec.get("decimals"))
            ax.text(x, y, str(cell), fontsize=6.5, color=TEXT, va="top")


def draw_alerts(ax: Axes, panel: Mapping[str, Any], alerts: Sequence[Mapping[str, Any]]) -> None:
    """Draw an alert list: the pending and firing alerts its label filter selects."""
    options = panel.get("options", {})
    wanted = dict(re.findall(r'(\w+)="([^"]*)"', options.get("alertInstanceLabelFilter", "")))
    states = {state for state, on in options.get("stateFilter", {}).items() if on}
    shown = [
        a
        for a in alerts
        if a["state"] in states and all(a["labels"].get(k) == v for k, v in wanted.items())
    ]
    if not shown:
        ax.text(0.5, 0.5, "No alerts", ha="center", va="center", fontsize=8, color=MUTED)
    for index, alert in enumerate(shown[:12]):
        y = 0.92 - index * 0.08
        color = NAMED["red"] if alert["state"] == "firing" else NAMED["orange"]
        where = alert["labels"].get("tool") or alert["labels"].get("job", "")
        ax.text(0.02, y, alert["state"].upper(), fontsize=6.5, color=color, weight="bold")
        ax.text(0.16, y, f"{alert['labels']['alertname']}  {where}", fontsize=6.5, color=TEXT)


def panel_axes(
    figure: Figure, grid: Mapping[str, int], height: float, title: str, *, ticks: bool
) -> Axes:
    """Draw a panel's frame and title; return the axes inside it (with room for ticks)."""
    left, width = grid["x"] / 24, grid["w"] / 24
    top = 1 - (0.6 + grid["y"] * ROW_INCHES) / height
    box = grid["h"] * ROW_INCHES / height
    pad = 0.003
    frame = figure.add_axes((left + pad, top - box + pad, width - 2 * pad, box - 2 * pad))
    frame.set_facecolor(PANEL)
    frame.set_xticks([])
    frame.set_yticks([])
    for spine in frame.spines.values():
        spine.set_color(BORDER)
    frame.text(0.01, 0.97, title, fontsize=7.5, color=TEXT, va="top", weight="bold",
               transform=frame.transAxes)  # fmt: skip
    # Room for the title above, tick labels left and below.
    margin_left, margin_top, margin_bottom = 0.6 / WIDTH_INCHES, 0.3 / height, 0.25 / height
    if not ticks:
        margin_left, margin_bottom = 0.1 / WIDTH_INCHES, 0.1 / height
    inner = figure.add_axes((left + margin_left, top - box + margin_bottom,
                             width - margin_left - 0.1 / WIDTH_INCHES,
                             box - margin_top - margin_bottom))  # fmt: skip
    inner.set_facecolor(PANEL)
    return inner


def render(data: Mapping[str, Any], dashboard: Mapping[str, Any], run: str, out: Path) -> None:
    """Draw one dashboard into a PNG."""
    answers = Answers(data["runs"][run], dashboard["title"])
    live = dashboard.get("time", {}).get("from", "") in ("now-1h", "now-6h", "now-12h")
    layout = list(panels(dashboard))
    height = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in layout) * ROW_INCHES + 0.6
    figure = Figure(figsize=(WIDTH_INCHES, height), facecolor=BACKGROUND)
    taken = dt.datetime.fromtimestamp(data["generated_at"], dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    chosen = run.partition(":")[2]
    caption = dashboard["title"] + (f"  (tool = {chosen})" if chosen else "")
    span = "the live scrapes of the test" if live else "backfilled daily history, then live"
    note = f"real Prometheus answers, {taken}; time axis: {span}"
    figure.text(0.005, 1 - 0.2 / height, caption, fontsize=12, color=TEXT, weight="bold")
    figure.text(0.995, 1 - 0.2 / height, note, fontsize=7, color=MUTED, ha="right")
    for panel in layout:
        grid = panel["gridPos"]
        title = re.sub(r"\$\{?tool\}?", chosen or "All", panel["title"])
        if panel["type"] == "row":
            y = 1 - (0.6 + (grid["y"] + 0.5) * ROW_INCHES) / height
            figure.text(0.003, y, title, fontsize=9, color=TEXT, weight="bold", va="center")
            continue
        inner = panel_axes(figure, grid, height, title, ticks=panel["type"] == "timeseries")
        if panel["type"] == "timeseries":
            draw_timeseries(inner, panel, answers, live)
            continue
        inner.set_axis_off()
        inner.set_xlim(0, 1)
        inner.set_ylim(0, 1)
        if panel["type"] == "alertlist":
            draw_alerts(inner, panel, data["runs"].get("alerts", []))
        else:
            DRAW[panel["type"]](inner, panel, answers)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, facecolor=BACKGROUND)
    buffer.seek(0)
    # A 64-colour palette keeps the pictures small enough to commit.
    Image.open(buffer).convert("RGB").quantize(colors=64).save(out, optimize=True)


DRAW = {"stat": draw_values, "bargauge": draw_bars, "table": draw_table}


def main(argv: Sequence[str] | None = None) -> int:
    """Render every dashboard; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="JSON written by the end-to-end dashboards test")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    parser.add_argument("--tool", default="wiki", help="tool shown in the drill-down")
    args = parser.parse_args(argv)
    try:
        raw = args.data.read_bytes()
        data = json.loads(gzip.decompress(raw) if args.data.suffix == ".gz" else raw)
    except (OSError, ValueError, EOFError) as exc:
        parser.error(f"cannot read {args.data}: {exc}")
    runs = data.get("runs", {})
    if "all" not in runs:
        parser.error(f"{args.data} holds no answers of the whole-dashboard run ('all')")
    args.out.mkdir(parents=True, exist_ok=True)
    for path in dashboard_files():
        dashboard = load_dashboard(path)
        run = "all"
        if any(
            v.get("type") == "query" and not v.get("includeAll")
            for v in dashboard.get("templating", {}).get("list", [])
        ):
            run = f"drilldown:{args.tool}"
            if run not in runs:
                parser.error(f"{args.data} has no drill-down answers for tool {args.tool!r}")
        out = args.out / f"{path.stem}.png"
        render(data, dashboard, run, out)
        print(f"{out} ({out.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
