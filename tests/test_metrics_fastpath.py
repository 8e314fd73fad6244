"""The report's SQL fast path (commit columns, per-day cubes, the report cache) against a straightforward
reference: every event read back as a dict (`ect.events.query`, JSON decoded) and every figure computed
in plain Python.

The generated history has edge cases: an empty week, partial first and last weeks, runs by the review
bot, no-op runs, commits that are not changes (merges), reviews that follow a change through new
commits, deployments with and without `first_commit_ts`, rollbacks. It is checked in a fresh store,
in a schema-v2 store migrated in place, after new events arrive behind a warm cache, after a prune,
and with a single event.
"""

from __future__ import annotations

import math
import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from ect import events
from ect.metrics import delivery, latency, report, stats
from ect.metrics.store import SqliteStore

T0 = 1793577600.0  # 2026-11-02T00:00:00Z, a Monday
D = 86400.0
START, END = T0 + 2.5 * D, T0 + 33.3 * D  # both inside a week: partial first and last weeks
EMPTY_WEEK = (T0 + 14 * D, T0 + 21 * D)
DEV = ("hook", "cli", None)


def _history(seed: int = 7, n: int = 1500) -> list[tuple[str, float, dict[str, Any]]]:
    rnd = random.Random(seed)
    out: list[tuple[str, float, dict[str, Any]]] = []
    shas: list[str] = []
    for i in range(n):
        ts = T0 + rnd.uniform(0, 35) * D
        if EMPTY_WEEK[0] <= ts < EMPTY_WEEK[1]:
            continue
        author = f"dev{rnd.randrange(4)}@x"
        r = rnd.random()
        if r < 0.55:
            outcome = rnd.choice(["pass", "pass", "fail", "error", "noop"])
            phases = {
                "changes": rnd.uniform(1, 9),
                "compile": rnd.uniform(5, 50),
                "select": rnd.uniform(0, 2),
            }
            if rnd.random() < 0.7:
                phases["tests"] = rnd.lognormvariate(6, 1)
            fields = {
                "source": rnd.choice([*DEV, "review"]),
                "outcome": outcome,
                "duration_ms": sum(phases.values()) if rnd.random() < 0.95 else None,
                "phases": phases,
                "test_files_selected": rnd.randint(0, 5),
                "test_files_total": 10,
                "attempt": rnd.choice([1, 1, 2, None]),
            }
            out.append(("loop.run", ts, {"author": author, "repo": "r", **fields}))
        elif r < 0.75:
            kind = rnd.choice(
                ["completion.shown", "completion.shown", "completion.accepted", "completion.dismissed"]
            )
            out.append((kind, ts, {"author": author, "chars": rnd.randint(1, 90)}))
        elif r < 0.87:
            sha = f"c{i:06d}"
            runs = rnd.randint(0, 4)
            fields = {
                "commit_sha": sha,
                "outcome": rnd.choice(["checked", "checked", "bypassed", "merge"]),
                "chars": rnd.randint(0, 500),
                "parents": [shas[-1]] if shas else [],
                "loop_runs": runs,
                "first_run_outcome": rnd.choice(["pass", "fail"]) if runs else None,
                "first_run_ts": ts - rnd.uniform(10, 9000) if runs else None,
                "accepted": rnd.choice([0, 0, 1, 4]),
            }
            if rnd.random() < 0.2:
                fields["branch"] = f"b{rnd.randrange(30)}"
            shas.append(sha)
            out.append(("git.commit", ts, {"author": author, "repo": "r", **fields}))
            if rnd.random() < 0.4:  # reviewed: by branch, or by commit (approved after a new commit)
                key = {"branch": fields["branch"]} if "branch" in fields else {"commit_sha": sha}
                out.append(("review.requested", ts + 60, {"author": author, "repo": "r", **key}))
                out.append(("review.comment", ts + 300, {"author": "ect-bot", "repo": "r", **key}))
                later = ts + rnd.uniform(600, 2 * D)
                if "commit_sha" in key and rnd.random() < 0.5:
                    child = f"{sha}-2"
                    child_fields = {**fields, "commit_sha": child, "parents": [sha], "outcome": "checked"}
                    out.append(("git.commit", later - 100, {"author": author, "repo": "r", **child_fields}))
                    key = {"commit_sha": child}
                out.append(("review.approved", later, {"author": "lead@x", "repo": "r", **key}))
        elif r < 0.97 and shas:
            kind = rnd.choice(["review.requested", "review.comment", "review.approved", "review.checked"])
            key: dict[str, Any] = (
                {"branch": f"b{rnd.randrange(30)}"}
                if rnd.random() < 0.5
                else {"commit_sha": rnd.choice(shas)}
            )
            by = "ect-bot" if rnd.random() < 0.3 else author
            out.append((kind, ts, {"author": by, "repo": "r", **key}))
        elif shas:
            sha = rnd.choice(shas)
            if rnd.random() < 0.8:
                fields = {"stage": rnd.choice(["production", "production", "staging"]), "commit_sha": sha}
                if rnd.random() < 0.5:
                    fields["first_commit_ts"] = ts - rnd.uniform(600, 5 * D)
                out.append(("promotion.done", ts, {"author": author, "repo": "r", **fields}))
            else:
                out.append(("rollback", ts, {"author": author, "repo": "r", "commit_sha": sha}))
    return out


def _rows(state: Path, history: list[tuple[str, float, dict[str, Any]]]) -> list[tuple[Any, ...]]:
    return [events._row(kind, dict(fields), ts, state) for kind, ts, fields in history]


def _insert(state: Path, rows: list[tuple[Any, ...]]) -> None:
    conn = events.connect(state)
    try:
        conn.execute("BEGIN")
        conn.executemany(events._INSERT, rows)
        conn.execute("COMMIT")
    finally:
        conn.close()


def _v2_store(state: Path, rows: list[tuple[Any, ...]]) -> None:
    """A store as ect wrote it before schema 3 (no commit columns, no triggers)."""
    state.mkdir(parents=True)
    conn = sqlite3.connect(state / events.DB_NAME, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        for step in (0, 1):
            for statement in events.MIGRATIONS[step].split(";"):
                if statement.strip():
                    conn.execute(statement)
        conn.execute("PRAGMA user_version = 2")
        conn.executemany(events._INSERT, rows)
    finally:
        conn.close()


def _fast(state: Path, start: float = START, end: float = END) -> dict[str, Any]:
    store = SqliteStore(state)
    try:
        return report.build(store, start, end)
    finally:
        store.close()


def _reference(state: Path, start: float = START, end: float = END) -> dict[str, Any]:
    """Every figure the fast path computes from commits, cubes and the cache, computed plainly."""
    evs = events.query(state)
    first = min((e["ts"] for e in evs), default=None)
    if first is not None and start < first < end:
        start = float(math.floor(first))
    small = [e for e in evs if e["kind"] in report.SMALL_KINDS and start - report.LOOKBACK_S <= e["ts"]]
    inside = [e for e in evs if start <= e["ts"] < end]
    commits = [e for e in inside if e["kind"] == "git.commit"]
    changes = [c for c in commits if c.get("outcome") in ("checked", "bypassed")]
    runs = [e for e in inside if e["kind"] == "loop.run" and e.get("source") not in ("review", "bot")]
    timed = [r for r in runs if r.get("outcome") != "noop" and r.get("duration_ms") is not None]

    def count(kind: str, among: list[dict[str, Any]] = inside) -> int:
        return sum(1 for e in among if e["kind"] == kind)

    def bypass(cs: list[dict[str, Any]]) -> tuple[int, float | None]:
        n = sum(1 for c in cs if c.get("outcome") in ("checked", "bypassed"))
        bad = sum(1 for c in cs if c.get("outcome") == "bypassed")
        return n, (bad / n if n else None)

    def phase(r: dict[str, Any], name: str) -> float:
        return float((r.get("phases") or {}).get(name) or 0.0)

    latency = {"total": stats.quantiles([r["duration_ms"] for r in timed], [0.5, 0.9])}
    for name in ("changes", "compile", "select", "tests"):
        latency[name] = stats.quantiles([phase(r, name) for r in timed], [0.5, 0.9])
    firsts = [r for r in runs if r.get("attempt") == 1]
    review = delivery.review(small, start, end)
    a = [c for c in changes if int(c.get("accepted") or 0) > 0]
    b = [c for c in changes if int(c.get("accepted") or 0) == 0]

    def with_runs(g: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [c for c in g if c.get("loop_runs") and c.get("first_run_ts") is not None]

    def approval(g: list[dict[str, Any]]) -> list[float]:
        by_change = review["approval_s_by_change"]
        return [by_change[k] / 3600 for c in g if (k := delivery.change_key(c)) in by_change]

    def cycle(g: list[dict[str, Any]]) -> list[float]:
        return [max(0.0, c["ts"] - c["first_run_ts"]) / 3600 for c in with_runs(g)]

    ab = {
        "loop_runs_per_change": stats.welch(
            [float(c.get("loop_runs") or 0) for c in a], [float(c.get("loop_runs") or 0) for c in b]
        ),
        "first_pass_green": stats.proportion_diff(
            *(
                x
                for g in (a, b)
                for x in (
                    sum(1 for c in with_runs(g) if c.get("first_run_outcome") == "pass"),
                    len(with_runs(g)),
                )
            )
        ),
        "hours_first_run_to_commit": stats.welch(cycle(a), cycle(b)),
        "hours_to_approval": stats.welch(approval(a), approval(b)),
    }
    weeks: dict[str, dict[str, Any]] = {}
    week_of = report.group_of("week")
    for e in inside:
        label = report.group_label("week", week_of(e))
        wk = weeks.setdefault(label, {"runs": [], "commits": [], "deploys": 0, "shown": 0, "accepted": 0})
        if e in runs:
            wk["runs"].append(e)
        elif e["kind"] == "git.commit":
            wk["commits"].append(e)
        elif e["kind"] == "promotion.done" and e.get("stage") == "production":
            wk["deploys"] += 1
        elif e["kind"] == "completion.shown":
            wk["shown"] += 1
        elif e["kind"] == "completion.accepted":
            wk["accepted"] += 1
    trends = {}
    for label, wk in weeks.items():
        if not (wk["runs"] or wk["commits"] or wk["deploys"] or wk["shown"] or wk["accepted"]):
            continue
        wk_timed = [r["duration_ms"] for r in wk["runs"] if r in timed]
        n_commits, rate = bypass(wk["commits"])
        trends[label] = {
            "loop_runs": len(wk["runs"]),
            "loop_p50_ms": stats.quantiles(wk_timed, [0.5])[0],
            "commits": n_commits,
            "bypass_rate": rate if wk["commits"] else None,
            "deployments": wk["deploys"],
            "acceptance_rate": wk["accepted"] / wk["shown"] if wk["shown"] else None,
        }
    n_changes, bypass_rate = bypass(commits)
    return {
        "runs": len(runs),
        "outcomes": {
            k: sum(1 for r in runs if r.get("outcome") == k) for k in ("pass", "fail", "error", "noop")
        },
        "first_pass_green": sum(1 for r in firsts if r["outcome"] == "pass") / len(firsts)
        if firsts
        else None,
        "latency": latency,
        "hook_bypass": (n_changes, bypass_rate),
        "chars": (
            sum(int(e.get("chars") or 0) for e in inside if e["kind"] == "completion.accepted"),
            sum(int(c.get("chars") or 0) for c in changes),
        ),
        "completions": (
            count("completion.shown"),
            count("completion.accepted"),
            count("completion.dismissed"),
        ),
        "developers": len({c.get("author") for c in commits}),
        "review": {k: v for k, v in review.items() if k != "approval_s_by_change"},
        "delivery": delivery.dora(small, start, end, "production", observed_from=first),
        "ab": ab,
        "trends": trends,
        "events": len(inside),
    }


def _close(got: Any, want: Any, path: str = "") -> None:
    """Equal, floats up to rounding, through nested dicts and lists."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), path
        for k in want:
            _close(got[k], want[k], f"{path}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), path
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            _close(g, w, f"{path}[{i}]")
    elif want is None or isinstance(want, (str, bool)):
        assert got == want, path
    else:
        assert got == pytest.approx(want, rel=1e-9), path


def _same(fast: dict[str, Any], ref: dict[str, Any]) -> None:
    approx = pytest.approx
    loop = fast["loop"]
    assert loop["runs"] == ref["runs"] and loop["outcomes"] == ref["outcomes"]
    assert loop["first_pass_green"]["rate"] == approx(ref["first_pass_green"])
    for name, (p50, p90) in ref["latency"].items():
        assert loop["latency_ms"][name] == {"p50": approx(p50), "p90": approx(p90)}, name
    assert (loop["hook_bypass"]["commits"], loop["hook_bypass"]["rate"]) == approx(ref["hook_bypass"])
    chars = fast["editor"]["characters"]
    assert (chars["accepted"], chars["committed"]) == ref["chars"]
    comp = fast["editor"]["completions"]
    assert (comp["shown"], comp["accepted"], comp["dismissed"]) == ref["completions"]
    assert fast["adoption"]["active_developers"] == ref["developers"]
    _close(fast["review"], ref["review"])
    _close(fast["delivery"], ref["delivery"])
    for name, d in ref["ab"].items():
        got = fast["ab"]["metrics"][name]
        assert (got["n_with"], got["n_without"]) == (d.n_a, d.n_b), name
        # the A/B means and variances come from per-day sums: equal up to float rounding
        _close([got["with"], got["without"], *got["ci95"]], [d.a, d.b, d.low, d.high], name)
    rows = {r["group"]: r for r in fast["trends"]}
    assert set(rows) == set(ref["trends"])
    for label, want in ref["trends"].items():
        got = {k: rows[label][k] for k in want}
        assert got == approx(want), label
        assert rows[label]["loop_p50_sample"] == 1  # exact per week
    assert fast["events"] == ref["events"]


@pytest.fixture(scope="module")
def history() -> list[tuple[str, float, dict[str, Any]]]:
    return _history()


def test_fast_path_matches_reference(
    tmp_path: Path, history: list[tuple[str, float, dict[str, Any]]]
) -> None:
    state = tmp_path / ".ect"
    _insert(state, _rows(state, history))
    ref = _reference(state)
    assert ref["runs"] > 100 and ref["hook_bypass"][0] > 20 and ref["review"]["requests"] > 3
    assert ref["delivery"]["deployments"] > 3 and ref["ab"]["hours_to_approval"].n_a > 0
    assert not any(r["group"] == "2026-11-16" for r in _fast(state)["trends"])  # the empty week
    cold = _fast(state)
    _same(cold, ref)
    warm = _fast(state)  # whole days and weeks now from the cache
    _same(warm, ref)
    (state / latency.VALUES_NAME).write_bytes(b"not a database" * 100)  # damaged: rebuilt, never wrong
    _same(_fast(state), ref)
    with sqlite3.connect(state / latency.VALUES_NAME) as values:
        assert values.execute("SELECT count(*) FROM days").fetchone()[0] > 20
    partial = [r["group"] for r in warm["trends"] if r["partial"]]
    assert partial == ["2026-11-02", "2026-11-30"]


def test_old_schema_store_migrates_in_place_with_the_same_figures(
    tmp_path: Path, history: list[tuple[str, float, dict[str, Any]]]
) -> None:
    state = tmp_path / ".ect"
    rows = _rows(state, history)
    _v2_store(state, rows)
    fast = _fast(state)  # opening migrates 2 -> 3, filling the commit columns from `data`
    conn = sqlite3.connect(state / events.DB_NAME)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == events.SCHEMA_VERSION
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == len(rows)  # every event kept
        filled = conn.execute(
            "SELECT count(*) FROM events WHERE kind = 'git.commit' AND change_key IS NOT NULL"
        ).fetchone()[0]
        assert filled == sum(1 for k, _, _ in history if k == "git.commit")
    finally:
        conn.close()
    _same(fast, _reference(state))
    # the same events written by this version: the same report
    fresh = tmp_path / "fresh" / ".ect"
    _insert(fresh, _rows(fresh, history))
    again = _fast(fresh)
    for part in ("loop", "editor", "adoption", "review", "delivery", "ab", "trends"):
        _close(again[part], fast[part], part)


def test_cache_follows_new_and_pruned_events(
    tmp_path: Path, history: list[tuple[str, float, dict[str, Any]]]
) -> None:
    state = tmp_path / ".ect"
    half = len(history) // 2
    _insert(state, _rows(state, history[:half]))
    _same(_fast(state), _reference(state))  # fills the cache
    # late events (e.g. folded in from the spool or a sync) land in already cached days
    for kind, ts, fields in history[half:]:
        assert events.record(state, kind, ts=ts, **fields)
    _same(_fast(state), _reference(state))
    # a prune deletes the oldest events: nothing cached about them may survive
    with events.opened(state) as conn:
        conn.execute("DELETE FROM events WHERE ts < ?", (T0 + 9 * D,))
    _same(_fast(state), _reference(state))


def test_a_single_event(tmp_path: Path) -> None:
    state = tmp_path / ".ect"
    commit = {
        "commit_sha": "abc",
        "outcome": "checked",
        "chars": 12,
        "loop_runs": 1,
        "first_run_ts": T0 + 3 * D,
    }
    assert events.record(state, "git.commit", ts=T0 + 3 * D + 60, **commit)
    fast, ref = _fast(state), _reference(state)
    _same(fast, ref)
    assert fast["events"] == 1 and fast["loop"]["hook_bypass"]["commits"] == 1
    assert fast["ab"]["metrics"]["hours_first_run_to_commit"]["without"] == pytest.approx(60 / 3600)
