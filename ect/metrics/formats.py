"""Rendering a report dict: table (rich), json, csv. HTML lives in `html_report`."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

FORMATS = ("table", "json", "csv", "html")


def fmt_ms(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.0f} ms" if v < 10_000 else fmt_s(v / 1000)


def fmt_s(v: float | None) -> str:
    if v is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if v >= size:
            return f"{v / size:.1f} {unit}"
    return f"{v:.1f} s"


def fmt_rate(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.1f}%"


def fmt_num(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def plural(n: int, word: str, many: str | None = None) -> str:
    """`1 event`, `2 events`, `8,000 events`."""
    return f"{n:,} {word if n == 1 else many or word + 's'}"


def to_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, sort_keys=False) + "\n"


def flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted path, scalar) pairs; list rows with a `group` are keyed by it."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from flatten(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(value, list) and value and all(isinstance(x, dict) for x in value):
        for i, row in enumerate(value):
            key = row.get("group", i)
            yield from flatten({k: v for k, v in row.items() if k != "group"}, f"{prefix}.{key}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield f"{prefix}.{i}", v
    else:
        yield prefix, value


def to_csv(report: dict[str, Any]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["metric", "value"])
    for path, value in flatten(report):
        writer.writerow([path, "" if value is None else value])
    return buf.getvalue()


def sections(report: dict[str, Any]) -> list[tuple[str, list[tuple[str, str]]]]:
    """The human sections as (title, [(label, value)]) shared by the table and HTML renderings."""
    loop, ed, ad = report["loop"], report["editor"], report["adoption"]
    rv, dl = report["review"], report["delivery"]
    sel, fpg, bp = loop["selection"], loop["first_pass_green"], loop["hook_bypass"]
    comp, chars, fixes = ed["completions"], ed["characters"], ed["fixes"]
    freq, lead = dl["deployment_frequency"], dl["lead_time"]
    cfr, ttr = dl["change_failure_rate"], dl["time_to_restore"]
    uninst = ad["hooks_uninstalled"]
    out: list[tuple[str, list[tuple[str, str]]]] = [
        (
            "Loop",
            [
                (
                    "runs (by developers)",
                    fmt_num(loop["runs"])
                    + (
                        f" (+{plural(loop['bot_runs'], 'review-bot run')} not counted)"
                        if loop["bot_runs"]
                        else ""
                    ),
                ),
                (
                    "outcomes pass / fail / error / noop",
                    " / ".join(fmt_num(loop["outcomes"][k]) for k in ("pass", "fail", "error", "noop")),
                ),
                (
                    "first-pass green",
                    f"{fmt_rate(fpg['rate'])} of {plural(fpg['first_attempts'], 'first attempt')}",
                ),
                *[
                    (f"latency {phase} p50 / p90", f"{fmt_ms(v['p50'])} / {fmt_ms(v['p90'])}")
                    for phase, v in loop["latency_ms"].items()
                ],
                ("latency over", plural(loop["latency_runs"], "run") + ", phases over the same runs"),
                (
                    "test files run / total",
                    f"{fmt_num(sel['test_files_run'])} / {fmt_num(sel['test_files_total'])}"
                    f" ({fmt_rate(sel['share_run'])})",
                ),
                (
                    "time saved by selection (est.)",
                    fmt_s(sel["time_saved_s"])
                    + (
                        f" (incl. {plural(sel['runs_selecting_nothing'], 'run')} that needed no test)"
                        if sel.get("runs_selecting_nothing")
                        else ""
                    ),
                ),
                (
                    "hook bypass rate",
                    f"{fmt_rate(bp['rate'])} ({bp['bypassed']:,} of {plural(bp['commits'], 'commit')})",
                ),
            ],
        ),
        (
            "Editor",
            [
                (
                    "completions shown / accepted / dismissed",
                    " / ".join(fmt_num(comp[k]) for k in ("shown", "accepted", "dismissed")),
                ),
                ("acceptance rate", fmt_rate(comp["acceptance_rate"])),
                (
                    "share of committed characters from completions",
                    f"{fmt_rate(chars['share_from_completions'])} "
                    f"({fmt_num(chars['accepted'])} of {fmt_num(chars['committed'])})",
                ),
                (
                    "fixes offered / applied",
                    f"{fmt_num(fixes['offered'])} / {fmt_num(fixes['applied'])}"
                    f" ({fmt_rate(fixes['applied_rate'])})",
                ),
            ],
        ),
        (
            "Adoption (drop-out signals)",
            [
                ("hook bypass rate", fmt_rate(ad["hook_bypass_rate"])),
                (
                    "developers who uninstalled the hook",
                    f"{uninst['developers']} of {ad['active_developers'] + uninst['developers']}"
                    f" ({fmt_rate(uninst['rate'])})",
                ),
                ("completion dismissal rate", fmt_rate(ad["completion_dismissal_rate"])),
            ],
        ),
        (
            "Review",
            [("review requests", fmt_num(rv["requests"]))]
            + [
                (
                    f"time to {label} p50 / p75",
                    f"{fmt_s(rv[key]['p50_s'])} / {fmt_s(rv[key]['p75_s'])}"
                    f" (n={rv[key]['n']}, pending {rv[key]['pending']})",
                )
                for key, label in (
                    ("first_bot_comment", "first bot response"),
                    ("first_human_action", "first human action"),
                    ("approval", "approval"),
                )
            ],
        ),
        (
            "Delivery (DORA four keys)",
            [
                ("deployments to " + dl["production_stage"], fmt_num(dl["deployments"])),
                (
                    "deployment frequency",
                    f"{freq['per_week']:.2f}/week [{freq['tier'] or '-'}]"
                    + (f" over {fmt_s(freq['over_days'] * 86400)} observed" if "over_days" in freq else ""),
                ),
                (
                    "lead time for changes p50",
                    f"{fmt_s(lead['p50_s'])} [{lead['tier'] or '-'}]"
                    f" (n={lead['n']}, unknown {lead['unknown']})",
                ),
                (
                    "change failure rate",
                    f"{fmt_rate(cfr['rate'])} [{cfr['tier'] or '-'}] ({cfr['failed']} failed)",
                ),
                ("time to restore p50", f"{fmt_s(ttr['p50_s'])} [{ttr['tier'] or '-'}] (n={ttr['n']})"),
            ],
        ),
    ]
    ab = report["ab"]
    rows = [
        (
            "changes with / without accepted completions",
            f"{ab['changes_with_completions']:,} / {ab['changes_without']:,}",
        )
    ]
    for name, m in ab["metrics"].items():
        rows.append((name.replace("_", " "), ab_line(m)))
    out.append(("A/B: changes with vs without accepted completions", rows))
    return out


def ab_line(m: dict[str, Any]) -> str:
    """One A/B metric in words; a side without data says so instead of printing `-`."""

    def f(v: Any) -> str:
        return fmt_num(round(v, 3) if isinstance(v, float) else v)

    if m["with"] is None or m["without"] is None:
        sides = [
            f"{name}: {'no data' if m[key] is None else f(m[key])} (n={m[n]})"
            for name, key, n in (("with", "with", "n_with"), ("without", "without", "n_without"))
        ]
        return f"{'; '.join(sides)}: no comparison"
    rel = m["relative"]
    lo, hi = m["relative_ci95"]
    rel_txt = ""
    if rel is not None and lo is not None and hi is not None:
        rel_txt = f", {rel * 100:+.1f}% [95% CI {lo * 100:+.1f}%, {hi * 100:+.1f}%]"
    ci = ""
    if m["ci95"][0] is not None and m["ci95"][1] is not None:
        ci = f" [95% CI {f(m['ci95'][0])}, {f(m['ci95'][1])}]"
    return (
        f"with {f(m['with'])}, without {f(m['without'])} (n={m['n_with']}/{m['n_without']};"
        f" difference {f(m['diff'])}{ci}{rel_txt}): {m['verdict']}"
    )


GROUP_COLUMNS = (
    ("loop_runs", "loop runs", fmt_num),
    ("first_pass_green", "first-pass green", fmt_rate),
    ("loop_p50_ms", "loop p50", fmt_ms),
    ("acceptance_rate", "acceptance", fmt_rate),
    ("commits", "commits", fmt_num),
    ("bypass_rate", "hook bypass", fmt_rate),
    ("deployments", "deploys", fmt_num),
)


def to_table(report: dict[str, Any], width: int | None = None) -> str:
    """Plain-text tables via rich (imported only here)."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(file=io.StringIO(), width=width or 110, force_terminal=False, color_system=None)
    w = report["window"]
    st = report["store"]
    console.print(
        Text(
            f"ect report {w['since']} .. {w['until']} ({w['days']} days) from {st['kind']} "
            f"({st['where']}), {plural(report['events'], 'event')}, {report['elapsed_ms']:.0f} ms"
        )
    )
    for title, rows in sections(report):
        table = Table(title=title, title_justify="left", show_header=False, expand=False)
        table.add_column("metric")
        table.add_column("value")
        for label, value in rows:
            table.add_row(Text(label), Text(value))
        console.print(table)
    for key, title in (("trends", "Trends per week"), ("breakdown", "By {by}")):
        rows_data = report.get(key)
        if key == "breakdown":
            if not rows_data or rows_data["by"] == "week":
                continue
            title = title.format(by=rows_data["by"])
            rows_data = rows_data["rows"]
        table = Table(title=title, title_justify="left")
        table.add_column("week" if key == "trends" else "group")
        for _, label, _f in GROUP_COLUMNS:
            table.add_column(label, justify="right")
        for r in rows_data or []:
            label = r["group"] + (" (partial)" if r.get("partial") else "")
            table.add_row(Text(label), *[Text(f(r[c])) for c, _, f in GROUP_COLUMNS])
        console.print(table)
    console.print(Text(report["ab"]["note"]))
    for note in report.get("notes", []):
        console.print(Text(f"note: {note}"))
    out = console.file.getvalue()  # type: ignore[attr-defined]
    return str(out)
