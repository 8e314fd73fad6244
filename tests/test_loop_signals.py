"""Timeouts and signals: a hung test is stopped and named; whatever ends ect ends its children.

Real processes: `ect check` runs a test that starts a grandchild and hangs; the test counts the
processes still working in the repository (by their working directory) after ect is gone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ect_testutil import GIT_ENV, git

HANG = """
import os, subprocess, sys, time

def test_quick():
    assert True

def test_hang():
    # a grandchild; SIGINT ends it quietly, so any traceback in ect's output would be ect's own. It says
    # "ready" itself, once that is so: a SIGINT during its start-up would print a traceback of its own.
    quiet = (
        "import os, signal, time; signal.signal(signal.SIGINT, signal.SIG_DFL); "
        "open(os.environ['HANG_READY'], 'w').write('1'); time.sleep(300)"
    )
    subprocess.Popen([sys.executable, "-c", quiet])
    time.sleep(300)
"""


@pytest.fixture
def hang_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / "tests").mkdir(parents=True)
    (repo / "tests" / "test_hang.py").write_text(HANG)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "init")
    (tmp_path / "tmp").mkdir()
    return repo


def _env(repo: Path) -> dict[str, str]:
    return {
        **os.environ,
        **GIT_ENV,
        "HANG_READY": str(repo.parent / "ready"),
        "TMPDIR": str(repo.parent / "tmp"),
    }


def _working_in(repo: Path) -> list[int]:
    """Processes whose working directory is inside `repo` (pytest and what it started)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cwd = os.readlink(f"/proc/{entry}/cwd")
            except OSError:
                continue
            if cwd == str(repo) or cwd.startswith(str(repo) + "/"):
                found.append(int(entry))
    return found


def _assert_nothing_left(repo: Path) -> None:
    deadline = time.monotonic() + 10
    while _working_in(repo) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _working_in(repo) == []
    scratch = [p.name for p in (repo / ".ect").iterdir() if p.name.startswith(("fp-", "results-"))]
    leftovers = [n for n in scratch if n != "fp-code"]  # fp-code: the lasting instrumented-code cache
    assert leftovers == []
    assert list((repo.parent / "tmp").iterdir()) == []  # ect's scratch directories are gone too


def test_a_hung_test_is_stopped_and_named(hang_repo: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ect", "check", "--timeout", "3", "tests/test_hang.py"],
        cwd=hang_repo,
        env=_env(hang_repo),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "timed out: tests/test_hang.py::test_hang ran longer than 3 s" in out
    assert "Traceback" not in out
    _assert_nothing_left(hang_repo)
    last_failed = (hang_repo / ".ect" / "last_failed.json").read_text()
    assert "tests/test_hang.py::test_hang" in last_failed  # re-run next time


def test_timeout_config_key_and_bad_values(hang_repo: Path) -> None:
    (hang_repo / "ect.toml").write_text("test_timeout = -1\n")
    proc = subprocess.run(
        [sys.executable, "-m", "ect", "check", "tests/test_hang.py"],
        cwd=hang_repo,
        env=_env(hang_repo),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2 and "test_timeout" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "sig",
    [
        signal.SIGTERM,
        signal.SIGINT,
        pytest.param(signal.SIGHUP, marks=pytest.mark.slow),
    ],
)
@pytest.mark.parametrize("what", ["tests/test_hang.py", "--all"])  # --all: pytest starts while compiling
def test_a_signal_to_ect_ends_every_child_and_leaves_no_state(hang_repo: Path, sig: int, what: str) -> None:
    ect = subprocess.Popen(
        [sys.executable, "-m", "ect", "check", what],
        cwd=hang_repo,
        env=_env(hang_repo),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # like a terminal: the signal goes to ect only
    )
    try:
        ready = hang_repo.parent / "ready"
        deadline = time.monotonic() + 90
        while not ready.exists() and time.monotonic() < deadline and ect.poll() is None:
            time.sleep(0.05)
        assert ready.exists(), "the hanging test never started"
        assert len(_working_in(hang_repo)) >= 2  # pytest and its grandchild
        ect.send_signal(sig)
        out, _ = ect.communicate(timeout=30)
    finally:
        if ect.poll() is None:
            ect.kill()
    assert ect.returncode == 128 + sig, out
    assert "Traceback" not in out
    _assert_nothing_left(hang_repo)


@pytest.mark.slow
def test_sigterm_to_watch_ends_its_test_run(hang_repo: Path) -> None:
    ect = subprocess.Popen(
        [sys.executable, "-m", "ect", "watch", "--debounce", "50"],
        cwd=hang_repo,
        env=_env(hang_repo),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        time.sleep(2)
        test_file = hang_repo / "tests" / "test_hang.py"
        test_file.write_text(test_file.read_text() + "\n")
        ready = hang_repo.parent / "ready"
        deadline = time.monotonic() + 90
        while not ready.exists() and time.monotonic() < deadline and ect.poll() is None:
            time.sleep(0.05)
        assert ready.exists(), "the hanging test never started"
        ect.send_signal(signal.SIGTERM)
        out, _ = ect.communicate(timeout=30)
    finally:
        if ect.poll() is None:
            ect.kill()
    assert ect.returncode == 128 + signal.SIGTERM, out
    assert "Traceback" not in out
    _assert_nothing_left(hang_repo)
