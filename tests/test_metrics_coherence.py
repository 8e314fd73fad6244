"""Numbers that agree with each other (issue 17, defects 4 and 5), from a small hand-made history.

The history (T0 = Monday 2026-11-02 00:00 UTC) is recorded through `ect.events.record` and read
back by the real `ect report --format json`; every expected figure is computed by hand below.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ect import events

T0 = 1793577600.0  # 2026-11-02T00:00:00Z, a Monday
H, D = 3600.0, 86400.0
BOT = "ect-bot"


def rec(state: Path, kind: str, ts: float, **fields: Any) -> None:
    assert events.record(state, kind, ts=ts, **fields)


def run(
    state: Path, ts: float, ms: float, tests: float | None, sel: int, sha: str, changed: int, **kw: Any
) -> None:
    phases = {"changes": 5.0, "compile": 10.0, "select": 1.0}
    if tests is not None:
        phases["tests"] = tests
    rec(
        state,
        "loop.run",
        ts,
        source=kw.pop("source", "hook"),
        repo="r",
        outcome=kw.pop("outcome", "pass"),
        duration_ms=ms,
        phases=phases,
        test_files_selected=sel,
        test_files_total=10,
        commit_sha=sha,
        files_changed=changed,
        **kw,
    )


def history(state: Path) -> None:
    t = T0 + 2 * D + 9 * H  # Wednesday: the window starts here, so its week is partial
    rec(state, "git.commit", t - D, commit_sha="h0", outcome="checked", parents=["base"])  # first event
    # developer runs: two ran tests (900 and 1000 ms in tests), three needed none (no tests phase)
    run(state, t + 10, 1000, 900, 2, "h0", 2, outcome="fail")  # attempt 1, red
    run(state, t + 20, 1100, 1000, 2, "h0", 3)  # attempt 2, green
    run(state, t + 30, 50, None, 0, "h0", 0)  # attempt 1 (after green), nothing selected
    run(state, t + 40, 60, None, 0, "h0", 0)  # re-run, no edit: not an attempt
    run(state, t + 50, 70, None, 0, "h0", 0)  # re-run again
    run(state, t + 60, 99_999, 99_000, 10, "h0", 5, source="review")  # the review bot's check run
    # change h: requested at h1, a new commit h2 on it, then bot comment and approval on h2
    rec(state, "review.requested", t + 100, commit_sha="h1", repo="r", first_commit_ts=t - 500)
    rec(state, "git.commit", t + 200, commit_sha="h2", outcome="checked", parents=["h1"])
    rec(state, "review.comment", t + 300, commit_sha="h2", author=BOT, repo="r")
    rec(
        state,
        "review.approved",
        t + 3 * H,
        commit_sha="h2",
        author="rev@x",
        repo="r",
        first_commit_ts=t - 500,
    )
    # change k: the bot ran and found nothing
    rec(state, "review.requested", t + 400, commit_sha="k1", repo="r", first_commit_ts=t - 900)
    rec(state, "review.checked", t + 460, commit_sha="k1", author=BOT, repo="r", findings=0)
    # change m: approved at a commit with no recorded lineage, tied by its first commit time
    rec(state, "review.requested", t + 500, commit_sha="m1", repo="r", first_commit_ts=t - 7000)
    rec(
        state,
        "review.approved",
        t + 2 * H,
        commit_sha="m9",
        author="rev@x",
        repo="r",
        first_commit_ts=t - 7000,
    )
    # one deployment, alarmed and rolled back by the rollout
    rec(state, "promotion.done", t + 4 * H, stage="production", commit_sha="d1", first_commit_ts=t)
    rec(
        state, "rollout.alarm", t + 4 * H + 650, stage="production", revision="d1", wave=2, at=t + 4 * H + 600
    )
    rec(
        state,
        "rollout.rollback",
        t + 4 * H + 1900,
        stage="production",
        revision="d1",
        wave=2,
        at=t + 4 * H + 1800,
    )


START = "2026-11-04T09:00:00"  # T0 + 2 d 9 h
UNTIL = "2026-11-06T09:00:00"  # two days later
# a month before UNTIL, as a date: `--since 30d` counts back from the clock, so after 2026-12-03 09:00
# the window no longer reached back past the first event and the clamping under test never happened
SINCE = "2026-10-07T09:00:00"


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("coherence") / "repo"
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    history(root / ".ect")
    return root


@pytest.fixture(scope="module")
def report(repo: Path) -> dict[str, Any]:
    res = subprocess.run(
        [sys.executable, "-m", "ect", "report", "--since", SINCE, "--until", UNTIL, "--format", "json"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(),
    )
    assert res.returncode == 0, res.stderr
    return dict(json.loads(res.stdout))


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != events.URL_ENV}


def test_phases_are_over_the_same_runs_as_the_total(report: dict[str, Any]) -> None:
    lat = report["loop"]["latency_ms"]
    assert report["loop"]["latency_runs"] == 5  # the bot's run is not among them
    assert lat["total"]["p50"] == pytest.approx(70)
    assert lat["tests"]["p50"] == pytest.approx(0)  # three of five runs spent nothing in tests
    for phase, v in lat.items():
        assert v["p50"] <= lat["total"]["p50"] and v["p90"] <= lat["total"]["p90"], phase


def test_bot_runs_and_reruns_are_not_developer_attempts(report: dict[str, Any]) -> None:
    loop = report["loop"]
    assert (loop["runs"], loop["bot_runs"]) == (5, 1)
    # attempts: red (1), green (2), green (1); the two re-runs with no edit are not attempts
    assert loop["first_pass_green"] == {"rate": pytest.approx(0.5), "first_attempts": 2}


def test_time_saved_counts_runs_that_selected_nothing(report: dict[str, Any]) -> None:
    sel = report["loop"]["selection"]
    # selected runs: 900 ms / 2 files x 8 + 1000 / 2 x 8 = 7600 ms; the mean file takes
    # 1900 / 4 = 475 ms, and three runs skipped all 10 files: 14250 ms
    assert sel["runs_selecting_nothing"] == 3
    assert sel["time_saved_s"] == pytest.approx(21.9, abs=0.05)


def test_review_turnaround_follows_the_change_not_the_commit(report: dict[str, Any]) -> None:
    r = report["review"]
    assert r["requests"] == 3
    bot = r["first_bot_comment"]  # h: 200 s (on the later commit h2), k: 60 s (no findings); m none
    assert (bot["n"], bot["pending"]) == (2, 1)
    assert bot["p50_s"] == pytest.approx(130)
    appr = r["approval"]  # h: 3 h - 100 s; m: 2 h - 500 s
    assert (appr["n"], appr["pending"]) == (2, 1)
    assert appr["p50_s"] == pytest.approx(((3 * H - 100) + (2 * H - 500)) / 2)


def test_deployment_frequency_over_the_observed_span_and_rollout_failures(report: dict[str, Any]) -> None:
    d = report["delivery"]
    freq = d["deployment_frequency"]
    # the store starts a day before the window's first event: 3 days observed, not 30
    assert freq["over_days"] == pytest.approx(3.0, abs=0.01)
    assert freq["per_week"] == pytest.approx(7 / 3, abs=0.01)
    assert d["change_failure_rate"]["failed"] == 1
    assert d["time_to_restore"]["p50_s"] == pytest.approx(1200)  # alarm at +600 s to rollback at +1800 s


def test_window_clamped_and_partial_weeks_marked(report: dict[str, Any]) -> None:
    assert report["window"]["clamped_to_first_event"] is True
    assert report["window"]["since"] == "2026-11-03T09:00:00Z"
    weeks = {r["group"]: r for r in report["trends"]}
    assert weeks["2026-11-02"]["partial"] is True
    assert any("partly inside the window" in n for n in report["notes"])
    assert any("review bot are not counted" in n for n in report["notes"])


def test_weekly_percentiles_are_exact_or_their_error_is_stated(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ect.metrics import report as report_mod
    from ect.metrics import store as store_mod

    state = repo / ".ect"
    start, end = T0 + D, T0 + 4 * D + 9 * H
    s = store_mod.SqliteStore(state)
    try:
        exact = report_mod.build(s, start, end)
        row = next(r for r in exact["trends"] if r["group"] == "2026-11-02")
        assert row["loop_p50_ms"] == pytest.approx(70) and row["loop_p50_sample"] == 1
        monkeypatch.setattr(store_mod, "EXACT_LIMIT", 2)
        monkeypatch.setattr(report_mod, "EXACT_LIMIT", 2, raising=False)
        sampled = report_mod.build(s, start, end)
    finally:
        s.close()
    row = next(r for r in sampled["trends"] if r["group"] == "2026-11-02")
    # a week is a time range: exact whatever its size (sorted values per day), never sampled
    assert row["loop_p50_ms"] == pytest.approx(70) and row["loop_p50_sample"] == 1
    # so are the overall percentiles: the same figures, no sampling note
    assert sampled["loop"]["latency_ms"] == exact["loop"]["latency_ms"]
    assert not any("sample" in n for n in sampled["notes"])


def test_cached_days_and_weeks_equal_a_fresh_report_and_follow_late_events(tmp_path: Path) -> None:
    """The report keeps whole days and weeks between runs (valid while no event arrives in them):
    a second report equals the first, and an event added late to a past day is counted."""
    from ect.metrics import report as report_mod
    from ect.metrics.cache import CACHE_NAME
    from ect.metrics.store import SqliteStore

    state = tmp_path / ".ect"
    history(state)
    rec(state, "completion.shown", T0 - 8 * D)  # events around the history: its days and weeks are whole
    rec(state, "completion.shown", T0 + 20 * D)
    start, end = T0 - 7 * D, T0 + 14 * D

    def build() -> dict[str, Any]:
        s = SqliteStore(state)
        try:
            out = report_mod.build(s, start, end, by="week")
        finally:
            s.close()
        out.pop("elapsed_ms")
        return out

    first = build()
    cached = json.loads((state / CACHE_NAME).read_text())["entries"]
    assert "D20761|''" in cached  # 2026-11-04
    with sqlite3.connect(state / "report-values.db") as values:  # its sorted latencies
        assert values.execute("SELECT n FROM days WHERE day = 20761").fetchone() == (
            5,
        )  # the timed developer runs
    assert build() == first
    (state / CACHE_NAME).write_text("{not json")  # a damaged cache is ignored, then rewritten
    assert build() == first
    run(state, T0 + 2 * D + 9 * H + 15, 5000, 4000, 2, "h0", 4)  # late: a day already cached
    late = build()
    assert late["loop"]["runs"] == first["loop"]["runs"] + 1
    week = next(r for r in late["trends"] if r["group"] == "2026-11-02")
    assert week["loop_runs"] == 6 and week["loop_p50_ms"] == pytest.approx(535)  # (70 + 1000) / 2
