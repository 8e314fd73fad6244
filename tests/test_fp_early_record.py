"""The recording is stored while pytest exits: pytest's plugin signals its results, ect starts
storing them, and writes them only if the run, once ended, is the run they came from."""

from __future__ import annotations

from pathlib import Path

from ect_testutil import write

from ect import runner
from ect.config import load_config
from ect.fingerprints.store import open_store
from ect.loop import Scope, run_loop

# pytest's exit waits (at most 20 s) until ect has been handed the results
WAIT_FOR_ECT = """
import os, time

def pytest_unconfigure(config):
    marker = os.environ["ECT_TEST_MARKER"]
    deadline = time.monotonic() + 20
    while not os.path.exists(marker) and time.monotonic() < deadline:
        time.sleep(0.02)
    print("exit released" if os.path.exists(marker) else "exit not released")
"""

SLOW_EXIT = """
import time

def pytest_unconfigure(config):
    time.sleep(30)
"""

TESTS = "def test_ok():\n    assert True\n\ndef test_bad():\n    assert False\n"


def test_results_reach_ect_while_pytest_is_still_running(make_repo, tmp_path: Path, monkeypatch) -> None:
    repo = make_repo({"tests/conftest.py": WAIT_FOR_ECT, "tests/test_a.py": TESTS})
    marker = tmp_path / "released"
    monkeypatch.setenv("ECT_TEST_MARKER", str(marker))
    seen: list[runner.TestRun] = []

    def on_results(run: runner.TestRun) -> None:
        seen.append(run)
        marker.write_text("1")  # lets pytest exit

    final = runner.run_pytest(
        repo, load_config(repo), ["tests/test_a.py"], stream=False, on_results=on_results
    )
    assert "exit released" in final.output  # called before pytest exited, not after
    assert len(seen) == 1
    assert (
        seen[0].outcomes
        == final.outcomes
        == {
            "tests/test_a.py::test_ok": "passed",
            "tests/test_a.py::test_bad": "failed",
        }
    )
    assert seen[0].exit_code == final.exit_code == 1


def test_a_run_that_ends_otherwise_than_it_reported_is_recorded_as_it_ended(make_repo) -> None:
    repo = make_repo({"tests/conftest.py": SLOW_EXIT, "tests/test_a.py": "def test_ok():\n    assert True\n"})
    cfg = load_config(repo)
    res = run_loop(repo, cfg, Scope(mode="all"), stream=False, timeout=4)
    assert res.test_run is not None and res.test_run.exit_code == 124  # stopped while exiting
    store = open_store(repo, cfg)
    try:
        # the results said "all passed"; the run as it ended timed out: not a full recording
        assert store.full_recording() is None
        assert store.conn.execute("SELECT count(*) FROM records").fetchone()[0] == 1
    finally:
        store.close()
    write(repo, {"tests/conftest.py": ""})
    res = run_loop(repo, cfg, Scope(mode="all"), stream=False, timeout=60)
    assert res.exit_code == 0
    store = open_store(repo, cfg)
    try:
        assert store.full_recording() is not None  # recorded early, and kept: the run ended as reported
    finally:
        store.close()
