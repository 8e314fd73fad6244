"""`ect review show`: the state of one change's review, as data, rich text or SARIF."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from ect.review.diff import Change
from ect.review.gate import GateResult, comment_state, latest_check
from ect.review.gitcmd import Git
from ect.review.records import Record
from ect.review.store import Store


def _comment(r: Record, resolved: bool) -> dict[str, Any]:
    return {
        "fp": r.get("fp"),
        "rule": r.get("rule"),
        "severity": r.get("severity"),
        "message": r.get("message"),
        "path": r.get("path"),
        "line": r.get("line"),
        "inline": bool(r.get("inline")),
        "commit": r.commit,
        "ts": r.ts,
        "resolved": resolved,
        "fix": r.get("fix"),
    }


def gather(git: Git, store: Store, change: Change, gate: GateResult) -> dict[str, Any]:
    open_, resolved = comment_state(store, change)
    check = latest_check(store, git.tree(change.head))
    return {
        "v": 1,
        "head": change.head,
        "base": change.base,
        "commits": len(change.commits),
        "authors": sorted(change.authors),
        "files": len(change.files),
        "lines_added": change.line_count,
        "check": None
        if check is None
        else {k: check.get(k) for k in ("outcome", "checks", "tests_run", "summary", "blocking", "ts")},
        "comments": [_comment(r, False) for r in open_.values()],
        "resolved": [_comment(r, True) for r in resolved.values()],
        "gate": {
            "stage": gate.stage,
            "ok": gate.ok,
            "already": gate.already,
            "unmet": gate.unmet,
            "met": gate.met,
        },
        "decisions": [
            {
                "type": d.kind,
                "by": d.by,
                "commit": d.record.commit,
                "state": d.state,
                "reason": d.reason,
                "message": d.record.get("message"),
                "signed": bool(d.record.get("sig")),
                "ts": d.record.ts,
            }
            for d in gate.decisions
        ],
        "problems": list(store.problems),
    }


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def render(data: dict[str, Any], max_inline: int) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    console.print(
        f"[bold]review of {data['head'][:12]}[/] against {data['base'][:12]}: {data['commits']} commit(s), "
        f"{data['files']} file(s), +{data['lines_added']} line(s), by {', '.join(data['authors']) or '?'}"
    )
    check = data["check"]
    if check is None:
        console.print("bot: [yellow]no check for this commit[/] (run `ect review bot`)")
    else:
        color = "green" if check["outcome"] == "pass" else "red"
        console.print(
            f"bot: [{color}]{check['outcome']}[/] ({check.get('summary') or ''}), {_when(check['ts'])}"
        )
    comments = sorted(
        data["comments"], key=lambda c: (c["severity"] != "blocking", c["path"] or "", c["line"] or 0)
    )
    inline = [c for c in comments if c["inline"] and c["line"]][:max_inline]
    if inline:
        table = Table(title="comments", show_lines=False)
        for col in ("", "where", "rule", "message"):
            table.add_column(col)
        for c in inline:
            mark = "[red]blocking[/]" if c["severity"] == "blocking" else "[yellow]advisory[/]"
            table.add_row(mark, f"{c['path']}:{c['line']}", c["rule"], c["message"])
        console.print(table)
        for c in inline:
            if c.get("fix"):
                console.print(f"[bold]{c['path']}:{c['line']}[/] {c['message']}")
                console.print(str(c["fix"]).rstrip(), markup=False)
    rest = [c for c in comments if c not in inline]
    if rest:
        console.print(f"[bold]summary[/]: {len(rest)} more finding(s)")
        for c in rest:
            where = f"{c['path']}:{c['line']}" if c["line"] else (c["path"] or "-")
            console.print(f"  {c['severity']:8} {where} {c['rule']}: {c['message']}")
    if data["resolved"]:
        console.print(f"[green]{len(data['resolved'])} resolved[/] finding(s)")
    for d in data["decisions"]:
        ok = d["state"] in ("valid", "carried")
        color = ("green" if d["type"] == "approval" else "red") if ok else "dim"
        sig = " signed" if d["signed"] else ""
        why = f" ({d['state']}: {d['reason']})" if not ok else ""
        msg = f": {d['message']}" if d.get("message") else ""
        console.print(f"[{color}]{d['type']}{sig} by {d['by']}[/] on {d['commit'][:12]}{msg}{why}")
    gate = data["gate"]
    head = f"gate into {gate['stage']}: "
    if gate["already"]:
        console.print(head + "[green]already there[/]")
    elif gate["ok"]:
        console.print(head + "[green]open[/]")
    else:
        console.print(head + "[red]closed[/]")
        for item in gate["unmet"]:
            console.print(f"  - {item}")
    for problem in data["problems"]:
        console.print(f"[yellow]warning:[/] {problem}")
