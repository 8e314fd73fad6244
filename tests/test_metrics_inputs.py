"""Bad and extreme inputs to `ect report` and `ect metrics` (issue 17, defects 3, 6 and 7): one line,
a non-zero exit, no traceback, and no good data moved or lost."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ect import events


def ect(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != events.URL_ENV}
    return subprocess.run(
        [sys.executable, "-m", "ect", *args], cwd=repo, capture_output=True, text=True, env=env, timeout=120
    )


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("inputs") / "repo"
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    events.record(root / ".ect", "loop.run", ts=time.time() - 3600, outcome="pass", duration_ms=12.0)
    return root


@pytest.mark.parametrize("since", ["99999999d", "1000000d", "9" * 40 + "w", "0001-01-01"])
def test_any_since_is_clamped_to_the_first_event(repo: Path, since: str) -> None:
    """Defect 3: the cost follows the events, not the window; no overflow."""
    res = ect(repo, "report", "--since", since, "--format", "json")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["window"]["clamped_to_first_event"] is True
    assert data["loop"]["runs"] == 1 and data["window"]["days"] < 1


def test_wording_plurals_and_window_messages(repo: Path, tmp_path: Path) -> None:
    """Defect 6: "1 event", and no `--until (None)`."""
    out = tmp_path / "r.json"
    res = ect(repo, "report", "--format", "json", "--output", str(out))
    assert res.returncode == 0 and "(json, 1 event)" in res.stderr
    table = ect(repo, "report").stdout
    assert ", 1 event," in " ".join(table.split())  # the header wraps where the temporary path ends
    res = ect(repo, "report", "--since", "2999-01-01")
    assert res.returncode == 2 and "--since (2999-01-01) must be in the past" in res.stderr
    assert "None" not in res.stderr
    res = ect(repo, "report", "--since", "1d", "--until", "3d")
    assert "--until (3d) must be after --since (1d)" in res.stderr


def _store(tmp_path: Path, kind: str) -> tuple[Path, Path]:
    root = tmp_path / kind
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    state = root / ".ect"
    if kind == "newer":
        events.record(state, "x")
        events._drop_writer(state)
        conn = sqlite3.connect(state / events.DB_NAME)
        conn.execute(f"PRAGMA user_version = {events.SCHEMA_VERSION + 3}")
        conn.close()
    else:
        state.mkdir()
        (state / events.DB_NAME).write_bytes(b"this is not sqlite\n" * 500)
    return root, state / events.DB_NAME


@pytest.mark.parametrize("kind", ["newer", "garbage"])
def test_metrics_commands_on_a_newer_or_damaged_store_say_one_line(tmp_path: Path, kind: str) -> None:
    """Defect 7: status, prune and sync each answer one line, exit non-zero and leave the file."""
    root, db = _store(tmp_path, kind)
    before = db.read_bytes()
    url_env = {events.URL_ENV: "postgresql://ect@127.0.0.1:9/none"}
    for args in (["metrics", "status"], ["metrics", "prune", "--older-than", "1d"], ["metrics", "sync"]):
        env = {**{k: v for k, v in os.environ.items() if k != events.URL_ENV}, **url_env}
        res = subprocess.run(
            [sys.executable, "-m", "ect", *args],
            cwd=root,
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert res.returncode != 0, (args, res.stdout)
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("ect: error:"), (args, res.stderr)
        assert "newer than this ect" in lines[0] if kind == "newer" else "event store" in lines[0]
        assert "internal error" not in res.stderr and "Traceback" not in res.stderr
    assert db.read_bytes() == before and not list(db.parent.glob("*.corrupt-*"))


def test_ab_line_names_a_side_without_data() -> None:
    """Defect 6: the A/B table said `- vs 1`; a side without data is now said in words."""
    from ect.metrics.formats import ab_line
    from ect.metrics.stats import welch

    d = welch([], [1.0])
    m = {
        "n_with": d.n_a,
        "n_without": d.n_b,
        "with": d.a,
        "without": d.b,
        "diff": d.diff,
        "ci95": [d.low, d.high],
        "relative": None,
        "relative_ci95": [None, None],
        "verdict": "too few samples",
    }
    assert ab_line(m) == "with: no data (n=0); without: 1 (n=1): no comparison"
    d = welch([2.0, 4.0], [1.0, 3.0])
    m.update(n_with=2, n_without=2)
    m.update(
        {
            "with": d.a,
            "without": d.b,
            "diff": d.diff,
            "ci95": [d.low, d.high],
            "verdict": "no significant difference",
        }
    )
    line = ab_line(m)
    assert line.startswith("with 3, without 2 (n=2/2; difference 1 [95% CI") and " - " not in line
