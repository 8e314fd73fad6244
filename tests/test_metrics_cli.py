"""`ect report` formats and errors, the post-commit bypass detection, prune, and the event store itself."""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ect import events

ENV = {
    "GIT_AUTHOR_NAME": "Ann",
    "GIT_AUTHOR_EMAIL": "ann@example.com",
    "GIT_COMMITTER_NAME": "Ann",
    "GIT_COMMITTER_EMAIL": "ann@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def env() -> dict[str, str]:
    e = {**os.environ, **ENV}
    e.pop("ECT_METRICS_URL", None)
    return e


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, env=env(), check=True
    ).stdout


def ect(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ect", *args], cwd=repo, capture_output=True, text=True, env=env(), timeout=120
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "pkg").mkdir()
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "m.py").write_text("def f():\n    return 1\n")
    (root / "tests").mkdir()
    (root / "tests" / "test_m.py").write_text("from pkg.m import f\n\n\ndef test_f():\n    assert f() == 1\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "initial")
    return root


def some_events(state: Path, now: float) -> None:
    for i in range(10):
        events.record(
            state,
            "loop.run",
            ts=now - 3600 * (i + 1),
            source="cli",
            repo="repo",
            outcome="pass" if i % 3 else "fail",
            duration_ms=100.0 + i,
            phases={"changes": 1.0, "compile": 2.0, "select": 0.5, "tests": 90.0 + i},
        )
        events.record(state, "completion.shown", ts=now - 3600 * (i + 1), chars=10)
    events.record(state, "completion.accepted", ts=now - 3600, chars=10)
    events.record(state, "completion.dismissed", ts=now - 3600)


def test_bad_since_and_until_are_one_line_errors(repo: Path) -> None:
    some_events(repo / ".ect", time.time())
    for args, needle in (
        (["--since", "yesterdayish"], "--since: cannot read 'yesterdayish'"),
        (["--since", "30d", "--until", "2020-13-45"], "--until: cannot read"),
        (["--since", "1d", "--until", "3d"], "must be after --since"),
        (["--by", "planet"], "Invalid value for '--by'"),
    ):
        res = ect(repo, "report", *args)
        assert res.returncode == 2, (args, res.stdout, res.stderr)
        assert needle in res.stderr
        assert "Traceback" not in res.stderr


def test_empty_store_and_empty_window_say_so(repo: Path) -> None:
    res = ect(repo, "report")
    assert res.returncode == 1
    assert "no events recorded yet" in res.stderr and "Traceback" not in res.stderr
    some_events(repo / ".ect", time.time())
    res = ect(repo, "report", "--since", "2020-01-01", "--until", "2020-02-01")
    assert res.returncode == 1
    assert "no events between 2020-01-01T00:00:00Z and 2020-02-01T00:00:00Z" in res.stderr
    assert "it holds 22 events" in res.stderr


def test_formats_table_json_csv_and_output_file(repo: Path) -> None:
    some_events(repo / ".ect", time.time())
    table = ect(repo, "report", "--since", "2d", "--by", "day")
    assert table.returncode == 0, table.stderr
    for title in (
        "Loop",
        "Editor",
        "Adoption",
        "Review",
        "Delivery (DORA four keys)",
        "A/B",
        "Trends per week",
        "By day",
    ):
        assert title in table.stdout
    assert "note: no git.commit events: install the hooks" in table.stdout
    data = json.loads(ect(repo, "report", "--since", "2d", "--format", "json").stdout)
    assert data["loop"]["runs"] == 10
    assert data["loop"]["outcomes"]["fail"] == 4
    assert data["editor"]["completions"]["acceptance_rate"] == pytest.approx(0.1)
    assert data["adoption"]["completion_dismissal_rate"] == pytest.approx(0.1)
    rows = dict(csv.reader(io.StringIO(ect(repo, "report", "--since", "2d", "--format", "csv").stdout)))
    assert rows["loop.runs"] == "10"
    assert float(rows["loop.latency_ms.total.p50"]) == pytest.approx(104.5)
    out = repo / "r.json"
    res = ect(repo, "report", "--since", "2d", "--format", "json", "--output", str(out))
    assert res.returncode == 0 and res.stdout == ""
    assert json.loads(out.read_text())["loop"]["runs"] == 10


def test_old_schema_is_migrated_with_a_message(repo: Path) -> None:
    state = repo / ".ect"
    events.ensure_state_dir(state)
    conn = sqlite3.connect(state / events.DB_NAME)
    conn.executescript(events.MIGRATIONS[0] + "; PRAGMA user_version = 1;")
    now = time.time()
    data = json.dumps(
        {
            "phases": {"changes": 2.0, "compile": 4.0, "select": 1.0, "tests": 50.0},
            "test_files_selected": 2,
            "test_files_total": 8,
        }
    )
    conn.executemany(
        "INSERT INTO events (ts, kind, repo, duration_ms, outcome, data) VALUES (?, ?, ?, ?, ?, ?)",
        [(now - 60 * i, "loop.run", "repo", 60.0, "pass", data) for i in range(1, 4)],
    )
    conn.commit()
    conn.close()
    res = ect(repo, "report", "--since", "1d", "--format", "json")
    assert res.returncode == 0, res.stderr
    assert (
        "migrated event store" in res.stderr and f"from schema v1 to v{events.SCHEMA_VERSION}" in res.stderr
    )
    report = json.loads(res.stdout)
    assert report["loop"]["latency_ms"]["tests"]["p50"] == pytest.approx(50.0)
    assert report["loop"]["selection"]["test_files_total"] == 24
    old = events.query(state)
    assert len({e["uid"] for e in old}) == 3 and old[0]["phases"]["compile"] == 4.0


def test_newer_schema_is_refused_clearly(repo: Path) -> None:
    state = repo / ".ect"
    events.ensure_state_dir(state)
    conn = sqlite3.connect(state / events.DB_NAME)
    conn.execute(f"PRAGMA user_version = {events.SCHEMA_VERSION + 5}")
    conn.close()
    res = ect(repo, "report")
    assert res.returncode == 2
    assert "newer than this ect" in res.stderr and "Traceback" not in res.stderr


def _install_hooks(repo: Path) -> None:
    hooks = repo / ".git" / "hooks"
    py = sys.executable
    for name, body in (
        ("pre-commit", f'exec "{py}" -m ect check --staged --trigger hook\n'),
        ("post-commit", f'exec "{py}" -m ect metrics post-commit\n'),
    ):
        path = hooks / name
        path.write_text("#!/bin/sh\n" + body)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)


def test_post_commit_detects_no_verify_bypass_and_uninstalled_hook(repo: Path) -> None:
    _install_hooks(repo)
    (repo / "pkg" / "m.py").write_text("def f():\n    return 1\n\n\ndef g():\n    return 2\n")
    git(repo, "commit", "-qam", "checked")
    (repo / "pkg" / "m.py").write_text("def f():\n    return 1\n\n\ndef g():\n    return 3\n")
    git(repo, "commit", "-qam", "skipped", "--no-verify")
    commits = events.query(repo / ".ect", kind="git.commit")
    assert [c["outcome"] for c in commits] == ["checked", "bypassed"]
    assert commits[0]["author"] == "ann@example.com"
    assert commits[0]["loop_runs"] == 1 and commits[0]["first_run_outcome"] == "pass"
    assert commits[0]["chars"] == len("def g():") + len("    return 2")
    assert commits[1]["loop_runs"] == 0
    bypassed = events.query(repo / ".ect", kind="hook.bypassed")
    assert [b["commit_sha"] for b in bypassed] == [git(repo, "rev-parse", "HEAD").strip()]
    # the hook's loop run is attributed to the committer too (identity from git config / post-commit)
    assert {e["author"] for e in events.query(repo / ".ect", kind="loop.run")} == {"ann@example.com"}
    (repo / ".git" / "hooks" / "pre-commit").unlink()
    (repo / "pkg" / "m.py").write_text("def f():\n    return 2\n")
    git(repo, "commit", "-qam", "no hook")
    assert len(events.query(repo / ".ect", kind="hook.uninstalled")) == 1
    report = json.loads(ect(repo, "report", "--since", "1d", "--format", "json").stdout)
    assert report["loop"]["hook_bypass"] == {"commits": 3, "bypassed": 2, "rate": pytest.approx(2 / 3)}
    assert report["adoption"]["hooks_uninstalled"]["developers"] == 1


def test_merge_commits_are_not_counted_as_bypasses(repo: Path) -> None:
    _install_hooks(repo)
    git(repo, "checkout", "-qb", "side")
    (repo / "side.txt").write_text("x\n")
    git(repo, "add", "side.txt")
    git(repo, "commit", "-qm", "side")
    git(repo, "checkout", "-q", "main")
    (repo / "main.txt").write_text("y\n")
    git(repo, "add", "main.txt")
    git(repo, "commit", "-qm", "main")
    (repo / "side.txt").write_text("conflict\n")
    git(repo, "add", "side.txt")
    git(repo, "commit", "-qm", "main 2")
    subprocess.run(["git", "merge", "-q", "--no-edit", "side"], cwd=repo, env=env(), capture_output=True)
    (repo / "side.txt").write_text("resolved\n")
    git(repo, "add", "side.txt")
    git(repo, "commit", "-q", "--no-edit", "--no-verify")  # concluding a merge: post-commit sees 2 parents
    outcomes = [c["outcome"] for c in events.query(repo / ".ect", kind="git.commit")]
    assert outcomes == ["checked", "checked", "checked", "merge"]
    assert events.query(repo / ".ect", kind="hook.bypassed") == []


def test_prune_deletes_old_events_only(repo: Path) -> None:
    state = repo / ".ect"
    now = time.time()
    for days in (1, 10, 100, 200):
        events.record(state, "loop.run", ts=now - days * 86400, outcome="pass", duration_ms=5.0)
    res = ect(repo, "metrics", "prune", "--older-than", "90d", "--dry-run")
    assert "would delete 2 events" in res.stdout
    assert len(events.query(state)) == 4
    res = ect(repo, "metrics", "prune", "--older-than", "90d")
    assert res.returncode == 0 and "deleted 2 events" in res.stdout
    assert sorted(round((now - e["ts"]) / 86400) for e in events.query(state)) == [1, 10]
    res = ect(repo, "metrics", "prune", "--older-than", "soon")
    assert res.returncode == 2 and "--older-than: cannot read 'soon'" in res.stderr


def test_busy_database_spools_instead_of_losing(tmp_path: Path) -> None:
    state = tmp_path / ".ect"
    events.record(state, "x.first")
    blocker = sqlite3.connect(state / events.DB_NAME, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    t = time.perf_counter()
    assert events.record(state, "x.while_locked", n=1)
    elapsed = time.perf_counter() - t
    blocker.execute("ROLLBACK")
    blocker.close()
    assert elapsed < 0.5
    assert (state / events.SPOOL_NAME).exists()
    kinds = [e["kind"] for e in events.query(state)]
    assert kinds == ["x.first", "x.while_locked"]
    assert not (state / events.SPOOL_NAME).exists()
    assert len(events.query(state)) == 2  # ingesting twice never duplicates


def test_corrupt_database_is_moved_aside_and_rebuilt(tmp_path: Path) -> None:
    state = tmp_path / ".ect"
    events.ensure_state_dir(state)
    (state / events.DB_NAME).write_bytes(b"this is not a database" * 100)
    assert events.record(state, "x.after")
    assert [e["kind"] for e in events.query(state)] == ["x.after"]
    assert list(state.glob(events.DB_NAME + ".corrupt-*"))


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    state = tmp_path / ".ect"
    code = (
        "import sys; from pathlib import Path; from ect import events\n"
        "for i in range(150): events.record(Path(sys.argv[1]), 'x.w', n=i, w=sys.argv[2])\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(state), str(w)], env=env()) for w in range(4)]
    assert [p.wait(timeout=120) for p in procs] == [0] * 4
    got = events.query(state)
    assert len(got) == 600 and len({e["uid"] for e in got}) == 600


def test_production_is_the_last_configured_stage_and_review_bot_is_recognised(repo: Path) -> None:
    (repo / "pyproject.toml").write_text('[tool.ect]\nstages = ["qa", "live"]\n')
    state = repo / ".ect"
    now = time.time() - 7200
    events.record(state, "review.requested", ts=now, commit_sha="h1", author="ann@example.com")
    events.record(state, "review.comment", ts=now + 30, commit_sha="h1", author="ect-bot", source="review")
    events.record(state, "review.approved", ts=now + 600, commit_sha="h1", author="bob@example.com")
    events.record(
        state, "promotion.done", ts=now + 900, commit_sha="h1", stage="qa", first_commit_ts=now - 60
    )
    events.record(
        state, "promotion.done", ts=now + 1200, commit_sha="h1", stage="live", first_commit_ts=now - 60
    )
    report = json.loads(ect(repo, "report", "--since", "1d", "--format", "json").stdout)
    assert report["delivery"]["production_stage"] == "live"
    assert report["delivery"]["deployments"] == 1
    assert report["delivery"]["lead_time"]["p50_s"] == pytest.approx(1260)
    assert report["review"]["first_bot_comment"]["p50_s"] == pytest.approx(30)
    assert report["review"]["first_human_action"]["p50_s"] == pytest.approx(600)
    (repo / "pyproject.toml").write_text('[tool.ect.metrics]\nproduction_stage = "qa"\nbogus = 1\n')
    res = ect(repo, "report", "--since", "1d")
    assert res.returncode == 2 and "unknown key 'metrics.bogus'" in res.stderr


def test_team_commands_without_a_team_database_say_how_to_configure_it(repo: Path) -> None:
    some_events(repo / ".ect", time.time())
    res = ect(repo, "metrics", "sync")
    assert res.returncode == 2 and "team mode is off: set ECT_METRICS_URL" in res.stderr
    res = ect(repo, "report", "--team")
    assert res.returncode == 2 and "--team needs a database" in res.stderr
    res = ect(repo, "report", "--url", "mysql://nope")
    assert res.returncode == 2 and "must be a postgresql:// URL" in res.stderr
    status = ect(repo, "metrics", "status")
    assert status.returncode == 0 and "events: 22" in status.stdout and "team mode: off" in status.stdout
