"""Fast, cancellable pytest runs through a warm forking process (language server, fix verification).

`WarmPytest.run_pytest` has the signature of `ect.runner.run_pytest`; `install()` makes the loop use it
in this process (the server's). When the warm process cannot be used (not Linux, it died, a plugin
imported project code) runs fall back to the ordinary subprocess.
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
from ect.runner import TestRun


class WarmPytest:
    """One warm process per working directory it was started in; one run at a time."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.proc: subprocess.Popen[str] | None = None
        self.usable = hasattr(os, "fork")
        self.child: int | None = None
        self._lock = threading.Lock()

    def start(self) -> bool:
        """Start the warm process now (False when it cannot be used)."""
        with self._lock:
            return self._start()

    def _start(self) -> bool:
        if not self.usable:
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
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def cancel(self) -> None:
        """Kill the running test child (a newer save wants the machine)."""
        pid = self.child
        if pid is not None:
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)

    def run(
        self, args: list[str], cwd: Path, env: dict[str, str], path: list[str], output: Path | None
    ) -> int | None:
        """Exit code of `pytest args` in `cwd`; None when the warm process is not usable."""
        with self._lock:
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
                done = json.loads(self.proc.stdout.readline())
            except (OSError, ValueError, KeyError, TypeError):
                self.stop()
                return None
            finally:
                self.child = None
            return int(done["exit"])

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

        if Path(root).resolve() != self.root.resolve() or stream or timeout is not None or not self.usable:
            return cold_run_pytest(
                root, cfg, files, stream=stream, parallel=parallel, extra_env=extra_env, timeout=timeout
            )
        state = ensure_state_dir(cfg.state_path)
        results = state / f"results-{os.getpid()}.json"
        cmd = pytest_command(cfg, files, parallel)
        out = state / f"output-{os.getpid()}.txt"
        started = time.perf_counter()
        code = self.run(cmd[3:], root, {"ECT_RESULTS": str(results), **(extra_env or {})}, [], out)
        if code is None:
            return cold_run_pytest(
                root, cfg, files, stream=stream, parallel=parallel, extra_env=extra_env, timeout=timeout
            )
        duration_ms = (time.perf_counter() - started) * 1000
        try:
            output = out.read_text(errors="replace")
        except OSError:
            output = ""
        data = read_json(results)
        results.unlink(missing_ok=True)
        run = TestRun(code, duration_ms, output=output, command=cmd)
        read_results(run, data, root)
        return run
