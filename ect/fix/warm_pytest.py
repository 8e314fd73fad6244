"""Fast, cancellable pytest runs through a warm forking process (language server, fix verification).

`WarmPytest.run_pytest` has the signature of `ect.runner.run_pytest` and its behaviour: the project's
interpreter (config `python`), pytest's plugin autoloading as configured (`pytest_autoload`,
`pytest_plugins`), `test_timeout` per test, and the warm process in its own process group that ends
with ect (killed by `stop()`, and by the kernel when ect dies). When the warm process cannot be used
(not Linux, it died, a plugin imported project code) runs fall back to the ordinary subprocess; once
`stop()`ped it never starts anything again (a run asked for during shutdown is answered as cancelled).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from ect.config import Config
from ect.runner import TIMED_OUT, TestRun

CANCELLED = 2  # pytest's "interrupted" exit code: what a run stopped by cancel() or stop() reports


def current_test_file(results: Path) -> Path:
    """Where the capture plugin writes the node id of the test that is running."""
    return Path(f"{results}.current")


class WarmPytest:
    """One warm process per working directory it was started in; one run at a time."""

    def __init__(self, root: Path, cfg: Config | None = None) -> None:
        self.root = root
        self.cfg = cfg  # the project's settings (interpreter, plugins); None: ect's interpreter, autoload on
        self.proc: subprocess.Popen[str] | None = None
        self.usable = hasattr(os, "fork")
        self.child: int | None = None
        self.closed = False
        self.expired = False  # the last run was killed by its timeout
        self.expired_why = ""  # what ran too long
        self.expired_test = ""  # the test that ran longer than test_timeout
        self.trace_file: str | None = None  # record the lines of this file that failing tests run
        self.started_as: tuple[str, bool] | None = None  # (interpreter, autoload) of the warm process
        self._scratch: Path | None = None
        self._lock = threading.Lock()

    def setup(self, cfg: Config | None) -> tuple[str, bool, dict[str, str]]:
        """(interpreter, autoload, environment additions) for `cfg`, as ect.runner runs pytest."""
        from ect.runner import autoload, pytest_env, python_for

        if cfg is None:
            return sys.executable, True, {}
        python, project_env = python_for(cfg)
        if self._scratch is None:
            self._scratch = Path(tempfile.mkdtemp(prefix="ect-warm-"))
        env = pytest_env(self.root, cfg, python, project_env, self._scratch, os.environ.get("PYTHONPATH"))
        return python, autoload(cfg, project_env), env

    def start(self) -> bool:
        """Start the warm process now (False when it cannot be used)."""
        with self._lock:
            return self._start()

    def _start(self) -> bool:
        if not self.usable or self.closed:
            return False
        if self.proc is not None and self.proc.poll() is None:
            return True
        from ect.errors import EctError
        from ect.runner import start_in_group

        try:
            python, auto, env = self.setup(self.cfg)
            self.proc = start_in_group(
                [python, "-m", "ect.fix.pytest_zygote"],
                0,  # no death signal: it outlives the thread that starts it; it watches its parent itself
                cwd=self.root,
                env={**os.environ, **env},
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
                bufsize=1,
            )
            assert self.proc.stdout is not None
            hello = json.loads(self.proc.stdout.readline() or "{}")
        except (OSError, ValueError, EctError):  # the cold runner reports a bad interpreter
            self.usable = False
            self._drop()
            return False
        self.started_as = (python, auto)
        if not hello.get("ready") or hello.get("unsafe"):
            self.usable = False
            self.stop()
            return False
        return True

    def stop(self) -> None:
        """Stop the warm process and its running test for good (the server is going away)."""
        self.closed = True
        self.cancel()
        self._drop()
        scratch, self._scratch = self._scratch, None
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)

    def cancel(self) -> None:
        """Kill the running test child (a newer save wants the machine)."""
        pid = self.child
        if pid is not None:
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)

    def _other(self, python: str, auto: bool) -> bool:
        """Whether a run needs another process than the warm one: another interpreter, or autoloading
        that the warm one's environment turned off (turning it off is a per-run variable)."""
        started = self.started_as
        return started is not None and (started[0] != python or (auto and not started[1]))

    def _expire(self, why: str = "") -> None:
        if self.child is not None:  # not when the run ended just as the timer fired
            self.expired, self.expired_why = True, why
            self.cancel()

    def _watch(
        self, done: threading.Event, timeout: float | None, limit: float, progress: Path | None
    ) -> None:
        """Stop the run after `timeout` s in all, or when one test runs longer than `limit` s (0: no
        limit; read from the watchdog plugin's files in `progress`, as ect.runner does)."""
        from ect.runner import _running_test

        started, wall = time.perf_counter(), time.time()
        while not done.wait(0.2):
            if timeout is not None and time.perf_counter() - started > timeout:
                self._expire()
                return
            if limit and progress is not None:
                what, age = _running_test(progress, wall)
                if age > limit:
                    self.expired_test = what if "::" in what else ""
                    self._expire(f"{what} ran longer than {limit:g} s (test_timeout)")
                    return

    def run(
        self,
        args: list[str],
        cwd: Path,
        env: dict[str, str],
        path: list[str],
        output: Path | None,
        timeout: float | None = None,
        test_timeout: float = 0,
        progress: Path | None = None,
    ) -> int | None:
        """Exit code of `pytest args` in `cwd` (killed after `timeout` s in all, or when a test runs
        longer than `test_timeout` s: `expired` is set); None when the warm process is not usable."""
        with self._lock:
            self.expired, self.expired_why, self.expired_test = False, "", ""
            if not self._start():
                return None
            assert self.proc is not None and self.proc.stdin is not None and self.proc.stdout is not None
            job = {
                "args": args,
                "cwd": str(cwd),
                "env": env,
                "path": path,
                "output": str(output) if output else None,
            }
            try:
                self.proc.stdin.write(json.dumps(job) + "\n")
                self.proc.stdin.flush()
                started = json.loads(self.proc.stdout.readline())
                self.child = int(started["pid"])
                ended = threading.Event()
                if timeout or test_timeout:
                    args_ = (ended, timeout or None, test_timeout, progress)
                    threading.Thread(
                        target=self._watch, args=args_, name="ect-warm-timeout", daemon=True
                    ).start()
                try:
                    done = json.loads(self.proc.stdout.readline())
                finally:
                    ended.set()
            except (OSError, ValueError, KeyError, TypeError):
                self._drop()
                return None
            finally:
                self.child = None
            return int(done["exit"])

    def _drop(self) -> None:
        """The warm process broke: kill it (a later run starts a new one unless stopped)."""
        from ect.runner import end_group

        proc, self.proc = self.proc, None
        if proc is not None:  # the whole group, even when the warm process itself already ended
            end_group(proc, signal.SIGTERM, grace=2.0)  # SIGTERM: it kills the running test's group first

    # -- a drop-in for ect.runner.run_pytest
    def run_pytest(
        self,
        root: Path,
        cfg: Config,
        files: list[str] | None,
        *,
        stream: bool = True,
        parallel: bool = False,
        extra_env: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> TestRun:
        from ect.runner import pytest_command, read_results
        from ect.runner import run_pytest as cold_run_pytest
        from ect.state import ensure_state_dir, read_json

        cmd = pytest_command(cfg, files, parallel)
        if self.closed:
            return TestRun(CANCELLED, 0.0, output="cancelled: the server is stopping", command=cmd)
        python, auto, pyenv = self.setup(cfg)
        if self.usable and self.proc is None:
            self.start()
        if (
            Path(root).resolve() != self.root.resolve()
            or stream
            or not self.usable
            or self._other(python, auto)
        ):
            return cold_run_pytest(
                root, cfg, files, stream=stream, parallel=parallel, extra_env=extra_env, timeout=timeout
            )
        state = ensure_state_dir(cfg.state_path)
        results = state / f"results-{os.getpid()}.json"
        out = state / f"output-{os.getpid()}.txt"
        current = current_test_file(results)
        current.unlink(missing_ok=True)
        started = time.perf_counter()
        progress = Path(tempfile.mkdtemp(prefix="ect-progress-"))
        env = {"ECT_RESULTS": str(results), "ECT_PROGRESS": str(progress), **pyenv, **(extra_env or {})}
        env.pop("PYTHONPATH", None)  # the warm process was started with it
        if self.trace_file:
            env["ECT_TRACE_FILE"] = self.trace_file
        try:
            code = self.run(cmd[3:], root, env, [], out, timeout, cfg.test_timeout, progress)
        finally:
            shutil.rmtree(progress, ignore_errors=True)
        if self.closed:
            return TestRun(CANCELLED, 0.0, output="cancelled: the server is stopping", command=cmd)
        if code is None:
            return cold_run_pytest(
                root, cfg, files, stream=stream, parallel=parallel, extra_env=extra_env, timeout=timeout
            )
        duration_ms = (time.perf_counter() - started) * 1000
        try:
            output = out.read_text(errors="replace")
        except OSError:
            output = ""
        if self.expired:
            hung = ""
            with contextlib.suppress(OSError):
                hung = current.read_text(encoding="utf-8").strip()[:1000]
            hung = hung or self.expired_test
            current.unlink(missing_ok=True)
            results.unlink(missing_ok=True)
            why = f": {self.expired_why}" if self.expired_why else f" after {timeout} s"
            run = TestRun(TIMED_OUT, duration_ms, output=f"pytest timed out{why}", command=cmd)
            run.timeout_message = f"ect: timed out{why}; it was stopped"
            run.collect_errors = list(files or ["."])
            if hung:
                run.outcomes[hung] = "failed"
                if hung not in run.output:
                    run.output += f" in {hung}"
            return run
        current.unlink(missing_ok=True)
        data = read_json(results)
        results.unlink(missing_ok=True)
        run = TestRun(code, duration_ms, output=output, command=cmd)
        read_results(run, data, root)
        return run
