"""Background training after commits: real `git commit`s through the hooks `ect hooks install` writes,
the detached trainer, its one-at-a-time lock, opting out, and the idle monitor that pauses it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from ect.models.after_commit import LOCK_NAME, LOG_NAME, running_trainer
from ect.models.background import IdleMonitor
from ect_testutil import git, git_proc, processes_in, run_ect

STORE = '''"""Storage."""


class Store:
    def __init__(self, root):
        self.root = root

    def fetch(self, key, default=None):
        return default

    def put(self, key, value):
        return value
'''
APP = "from shop.store import Store\n\n\ndef main():\n    store = Store('data')\n"
APP += "    store.fetch(1)\n" * 30
HOG = "import time\nt = time.time()\nwhile time.time() - t < 20:\n    pass\n"


def ect_processes(repo: Path) -> list[int]:
    """Pids of live Python processes working in `repo` (the hook's launcher, the trainer)."""
    pids = []
    for pid in processes_in(repo):
        try:
            here = os.readlink(f"/proc/{pid}/cwd") == os.path.realpath(repo)
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:  # gone meanwhile
            continue
        if here and b"python" in cmd.split(b"\0", 1)[0]:
            pids.append(pid)
    return pids


def wait_for(cond: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


def commit(repo: Path, msg: str) -> float:
    """`git commit -a` through the installed hooks; its wall time in seconds."""
    (repo / "notes.py").write_text(f"NOTE = {msg!r}\n")
    git(repo, "add", "-A")
    t0 = time.perf_counter()
    proc = git_proc(repo, "commit", "-q", "-m", msg, timeout=60)
    took = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr and "model-train" not in proc.stdout + proc.stderr
    return took


def end(pid: int) -> None:
    """SIGTERM (the trainer unwinds and exits); SIGKILL only if it is still there after 60 s."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}/cwd").exists():
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)


@pytest.fixture()
def repo(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "repo"
    for rel, text in {"shop/__init__.py": "", "shop/store.py": STORE, "app.py": APP}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "init")
    proc = run_ect(root, "hooks", "install")
    assert proc.returncode == 0, proc.stderr
    yield root
    left = ect_processes(root)
    for pid in left:
        end(pid)
    assert not left, "every process the hook started has ended"


def test_opt_in_starts_one_detached_low_priority_trainer_and_opting_out_starts_none(repo: Path) -> None:
    state = repo / ".ect"
    (repo / "ect.toml").write_text("[model]\ntrain_after_commit = false\n")  # the hook's grep matches
    commit(repo, "off")
    wait_for(lambda: not ect_processes(repo), 30, "the launcher to decide and exit")
    assert not (state / LOCK_NAME).exists() and not (state / LOG_NAME).exists()
    assert running_trainer(state) is None

    (repo / "ect.toml").write_text("[model]\ntrain_after_commit = true\n")
    took = commit(repo, "on")
    wait_for(lambda: running_trainer(state), 30, "the trainer to hold the lock")
    pid = running_trainer(state)
    assert pid is not None and pid > 0
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert cmd[-5:-1] == [b"model", b"train", b"--background", b"--until-done"]
        assert os.getsid(pid) == pid, "its own session: the terminal's Ctrl-C and hang-up leave it alone"
        # the commit returned while the trainer lives on (it waits 60 s for an idle machine first)
        assert took < 30 and Path(f"/proc/{pid}").exists()
        wait_for(lambda: os.sched_getscheduler(pid) == os.SCHED_IDLE, 30, "SCHED_IDLE")
        assert os.getpriority(os.PRIO_PROCESS, pid) == 19
        wait_for(lambda: "background training (pid" in (state / LOG_NAME).read_text(), 60, "the log")

        commit(repo, "again")  # a second commit while it runs: no second trainer
        wait_for(lambda: ect_processes(repo) == [pid], 30, "the second launcher to exit")
        assert running_trainer(state) == pid
        proc = run_ect(repo, "model", "train", "--max-minutes", "0.1")  # by hand: refused, one line
        assert proc.returncode == 2 and f"pid {pid}" in proc.stderr and "Traceback" not in proc.stderr
        assert (state / LOG_NAME).read_text().count("--- ") == 1
        which = run_ect(repo, "model", "which", "--json")
        assert json.loads(which.stdout)["training_pid"] == pid, which.stderr
    finally:
        with_cpu(pid)
        end(pid)
    wait_for(lambda: not ect_processes(repo), 30, "the trainer to exit")
    assert running_trainer(state) is None
    assert "stopped by signal 15" in (state / LOG_NAME).read_text()


def with_cpu(pid: int) -> None:
    """Back to the normal policy (allowed at nice 19), so that a starved idle-class process on a busy
    test machine handles SIGTERM promptly."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.sched_setscheduler(pid, os.SCHED_OTHER, os.sched_param(0))


@pytest.mark.slow
def test_trainer_started_by_a_commit_trains_the_tiny_model_and_exits_when_up_to_date(
    repo: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from ect_testutil import make_tiny_base

    base = make_tiny_base(tmp_path_factory.mktemp("tiny"), [STORE, APP])
    args = ["--settle-seconds", "0", "--max-busy", "1", "--keep-priority", "--hours", "0.1"]
    (repo / "ect.toml").write_text(
        f'[model]\nbase = "{base}"\nmax_epochs = 1\nheld_out_percent = 30\n'
        f"train_after_commit = true\ntrain_after_commit_args = {json.dumps(args)}\n"
    )
    commit(repo, "on")
    wait_for(lambda: running_trainer(repo / ".ect"), 30, "the trainer")
    wait_for(lambda: not ect_processes(repo), 240, "the trainer to finish (--until-done)")
    log = (repo / ".ect" / LOG_NAME).read_text()
    assert "chunk 1:" in log and "background:" in log and "Traceback" not in log, log
    meta = json.loads((repo / ".ect" / "model" / "ect_model.json").read_text())
    assert meta["commit"] == git(repo, "rev-parse", "HEAD").strip()


def test_the_hook_path_imports_neither_torch_nor_transformers(repo: Path) -> None:
    """The launcher's whole opted-in path (config, settings, lock, 'already running') without torch."""
    from ect.models.after_commit import hold_trainer_lock, release_trainer_lock

    (repo / "ect.toml").write_text("[model]\ntrain_after_commit = true\n")
    fd = hold_trainer_lock(repo / ".ect")  # this test process plays the running trainer
    assert fd is not None
    code = (
        "import sys\nfrom pathlib import Path\nfrom ect.models.after_commit import maybe_start\n"
        "print(maybe_start(Path.cwd()))\n"
        "print(sorted(m for m in ('torch', 'transformers', 'click', 'git') if m in sys.modules))\n"
    )
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, timeout=60
        )
    finally:
        release_trainer_lock(fd)
    assert running_trainer(repo / ".ect") is None
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [f"already running (pid {os.getpid()})", "[]"]


def test_idle_monitor_sees_another_process_using_the_cpu() -> None:
    """What stops a background chunk at its next step: others' CPU use over `max_busy` (the trainer's
    own use never counts)."""
    hog = subprocess.Popen([sys.executable, "-c", HOG])
    try:
        one_core = 1 / (os.cpu_count() or 1)
        monitor = IdleMonitor(max_busy=one_core / 2, min_interval_s=0.0)
        monitor.others()
        time.sleep(1.5)
        assert monitor.others() > one_core / 2  # the hog keeps one core busy
        time.sleep(0.5)
        assert monitor.busy()
    finally:
        hog.kill()
        hog.wait(timeout=10)
