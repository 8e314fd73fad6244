"""The HTML report: one self-contained file (inline CSS and SVG charts from matplotlib), readable offline."""

from __future__ import annotations

import html
import io
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ect.metrics.chart_cache import CHARTS_NAME, ChartCache, code_version
from ect.metrics.formats import GROUP_COLUMNS, plural, sections

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;
color:#222}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5rem 0}td,th{padding:.25rem .75rem;border-bottom:1px solid #eee;
text-align:left}th{background:#f6f6f6}td.num{text-align:right}.chart{margin:1rem 0}.note{color:#666}
.chart-note{color:#555;font-size:.85rem;margin:.25rem 0}
"""


def _svg(fig: Any) -> str:
    buf = io.StringIO()
    # fixed margins (set per chart): one draw, not two; no date: the same figures give the same SVG
    fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    return text[text.index("<svg") :]


MAX_DATE_LABELS = 10  # horizontal week labels at most this many across a chart: they never overlap
PARTIAL_HATCH = "///"


@dataclass
class Chart:
    """One chart: its title, inline SVG, the series drawn and the ones left out (with why)."""

    title: str
    svg: str
    series: list[str] = field(default_factory=list)
    empty: dict[str, str] = field(default_factory=dict)  # series name -> why it is not drawn
    notes: list[str] = field(default_factory=list)


def _week_axis(ax: Any, weeks: list[str]) -> None:
    """Week labels as `Nov 02`, every k-th week so that at most `MAX_DATE_LABELS` show, horizontal;
    the years under the axis."""
    from datetime import date

    step = max(1, math.ceil(len(weeks) / MAX_DATE_LABELS))
    ticks = list(range(0, len(weeks), step))
    days = [date.fromisoformat(w) for w in weeks]
    ax.set_xticks(ticks, [days[i].strftime("%b %d") for i in ticks])
    for i, label in zip(ticks, ax.get_xticklabels(), strict=True):
        label.set_gid(f"xlabel-{weeks[i]}")
    ax.tick_params(axis="x", labelsize=8, rotation=0)
    years = sorted({d.year for d in days})
    ax.set_xlabel(f"week starting (Monday, UTC), {years[0]}" + (f"-{years[-1]}" if len(years) > 1 else ""))
    ax.set_xlim(-0.6, len(weeks) - 0.4)


def _count_axis(ax: Any, label: str) -> None:
    """A count axis: integer ticks only, from 0."""
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.set_ylim(bottom=0)
    ax.set_ylabel(label)


def _tag_y_ticks(fig: Any, ax: Any, name: str) -> None:
    """Fix the y ticks now (what the locator would draw) and name their labels after their values
    (`ytick-NAME-3`) so a browser test can read them; no extra draw."""
    lo, hi = ax.get_ylim()
    ticks = [t for t in ax.yaxis.get_major_locator().tick_values(lo, hi) if lo <= t <= hi]
    ax.set_yticks(ticks, [f"{t:g}" for t in ticks])
    for t, label in zip(ticks, ax.get_yticklabels(), strict=True):
        label.set_gid(f"ytick-{name}-{t:g}")


def _pyplot() -> Any:
    """matplotlib's pyplot, set up for SVG output; imported only when a chart must be drawn."""
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.fonttype"] = "path"  # text as paths: no font needed to read it
    matplotlib.rcParams["svg.hashsalt"] = "ect"
    import matplotlib.pyplot as plt

    return plt


TREND_SERIES = (
    ("first_pass_green", "o-", "#54a24b", "first-pass green %", "no developer loop runs"),
    ("acceptance_rate", "s--", "#f58518", "completion acceptance %", "no completions were shown"),
    ("bypass_rate", "^:", "#e45756", "hook bypass %", "no commits recorded (hooks not installed)"),
)


def _trends_data(report: dict[str, Any]) -> dict[str, Any] | None:
    trends = report["trends"]
    if not trends:
        return None
    data = {
        "weeks": [r["group"] for r in trends],
        "partial": [bool(r.get("partial")) for r in trends],
        "loop_runs": [r["loop_runs"] for r in trends],
    }
    data.update({key: [r[key] for r in trends] for key, *_ in TREND_SERIES})
    return data


def _draw_trends(plt: Any, data: dict[str, Any]) -> Chart:
    weeks, partial = data["weeks"], data["partial"]
    xs = list(range(len(weeks)))
    fig, ax = plt.subplots(figsize=(9, 3.6))
    fig.subplots_adjust(left=0.08, right=0.92, bottom=0.2, top=0.84)
    chart = Chart("Weekly trends", "")
    ax.bar(
        xs,
        data["loop_runs"],
        color=["#a9c4e0" if p else "#4c78a8" for p in partial],
        hatch=[PARTIAL_HATCH if p else "" for p in partial],
        edgecolor="#4c78a8",
        linewidth=0.5,
        label="loop runs",
    )
    chart.series.append("loop runs")
    _count_axis(ax, "loop runs")
    ax2 = ax.twinx()
    for key, style, color, name, why in TREND_SERIES:
        values = [_pct(v) for v in data[key]]
        if all(math.isnan(v) for v in values):
            chart.empty[name] = why
            continue
        ax2.plot(xs, values, style, color=color, label=name)
        chart.series.append(name)
    ax2.set_ylabel("%")
    ax2.set_ylim(0, 100)
    _week_axis(ax, weeks)
    from matplotlib.patches import Patch

    handles: list[Any] = [Patch(facecolor="#4c78a8")]
    labels = ["loop runs"]
    h, lab = ax2.get_legend_handles_labels()
    handles += h
    labels += lab
    if any(partial):
        handles.append(Patch(facecolor="#a9c4e0", edgecolor="#4c78a8", hatch=PARTIAL_HATCH))
        labels.append("partial week")
        chart.notes.append("Hatched bars: weeks the window covers only in part (lower counts).")
    fig.legend(
        handles, labels, loc="upper center", bbox_to_anchor=(0.5, 1.0), ncol=5, fontsize=8, frameon=False
    )
    _tag_y_ticks(fig, ax, "loop-runs")
    chart.svg = _svg(fig)
    plt.close(fig)
    return chart


def _latency_data(report: dict[str, Any]) -> dict[str, Any] | None:
    lat = report["loop"]["latency_ms"]
    if not any(v["p50"] is not None for v in lat.values()):
        return None
    return {
        "phases": [[n, v["p50"], v["p90"]] for n, v in lat.items()],
        "runs": report["loop"].get("latency_runs", 0),
    }


def _draw_latency(plt: Any, data: dict[str, Any]) -> Chart:
    names = [n for n, _, _ in data["phases"]]
    height = 1.3 + 0.55 * len(names)
    fig, ax = plt.subplots(figsize=(8, height))
    fig.subplots_adjust(left=0.12, right=0.97, bottom=0.55 / height, top=1 - 0.4 / height)
    ys = list(range(len(names)))
    p50 = [v or 0.0 for _, v, _ in data["phases"]]
    p90 = [v or 0.0 for _, _, v in data["phases"]]
    b50 = ax.barh([y - 0.2 for y in ys], p50, 0.4, label="p50", color="#4c78a8")
    b90 = ax.barh([y + 0.2 for y in ys], p90, 0.4, label="p90", color="#9ecae9")
    for bars, values in ((b50, p50), (b90, p90)):
        ax.bar_label(bars, labels=[_ms(v) for v in values], padding=3, fontsize=7)
    positive = [v for v in p50 + p90 if v > 0]
    chart = Chart("Loop latency by phase", "", series=["p50", "p90"])
    if positive and max(positive) / min(positive) > 20:
        ax.set_xscale("log")  # phases of a few ms stay visible next to seconds of tests
        ax.set_xlim(left=max(0.5, min(positive) / 2), right=max(positive) * 4)
        chart.notes.append("Logarithmic scale, so that short phases stay visible next to long ones.")
    else:
        ax.set_xlim(0, (max(positive) if positive else 1) * 1.25)
    ax.set_yticks(ys, names)
    ax.invert_yaxis()
    ax.set_xlabel(f"ms, over the same {data['runs']:,} runs")
    fig.legend(loc="upper center", bbox_to_anchor=(0.5, 1.0), ncol=2, fontsize=8, frameon=False)
    chart.svg = _svg(fig)
    plt.close(fig)
    return chart


def _deployments_data(report: dict[str, Any]) -> dict[str, Any] | None:
    trends = report["trends"]
    if not any(r["deployments"] for r in trends):
        return None
    return {
        "weeks": [r["group"] for r in trends],
        "partial": [bool(r.get("partial")) for r in trends],
        "deployments": [r["deployments"] for r in trends],
    }


def _draw_deployments(plt: Any, data: dict[str, Any]) -> Chart:
    partial = data["partial"]
    fig, ax = plt.subplots(figsize=(9, 2.8))
    fig.subplots_adjust(left=0.08, right=0.97, bottom=0.24, top=0.95)
    ax.bar(
        list(range(len(data["weeks"]))),
        data["deployments"],
        color=["#c7e6e3" if p else "#72b7b2" for p in partial],
        hatch=[PARTIAL_HATCH if p else "" for p in partial],
        edgecolor="#72b7b2",
        linewidth=0.5,
    )
    _count_axis(ax, "deployments")
    _week_axis(ax, data["weeks"])
    _tag_y_ticks(fig, ax, "deployments")
    chart = Chart("Deployments to production per week", _svg(fig), series=["deployments"])
    if any(partial):
        chart.notes.append("Hatched bars: weeks the window covers only in part.")
    plt.close(fig)
    return chart


def _ab_data(report: dict[str, Any]) -> dict[str, Any] | None:
    metrics = report["ab"]["metrics"]
    drawn = [
        [name, m["relative"], list(m["relative_ci95"]), m["n_with"], m["n_without"]]
        for name, m in metrics.items()
        if m["relative"] is not None and None not in m["relative_ci95"]
    ]
    if not drawn:
        return None
    return {"drawn": drawn, "names": list(metrics)}


def _draw_ab(plt: Any, data: dict[str, Any]) -> Chart:
    ab = data["drawn"]
    height = 1.2 + 0.6 * len(ab)
    fig, ax = plt.subplots(figsize=(9, height))
    fig.subplots_adjust(left=0.42, right=0.97, bottom=0.6 / height, top=1 - 0.15 / height)
    ys = list(range(len(ab)))
    rel = [r * 100 for _, r, _, _, _ in ab]
    lo = [x - ci[0] * 100 for x, (_, _, ci, _, _) in zip(rel, ab, strict=True)]
    hi = [ci[1] * 100 - x for x, (_, _, ci, _, _) in zip(rel, ab, strict=True)]
    ax.errorbar(rel, ys, xerr=[lo, hi], fmt="o", color="#4c78a8", capsize=4)
    ax.axvline(0, color="#888", lw=1)
    ax.set_yticks(ys, [f"{n.replace('_', ' ')} (n={nw}/{nwo})" for n, _, _, nw, nwo in ab])
    ax.set_xlabel("with completions vs without, % difference (95% CI)")
    drawn = [n for n, *_ in ab]
    chart = Chart("A/B: changes with vs without accepted completions", _svg(fig), series=drawn)
    for n in data["names"]:
        if n not in drawn:
            chart.empty[n.replace("_", " ")] = "too little data on one side for an interval"
    plt.close(fig)
    return chart


CHARTS = (
    ("trends", _trends_data, _draw_trends),
    ("latency", _latency_data, _draw_latency),
    ("deployments", _deployments_data, _draw_deployments),
    ("ab", _ab_data, _draw_ab),
)


def chart_cache(state: Path) -> ChartCache:
    """The charts kept in `state` (see `ect.metrics.chart_cache`), salted with this module's code."""
    return ChartCache(state / CHARTS_NAME, code_version(Path(__file__)))


def charts(report: dict[str, Any], cache: ChartCache | None = None) -> list[Chart]:
    """The charts that have data; a series without data is named with the reason instead. A chart
    whose figures are in `cache` is taken from it; matplotlib is imported only to draw one that is not."""
    out: list[Chart] = []
    plt = None
    for name, figures, draw in CHARTS:
        data = figures(report)
        if data is None:
            continue
        key = cache.key(name, data) if cache is not None else ""
        kept = cache.get(key) if cache is not None else None
        if kept is not None:
            out.append(Chart(**kept))
            continue
        if plt is None:
            plt = _pyplot()
        chart = draw(plt, data)
        if cache is not None:
            cache.put(key, asdict(chart))
        out.append(chart)
    if cache is not None:
        cache.save()
    return out


def _ms(v: float) -> str:
    return f"{v:,.0f} ms" if v >= 10 else f"{v:.1f} ms"


def _pct(v: float | None) -> float:
    return float("nan") if v is None else v * 100


def to_html(report: dict[str, Any], state: Path | None = None) -> str:
    """The report as one HTML page; charts are kept in (and taken from) `state`'s chart cache if given."""
    e = html.escape
    w = report["window"]
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>ect report {e(w['since'])} .. {e(w['until'])}</title><style>{CSS}</style></head><body>",
        f"<h1>ect productivity report</h1><p>{e(w['since'])} .. {e(w['until'])} ({w['days']} days), "
        f"{e(plural(report['events'], 'event'))} from {e(report['store']['kind'])}.</p>",
    ]
    for c in charts(report, chart_cache(state) if state is not None else None):
        series = "|".join(c.series)
        empty = "|".join(c.empty)
        parts.append(
            f"<h2>{e(c.title)}</h2><div class='chart' data-chart='{e(c.title)}' data-series='{e(series)}'"
            f" data-empty='{e(empty)}'>{c.svg}"
        )
        parts.extend(f"<p class='chart-note'>{e(n)}</p>" for n in c.notes)
        parts.extend(
            f"<p class='chart-note empty' data-series='{e(name)}'>Not drawn: {e(name)} ({e(why)}).</p>"
            for name, why in c.empty.items()
        )
        parts.append("</div>")
    for title, rows in sections(report):
        parts.append(f"<h2>{e(title)}</h2><table>")
        parts.extend(f"<tr><th>{e(label)}</th><td>{e(value)}</td></tr>" for label, value in rows)
        parts.append("</table>")
    tables = [("Trends per week", report["trends"])]
    bd = report.get("breakdown")
    if bd and bd["by"] != "week":
        tables.append((f"By {bd['by']}", bd["rows"]))
    for title, rows_data in tables:
        parts.append(f"<h2>{e(title)}</h2><table><tr><th>group</th>")
        rows_data = [{**r, "group": r["group"] + (" (partial)" * bool(r.get("partial")))} for r in rows_data]
        parts.extend(f"<th>{e(label)}</th>" for _, label, _f in GROUP_COLUMNS)
        parts.append("</tr>")
        for r in rows_data:
            cells = "".join(f"<td class='num'>{e(f(r[c]))}</td>" for c, _, f in GROUP_COLUMNS)
            parts.append(f"<tr><td>{e(r['group'])}</td>{cells}</tr>")
        parts.append("</table>")
    parts.append(f"<p class='note'>{e(report['ab']['note'])}</p>")
    parts.extend(f"<p class='note'>note: {e(n)}</p>" for n in report.get("notes", []))
    parts.append("</body></html>\n")
    return "".join(parts)
