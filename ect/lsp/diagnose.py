"""Diagnostics on save: the loop for one file in a background thread; a newer save cancels an older run.

After publishing, verified fixes for the fixable failures are computed in the same thread and kept for
code actions. Nothing here imports pygls: results go to the `publish` callback as plain `Problem`s.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ect.fix.engine import FixEngine, FixResult
from ect.fix.failures import Failure
from ect.fix.warm_pytest import WarmPytest


@dataclass
class Problem:
    """One diagnostic: repo-relative path, 1-based line and column."""

    path: str
    line: int
    col: int
    message: str
    source: str  # 'ect:compile', 'ect:ruff', 'ect:test', 'ect:config'
    severity: str = "error"  # 'error' | 'warning'
    key: str = ""  # links the problem to its failure's fixes


@dataclass
class Run:
    generation: int
    path: str
    started: float
    problems: list[Problem] = field(default_factory=list)
    failures: dict[str, Failure] = field(default_factory=dict)
    fixes: dict[str, FixResult] = field(default_factory=dict)
    fixes_done: threading.Event = field(default_factory=threading.Event)
    loop_ms: float = 0.0
    cancelled: bool = False


def failure_key(f: Failure) -> str:
    return f"{f.kind}:{f.path}:{f.line}:{f.name}"


def _test_location(root: Path, nodeid: str) -> tuple[str, int]:
    """File and `def` line of a test node id (line 1 when not found)."""
    path, _, rest = nodeid.partition("::")
    name = rest.split("::")[-1].split("[")[0]
    try:
        for i, line in enumerate((root / path).read_text(encoding="utf-8").splitlines(), 1):
            stripped = line.lstrip()
            if name and stripped.startswith((f"def {name}(", f"async def {name}(")):
                return path, i
    except (OSError, UnicodeDecodeError):
        pass
    return path, 1


def kill_children(cwd: Path) -> None:
    """Stop the loop's pytest processes started by this server for `cwd` (Linux /proc; best effort)."""
    me = os.getpid()
    target = os.path.realpath(cwd)
    try:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            if ppid != me or os.path.realpath(f"/proc/{pid}/cwd") != target:
                continue
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmdline = fh.read()
            if b"pytest" not in cmdline or b"pytest_zygote" in cmdline:
                continue
            os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError, IndexError):
            continue


class Diagnoser:
    """Runs the loop for saved files, newest save wins."""

    def __init__(
        self,
        engine: FixEngine,
        publish: Callable[[Run], None],
        fixes: bool = True,
        warm: WarmPytest | None = None,
    ) -> None:
        self.engine = engine
        self.warm = warm
        self.publish = publish
        self.want_fixes = fixes
        self._cond = threading.Condition()
        self._pending: tuple[int, str] | None = None
        self._generation = 0
        self.latest: Run | None = None
        self._stopped = False
        self._busy: int | None = None  # generation of the run in progress
        self._thread = threading.Thread(target=self._work, name="ect-diagnostics", daemon=True)
        self._thread.start()

    def schedule(self, path: str) -> int:
        """Run the loop for `path` (repo-relative); cancels any older run."""
        with self._cond:
            self._generation += 1
            self._pending = (self._generation, path)
            self._cancel_running()
            self._cond.notify()
            generation = self._generation
        if self._busy is not None:
            threading.Thread(target=self._reap, name="ect-reaper", daemon=True).start()
        return generation

    def _cancel_running(self) -> None:
        self.engine.cancel()
        if self.warm is not None:
            self.warm.cancel()
        kill_children(self.engine.root)

    def _reap(self, limit_s: float = 30.0) -> None:
        """Keep stopping the stale run until it ends (its test process may not have started yet)."""
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            busy = self._busy
            if busy is None or busy == self._generation:
                return
            self._cancel_running()
            time.sleep(0.05)

    def stale(self, run: Run) -> bool:
        return run.generation != self._generation

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self.engine.cancel()
        if self.warm is not None:
            self.warm.cancel()
            self.warm.stop()
        kill_children(self.engine.root)

    def fixes_for(self, key: str, timeout: float = 60.0) -> FixResult | None:
        """Verified fixes for the failure `key` of the latest run (waits while they are being verified)."""
        run = self.latest
        if run is None or key not in run.failures:
            return None
        run.fixes_done.wait(timeout)
        return run.fixes.get(key)

    def _work(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._stopped:
                    self._cond.wait()
                if self._stopped:
                    return
                assert self._pending is not None
                generation, path = self._pending
                self._pending = None
                self.engine.cancelled.clear()
                self._busy = generation
            run = Run(generation, path, time.perf_counter())
            try:
                self._run(run)
            except Exception as exc:
                run.problems = [Problem(path, 1, 1, f"ect: diagnostics failed: {exc}", "ect", "warning")]
                if not self.stale(run):
                    self.publish(run)
            finally:
                self._busy = None
                run.fixes_done.set()

    def _run(self, run: Run) -> None:
        from ect.changes import Scope
        from ect.loop import run_loop
        from ect.runner import LAST_FAILED
        from ect.state import read_json, write_json

        engine = self.engine
        scope = Scope(mode="paths", paths=(str(engine.root / run.path),))
        last_failed = read_json(engine.cfg.state_path / LAST_FAILED)
        result = run_loop(
            engine.root,
            engine.loop_config(),
            scope,
            trigger="lsp",
            stream=False,
            pytest_runner=engine.pytest_runner,
        )
        failures = engine.failures_from(result)
        run.loop_ms = (time.perf_counter() - run.started) * 1000
        if self.stale(run):
            run.cancelled = True
            if isinstance(last_failed, dict):  # a killed run says nothing about its tests
                with contextlib.suppress(OSError):
                    write_json(engine.cfg.state_path / LAST_FAILED, last_failed)
            else:
                (engine.cfg.state_path / LAST_FAILED).unlink(missing_ok=True)
            return
        for f in failures:
            key = failure_key(f)
            run.failures[key] = f
            source = "ect:test" if f.step == "test" else f"ect:{f.step}"
            severity = "warning" if f.extra.get("severity") == "deprecated" else "error"
            message = f.message if f.step != "test" else f"{f.message} (failing: {', '.join(f.tests[:3])})"
            run.problems.append(Problem(f.path, f.line, 1, message, source, severity, key))
        located = {t for f in failures for t in f.tests}
        for e in result.compile_errors:
            if not any(p.path == e.path and p.line == e.line for p in run.problems):
                run.problems.append(Problem(e.path, e.line, e.col, e.message, f"ect:{e.step}"))
        for nodeid in result.tests_failed:
            path, line = _test_location(engine.root, nodeid)
            what = "test failed" if nodeid in located else "test failed (see pytest output)"
            run.problems.append(Problem(path, line, 1, f"{what}: {nodeid}", "ect:test"))
        self.latest = run
        self.publish(run)
        engine.refresh_index()  # after publishing: the saved file may define new names (completions, fixes)
        if not self.want_fixes:
            return
        for key, f in run.failures.items():
            if self.stale(run) or engine.cancelled.is_set():
                run.cancelled = True
                return
            if f.kind == "other":
                continue
            run.fixes[key] = engine.fix(f)  # offered (and recorded) when a code action asks for them
