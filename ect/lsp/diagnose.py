"""Diagnostics on save: the loop for one file in a background thread; a newer save cancels an older run.

A run is bounded by the configured test timeout (a hung test becomes a diagnostic naming it); the saved
file also gets a diagnostic on each changed block of lines that a failing test ran through. After
publishing, verified fixes for the fixable failures are computed in the same thread and kept for
code actions. Nothing here imports pygls: results go to the `publish` callback as plain `Problem`s.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ect.fix.engine import FixEngine, FixResult
from ect.fix.failures import Failure
from ect.fix.warm_pytest import WarmPytest
from ect.runner import TestRun


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
    related: list[tuple[str, int, str]] = field(default_factory=list)  # (path, 1-based line, message)


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


_HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+(\d+)(?:,(\d+))? @@", re.M)
MAX_CHANGED_BLOCKS = 20


def changed_lines(root: Path, path: str, timeout_s: float = 10.0) -> list[tuple[int, int]]:
    """1-based inclusive blocks of lines of `path` that differ from HEAD (the whole file when untracked)."""
    try:
        proc = subprocess.run(
            ["git", "diff", "--no-color", "--no-ext-diff", "-U0", "HEAD", "--", path],
            cwd=root,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout_s,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    if proc.returncode != 0:
        return []
    if not proc.stdout.strip():
        tracked = subprocess.run(
            ["git", "ls-files", "--error-unmatch", "--", path],
            cwd=root,
            capture_output=True,
            timeout=timeout_s,
            check=False,
        )
        return [] if tracked.returncode == 0 else [(1, 10**9)]
    blocks = []
    for m in _HUNK.finditer(proc.stdout[: 4 * 1024 * 1024]):
        start, count = int(m.group(1)), int(m.group(2) or 1)
        if count:
            blocks.append((start, start + count - 1))
    return blocks


def traced_problems(
    root: Path, path: str, records: list[dict[str, object]], blocks: list[tuple[int, int]]
) -> list[Problem]:
    """Problems in the saved file: each changed block that failing tests ran through."""
    ran: dict[tuple[int, int], list[str]] = {}
    for rec in records:
        lines = rec.get("lines")
        nodeid = str(rec.get("nodeid") or "")
        if not isinstance(lines, list) or not nodeid:
            continue
        hit = set(lines)
        for a, b in blocks:
            if any(a <= n <= b for n in hit):
                ran.setdefault((a, b), [])
                if nodeid not in ran[(a, b)]:
                    ran[(a, b)].append(nodeid)
    out = []
    for (a, b), tests in sorted(ran.items())[:MAX_CHANGED_BLOCKS]:
        first = min(n for rec in records for n in _ints(rec.get("lines")) if a <= n <= b)
        names = ", ".join(tests[:3]) + (f" and {len(tests) - 3} more" if len(tests) > 3 else "")
        related = []
        for nodeid in tests[:10]:
            tpath, tline = _test_location(root, nodeid)
            related.append((tpath, tline, f"failing test: {nodeid}"))
        message = f"changed code run by failing test(s): {names}"
        out.append(Problem(path, first, 1, message, "ect:test", related=related))
    return out


def _ints(value: object) -> list[int]:
    return [n for n in value if isinstance(n, int)] if isinstance(value, list) else []


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
        timeout_s: float | None = None,
        progress: Callable[[str, Run], None] | None = None,
        refresh_index: Callable[[], None] | None = None,
    ) -> None:
        self.engine = engine
        self.warm = warm
        self.publish = publish
        self.timeout_s = timeout_s
        self.progress = progress  # ('begin' | 'end', run): a work-done indicator for the editor
        self.refresh_index = refresh_index or engine.refresh_index  # after each run (new names)
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
            if self._stopped:
                return self._generation
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
        while time.monotonic() < deadline and not self._stopped:
            busy = self._busy
            if busy is None or busy == self._generation:
                return
            self._cancel_running()
            time.sleep(0.05)

    def stale(self, run: Run) -> bool:
        return run.generation != self._generation

    def stop(self) -> None:
        """Cancel the run in progress and start nothing more (shutdown)."""
        with self._cond:
            self._stopped = True
            self._pending = None
            self._generation += 1  # whatever is running is stale now: it publishes nothing
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
            self._notify("begin", run)
            try:
                self._run(run)
            except Exception as exc:
                run.problems = [Problem(path, 1, 1, f"ect: diagnostics failed: {exc}", "ect", "warning")]
                if not self.stale(run):
                    self.publish(run)
            finally:
                self._busy = None
                run.fixes_done.set()
                self._notify("end", run)

    def _notify(self, phase: str, run: Run) -> None:
        if self.progress is not None and not self._stopped:
            with contextlib.suppress(Exception):  # an editor that went away must not stop the worker
                self.progress(phase, run)

    def _run(self, run: Run) -> None:
        from ect.changes import Scope
        from ect.loop import run_loop
        from ect.runner import LAST_FAILED, TIMED_OUT
        from ect.state import read_json, write_json

        engine = self.engine
        scope = Scope(mode="paths", paths=(str(engine.root / run.path),))
        last_failed = read_json(engine.cfg.state_path / LAST_FAILED)
        traced = run.path.endswith(".py") and not _is_test_path(run.path)
        if self.warm is not None:
            self.warm.trace_file = str(engine.root / run.path) if traced else None
        try:
            result = run_loop(
                engine.root,
                engine.loop_config(),
                scope,
                trigger="lsp",
                stream=False,
                pytest_runner=engine.pytest_runner,
                timeout=self.timeout_s,
            )
        finally:
            if self.warm is not None:
                self.warm.trace_file = None
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
        cols = {(e.path, e.line, e.message): e.col for e in result.compile_errors}
        for f in failures:
            key = failure_key(f)
            run.failures[key] = f
            source = "ect:test" if f.step == "test" else f"ect:{f.step}"
            severity = "warning" if f.extra.get("severity") == "deprecated" else "error"
            message = f.message if f.step != "test" else f"{f.message} (failing: {', '.join(f.tests[:3])})"
            col = cols.get((f.path, f.line, f.message), 1)
            related = [(*_test_location(engine.root, t), f"failing test: {t}") for t in f.tests[:10]]
            run.problems.append(Problem(f.path, f.line, col, message, source, severity, key, related))
        located = {t for f in failures for t in f.tests}
        for e in result.compile_errors:
            if not any(p.path == e.path and p.line == e.line for p in run.problems):
                run.problems.append(Problem(e.path, e.line, e.col, e.message, f"ect:{e.step}"))
        test_run = result.test_run
        if test_run is not None and test_run.exit_code == TIMED_OUT:
            self._timed_out(run, test_run)
        elif traced and result.tests_failed:
            blocks = changed_lines(engine.root, run.path)
            run.problems += traced_problems(engine.root, run.path, engine.last_records, blocks)
        for nodeid in [] if test_run is not None and test_run.exit_code == TIMED_OUT else result.tests_failed:
            path, line = _test_location(engine.root, nodeid)
            what = "test failed" if nodeid in located else "test failed (see pytest output)"
            run.problems.append(Problem(path, line, 1, f"{what}: {nodeid}", "ect:test"))
        self.latest = run
        self.publish(run)
        self.refresh_index()  # after publishing: the saved file may define new names (completions, fixes)
        if not self.want_fixes:
            return
        for key, f in run.failures.items():
            if self.stale(run) or engine.cancelled.is_set():
                run.cancelled = True
                return
            if f.kind == "other":
                continue
            run.fixes[key] = engine.fix(f)  # offered (and recorded) when a code action asks for them

    def _timed_out(self, run: Run, test_run: TestRun) -> None:
        """A diagnostic on the test that hung (and one in the saved file pointing to it)."""
        hung = [n for n, o in test_run.outcomes.items() if o == "failed"]
        limit = f"{self.timeout_s:g} s" if self.timeout_s else "the time limit"
        if hung:
            path, line = _test_location(self.engine.root, hung[0])
            message = f"test timed out after {limit}: {hung[0]}"
            run.problems.append(Problem(path, line, 1, message, "ect:test"))
            if path != run.path:
                related = [(path, line, f"timed out: {hung[0]}")]
                run.problems.append(Problem(run.path, 1, 1, message, "ect:test", "error", "", related))
        else:
            message = f"tests timed out after {limit} (no test had started)"
            run.problems.append(Problem(run.path, 1, 1, message, "ect:test"))


def _is_test_path(path: str) -> bool:
    name = Path(path).name
    return name.startswith("test_") or name.endswith("_test.py") or name == "conftest.py"
