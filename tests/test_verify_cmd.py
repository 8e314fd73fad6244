"""`ect verify` on a real repository: mutants, full suite vs selection, scratch worktree cleaned up."""

from __future__ import annotations

import json

from ect_testutil import git, run_ect
from fp_testutil import FAST, FP_SAMPLE


def test_verify_reports_full_recall_and_leaves_no_trace(make_repo, ran_log) -> None:
    repo = make_repo(FP_SAMPLE)
    proc = run_ect(repo, "verify", "--mutants", "6", "--seed", "3", "--json", env=FAST, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(proc.stdout)
    assert data["mutants"] == 6 and data["tests_total"] == 5
    assert data["caught_by_full_suite"] >= 1
    assert data["recall"] == 1.0 and data["misses"] == []
    assert 0 < data["median_test_time_fraction"] <= 1
    for result in data["results"]:
        assert result["path"].startswith("shop/") and result["operator"]
        if result["caught_full"]:
            assert result["caught_selection"]
    # the scratch worktree is gone, the user's tree and state are untouched
    assert git(repo, "worktree", "list").count("\n") == 1
    assert git(repo, "status", "--porcelain") == ""
    assert not (repo / ".ect" / "fingerprints.db").exists()
    # same seed, same mutants
    again = json.loads(
        run_ect(repo, "verify", "--mutants", "6", "--seed", "3", "--json", env=FAST, timeout=300).stdout
    )
    assert [(r["path"], r["line"], r["operator"]) for r in again["results"]] == [
        (r["path"], r["line"], r["operator"]) for r in data["results"]
    ]


def test_verify_text_output_and_bad_input(make_repo, tmp_path) -> None:
    repo = make_repo(FP_SAMPLE)
    proc = run_ect(repo, "verify", "--mutants", "2", env=FAST, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "recall:" in proc.stdout and "100.0%" in proc.stdout
    bad = run_ect(repo, "verify", "--mutants", "0")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    outside = run_ect(tmp_path, "verify")
    assert outside.returncode == 2 and outside.stderr.startswith("ect: error:")
    empty = make_repo({"README.md": "nothing\n"}, name="empty")
    proc = run_ect(empty, "verify", "--mutants", "2")
    assert proc.returncode == 2 and "ect: error:" in proc.stderr
