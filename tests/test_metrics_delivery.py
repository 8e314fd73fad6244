"""DORA and review figures from a fixture history, checked against values computed by hand.

The history (T0 = Monday 2026-11-02 00:00 UTC, window = two weeks) has squash merges (branch
commits never deployed, the squashed commit deployed with the branch's first commit time), a
re-deploy, a rollback and deployments outside the window. The figures come from the real CLI.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ect import events

T0 = 1793577600.0  # 2026-11-02T00:00:00Z, a Monday
H, D = 3600.0, 86400.0


def git_repo(path: Path) -> Path:
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    subprocess.run(["git", "-C", str(path), "config", "user.email", "dev@example.com"], check=True)
    subprocess.run(["git", "-C", str(path), "config", "user.name", "Dev"], check=True)
    return path


def ect(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ect", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(),
    )


def _env() -> dict[str, str]:
    import os

    env = dict(os.environ)
    env.pop("ECT_METRICS_URL", None)
    return env


def record_history(state: Path) -> None:
    rec = events.record
    # deployments (production unless said otherwise)
    rec(state, "promotion.done", ts=T0 - D, stage="production", commit_sha="z0", first_commit_ts=T0 - 3 * D)
    rec(
        state,
        "promotion.done",
        ts=T0 + D,
        stage="production",
        commit_sha="a1",
        first_commit_ts=T0 + D - 5 * H,
    )
    # squash merge 1: branch commits b1..b3 (first at T0 + 2d - 30h), squashed into s1
    for i, sha in enumerate(("b1", "b2", "b3")):
        rec(state, "git.commit", ts=T0 + 2 * D - 30 * H + i * H, commit_sha=sha, outcome="checked")
    rec(
        state,
        "promotion.done",
        ts=T0 + 2 * D - 2 * H,
        stage="staging",
        commit_sha="s1",
        first_commit_ts=T0 + 2 * D - 30 * H,
    )
    rec(
        state,
        "promotion.done",
        ts=T0 + 2 * D,
        stage="production",
        commit_sha="s1",
        first_commit_ts=T0 + 2 * D - 30 * H,
    )
    # no first_commit_ts: falls back on the commit event of c1, 48 h before
    rec(state, "git.commit", ts=T0 + 3 * D - 48 * H, commit_sha="c1", outcome="checked")
    rec(state, "promotion.done", ts=T0 + 3 * D, stage="production", commit_sha="c1")
    # squash merge 2, deployed, then rolled back 2 h later by re-deploying a1
    rec(
        state,
        "promotion.done",
        ts=T0 + 5 * D,
        stage="production",
        commit_sha="s2",
        first_commit_ts=T0 + 5 * D - 10 * H,
    )
    rec(state, "rollback", ts=T0 + 5 * D + 2 * H, stage="production", commit_sha="s2", to_sha="a1")
    rec(
        state,
        "promotion.done",
        ts=T0 + 5 * D + 2 * H,
        stage="production",
        commit_sha="a1",
        first_commit_ts=T0 + D - 5 * H,
    )
    rec(
        state,
        "promotion.done",
        ts=T0 + 9 * D,
        stage="production",
        commit_sha="e1",
        first_commit_ts=T0 + 9 * D - H,
    )
    rec(
        state,
        "promotion.done",
        ts=T0 + 20 * D,
        stage="production",
        commit_sha="f1",
        first_commit_ts=T0 + 19 * D,
    )
    rec(state, "promotion.refused", ts=T0 + 8 * D, stage="production", commit_sha="x9")
    # reviews: r2 is a squash merge (requested on b1, approved on s1, same change id)
    rec(state, "review.requested", ts=T0, change="r1", commit_sha="a1")
    rec(state, "review.comment", ts=T0 + 120, change="r1", source="bot")
    rec(state, "review.comment", ts=T0 + 3 * H, change="r1", source="human", author="rev@example.com")
    rec(state, "review.approved", ts=T0 + 5 * H, change="r1", source="human", author="rev@example.com")
    rec(state, "review.requested", ts=T0 + D, change="feature-x", commit_sha="b1")
    rec(state, "review.comment", ts=T0 + D + 300, change="feature-x", commit_sha="b1", source="bot")
    rec(state, "review.approved", ts=T0 + 2 * D, change="feature-x", commit_sha="s1", source="human")
    rec(state, "review.requested", ts=T0 + 3 * D, change="r3")
    rec(state, "review.comment", ts=T0 + 3 * D + 60, change="r3", source="bot")
    rec(state, "review.rejected", ts=T0 + 3 * D + 2 * H, change="r3", source="human")
    rec(state, "review.approved", ts=T0 + 3 * D + 6 * H, change="r3", source="human")
    rec(state, "review.requested", ts=T0 + 4 * D, change="r4")
    rec(state, "review.comment", ts=T0 + 4 * D + 600, change="r4", source="bot")
    # loop runs with known latencies
    for i, ms in enumerate((100, 200, 300, 400, 1000)):
        rec(
            state,
            "loop.run",
            ts=T0 + 6 * D + i * 60,
            source="cli",
            repo="r",
            outcome="pass",
            duration_ms=ms,
            phases={"changes": 1, "compile": 2, "select": 3, "tests": ms - 6},
            test_files_selected=1,
            test_files_total=4,
        )


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    repo = git_repo(tmp_path_factory.mktemp("delivery") / "repo")
    record_history(repo / ".ect")
    res = ect(repo, "report", "--since", "2026-11-02", "--until", "2026-11-16", "--format", "json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_dora_four_keys_match_hand_computed_values(report: dict) -> None:
    d = report["delivery"]
    # in the window: a1, s1, c1, s2, a1 (re-deploy), e1; staging, z0 (before) and f1 (after) excluded
    assert d["deployments"] == 6
    assert d["deployment_frequency"]["per_day"] == pytest.approx(6 / 14)
    assert d["deployment_frequency"]["per_week"] == pytest.approx(3.0)
    assert d["deployment_frequency"]["tier"] == "high"
    # lead times of first deployments: a1 5h, s1 30h (squash: from the branch's first commit), c1 48h
    # (from its commit event), s2 10h, e1 1h; the re-deploy of a1 is not a new change
    lt = d["lead_time"]
    assert (lt["n"], lt["unknown"]) == (5, 0)
    assert lt["p50_s"] == pytest.approx(10 * H)
    assert lt["p75_s"] == pytest.approx(30 * H)
    assert lt["tier"] == "elite"
    cfr = d["change_failure_rate"]
    assert cfr["failed"] == 1
    assert cfr["rate"] == pytest.approx(1 / 6)
    assert cfr["tier"] == "low"
    ttr = d["time_to_restore"]
    assert (ttr["n"], ttr["p50_s"], ttr["tier"]) == (1, pytest.approx(2 * H), "high")


def test_review_turnaround_matches_hand_computed_values(report: dict) -> None:
    r = report["review"]
    assert r["requests"] == 4
    bot = r["first_bot_comment"]  # 60, 120, 300, 600 s
    assert (bot["n"], bot["pending"]) == (4, 0)
    assert bot["p50_s"] == pytest.approx(210)
    assert bot["p75_s"] == pytest.approx(375)
    human = r["first_human_action"]  # 2h (a rejection counts), 3h, 24h; r4 pending
    assert (human["n"], human["pending"]) == (3, 1)
    assert human["p50_s"] == pytest.approx(3 * H)
    assert human["p75_s"] == pytest.approx(13.5 * H)
    appr = r["approval"]  # 5h, 6h, 24h (squash merge: approved on another commit, same change)
    assert (appr["n"], appr["pending"]) == (3, 1)
    assert appr["p50_s"] == pytest.approx(6 * H)
    assert appr["p75_s"] == pytest.approx(15 * H)


def test_loop_percentiles_and_selection_are_exact(report: dict) -> None:
    loop = report["loop"]
    assert loop["runs"] == 5
    assert loop["latency_ms"]["total"] == {"p50": pytest.approx(300), "p90": pytest.approx(760)}
    assert loop["latency_ms"]["select"]["p50"] == pytest.approx(3)
    assert loop["first_pass_green"] == {"rate": 1.0, "first_attempts": 5}
    sel = loop["selection"]
    assert (sel["test_files_run"], sel["test_files_total"]) == (5, 20)
    # tests took 2000 - 30 ms for 5 selected files: 394 ms per file x 15 files not run
    assert sel["time_saved_s"] == pytest.approx(394 * 15 / 1000, abs=0.05)


def test_trends_place_deployments_in_their_weeks(report: dict) -> None:
    weeks = {row["group"]: row for row in report["trends"]}
    assert weeks["2026-11-02"]["deployments"] == 5
    assert weeks["2026-11-09"]["deployments"] == 1
    assert weeks["2026-11-02"]["loop_runs"] == 5
