"""The HTML report: one self-contained file (inline CSS and SVG charts from matplotlib), readable offline."""

from __future__ import annotations

import html
import io
from typing import Any

from ect.metrics.formats import GROUP_COLUMNS, sections

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;
color:#222}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5rem 0}td,th{padding:.25rem .75rem;border-bottom:1px solid #eee;
text-align:left}th{background:#f6f6f6}td.num{text-align:right}.chart{margin:1rem 0}.note{color:#666}
"""


def _svg(fig: Any) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    text = buf.getvalue()
    return text[text.index("<svg") :]


def charts(report: dict[str, Any]) -> list[tuple[str, str]]:
    """(title, inline SVG) for each chart that has data."""
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.fonttype"] = "path"  # text as paths: no font needed to read it
    matplotlib.rcParams["svg.hashsalt"] = "ect"
    import matplotlib.pyplot as plt

    out: list[tuple[str, str]] = []
    trends = report["trends"]
    weeks = [r["group"] for r in trends]
    if trends:
        fig, ax = plt.subplots(figsize=(9, 3.2))
        ax.bar(weeks, [r["loop_runs"] for r in trends], color="#4c78a8", label="loop runs")
        ax.set_ylabel("loop runs")
        ax2 = ax.twinx()
        ax2.plot(
            weeks,
            [_pct(r["first_pass_green"]) for r in trends],
            "o-",
            color="#54a24b",
            label="first-pass green %",
        )
        ax2.plot(
            weeks,
            [_pct(r["acceptance_rate"]) for r in trends],
            "s--",
            color="#f58518",
            label="completion acceptance %",
        )
        ax2.plot(
            weeks, [_pct(r["bypass_rate"]) for r in trends], "^:", color="#e45756", label="hook bypass %"
        )
        ax2.set_ylabel("%")
        ax2.set_ylim(0, 100)
        fig.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=4, fontsize=8, frameon=False)
        ax.tick_params(axis="x", rotation=45, labelsize=8)
        out.append(("Weekly trends", _svg(fig)))
        plt.close(fig)
    lat = report["loop"]["latency_ms"]
    if any(v["p50"] is not None for v in lat.values()):
        fig, ax = plt.subplots(figsize=(7, 3))
        names = list(lat)
        xs = range(len(names))
        ax.bar([x - 0.2 for x in xs], [lat[n]["p50"] or 0 for n in names], 0.4, label="p50", color="#4c78a8")
        ax.bar([x + 0.2 for x in xs], [lat[n]["p90"] or 0 for n in names], 0.4, label="p90", color="#9ecae9")
        ax.set_xticks(list(xs), names)
        ax.set_ylabel("ms")
        ax.legend()
        out.append(("Loop latency by phase", _svg(fig)))
        plt.close(fig)
    if any(r["deployments"] for r in trends):
        fig, ax = plt.subplots(figsize=(9, 2.8))
        ax.bar(weeks, [r["deployments"] for r in trends], color="#72b7b2")
        ax.set_ylabel("deployments")
        ax.tick_params(axis="x", rotation=45, labelsize=8)
        out.append(("Deployments to production per week", _svg(fig)))
        plt.close(fig)
    ab = [
        (name, m)
        for name, m in report["ab"]["metrics"].items()
        if m["relative"] is not None and None not in m["relative_ci95"]
    ]
    if ab:
        fig, ax = plt.subplots(figsize=(7, 0.6 + 0.6 * len(ab)))
        ys = range(len(ab))
        rel = [m["relative"] * 100 for _, m in ab]
        lo = [r - m["relative_ci95"][0] * 100 for r, (_, m) in zip(rel, ab, strict=True)]
        hi = [m["relative_ci95"][1] * 100 - r for r, (_, m) in zip(rel, ab, strict=True)]
        ax.errorbar(rel, list(ys), xerr=[lo, hi], fmt="o", color="#4c78a8", capsize=4)
        ax.axvline(0, color="#888", lw=1)
        ax.set_yticks(list(ys), [f"{n} (n={m['n_with']}/{m['n_without']})" for n, m in ab])
        ax.set_xlabel("with completions vs without, % difference (95% CI)")
        out.append(("A/B: changes with vs without accepted completions", _svg(fig)))
        plt.close(fig)
    return out


def _pct(v: float | None) -> float:
    return float("nan") if v is None else v * 100


def to_html(report: dict[str, Any]) -> str:
    e = html.escape
    w = report["window"]
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>ect report {e(w['since'])} .. {e(w['until'])}</title><style>{CSS}</style></head><body>",
        f"<h1>ect productivity report</h1><p>{e(w['since'])} .. {e(w['until'])} ({w['days']} days), "
        f"{report['events']:,} events from {e(report['store']['kind'])}.</p>",
    ]
    for title, svg in charts(report):
        parts.append(f"<h2>{e(title)}</h2><div class='chart' data-chart='{e(title)}'>{svg}</div>")
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
