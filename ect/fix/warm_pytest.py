"""Fast, cancellable pytest runs through a warm forking process (language server, fix verification).

`WarmPytest.run_pytest` has the signature of `ect.runner.run_pytest`; `install()` makes the loop use it
in this process (the server's). When the warm process cannot be used (not Linux, it died, a plugin
imported project code) runs fall back to the ordinary subprocess; once `stop()`ped it never starts
anything again (a run asked for during shutdown is answered as cancelled).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
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

    def __init__(self, root: Path) -> None:
        self.root = root
        self.proc: subprocess.Popen[str] | None = None
        self.usable = hasattr(os, "fork")
        self.child: int | None = None
        self.closed = False
        self.expired = False  # the last run was killed by its timeout
        self.trace_file: str | None = None  # record the lines of this file that failing tests run
        self._lock = threading.Lock()

    def start(self) -> bool:
        """Start the warm process now (False when it cannot be used)."""
        with self._lock:
            return self._start()

    def _start(self) -> bool:
        if not self.usable or self.closed:
            return False
        if self.proc is not None and self.proc.poll() is None:
            return True
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ect.fix.pytest_zygote"],
                cwd=self.root,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
                bufsize=1,
            )
            assert self.proc.stdout is not None
            hello = json.loads(self.proc.stdout.readline() or "{}")
        except (OSError, ValueError):
            self.usable = False
            return False
        if not hello.get("ready") or hello.get("unsafe"):
            self.usable = False
            self.stop()
            return False
        return True

    def stop(self) -> None:
        """Stop the warm process and its running test for good (the server is going away)."""
        self.closed = True
        self.cancel()
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)

    def cancel(self) -> None:
        """Kill the running test child (a newer save wants the machine)."""
        pid = self.child
        if pid is not None:
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)

    def _expire(self) -> None:
        if self.child is not None:  # not when the run ended just as the timer fired
            self.expired = True
            self.cancel()

    def run(
        self,
        args: list[str],
        cwd: Path,
        env: dict[str, str],
        path: list[str],
        output: Path | None,
        timeout: float | None = None,
    ) -> int | None:
        """Exit code of `pytest args` in `cwd` (killed after `timeout` s: `expired` is set); None when
        the warm process is not usable."""
        with self._lock:
            self.expired = False
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
                timer = threading.Timer(timeout, self._expire) if timeout else None
                if timer is not None:
                    timer.daemon = True
                    timer.start()
                try:
                    done = json.loads(self.proc.stdout.readline())
                finally:
                    if timer is not None:
                        timer.cancel()
            except (OSError, ValueError, KeyError, TypeError):
                self._drop()
                return None
            finally:
                self.child = None
            return int(done["exit"])

    def _drop(self) -> None:
        """The warm process broke: kill it (a later run starts a new one unless stopped)."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)

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
        if Path(root).resolve() != self.root.resolve() or stream or not self.usable:
            return cold_run_pytest(
                root, cfg, files, stream=stream, parallel=parallel, extra_env=extra_env, timeout=timeout
            )
        state = ensure_state_dir(cfg.state_path)
        results = state / f"results-{os.getpid()}.json"
        out = state / f"output-{os.getpid()}.txt"
        current = current_test_file(results)
        current.unlink(missing_ok=True)
        started = time.perf_counter()
        env = {"ECT_RESULTS": str(results), **(extra_env or {})}
        if self.trace_file:
            env["ECT_TRACE_FILE"] = self.trace_file
        code = self.run(cmd[3:], root, env, [], out, timeout)
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
            current.unlink(missing_ok=True)
            results.unlink(missing_ok=True)
            run = TestRun(TIMED_OUT, duration_ms, output=f"pytest timed out after {timeout} s", command=cmd)
            run.collect_errors = list(files or ["."])
            if hung:
                run.outcomes[hung] = "failed"
                run.output += f" in {hung}"
            return run
        current.unlink(missing_ok=True)
        data = read_json(results)
        results.unlink(missing_ok=True)
        run = TestRun(code, duration_ms, output=output, command=cmd)
        read_results(run, data, root)
        return run
