"""Start the whole suite while the compile step and the import graph are still being worked out.

`ect check --all` runs every test whatever the compile step and the graph say, so pytest can start
at once and use the second core; the compile step then only decides whether its result counts. The
run's output is held back until `release()` (the compile report and the selection print first), and
`cancel()` ends it when compiling failed: nothing it printed is shown, nothing it recorded is kept.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ect.config import Config
from ect.runner import OutputGate, TestRun, end_group, run_pytest


class EarlyRun:
    """pytest on the whole suite, run by a thread from the moment this object is made."""

    def __init__(
        self,
        root: Path,
        cfg: Config,
        *,
        stream: bool,
        parallel: bool,
        extra_env: dict[str, str] | None,
        timeout: float | None,
        on_results: Callable[[TestRun], None] | None = None,
    ) -> None:
        self.gate = OutputGate()
        self.started = threading.Event()
        # waited on instead of Thread.join: a join interrupted by a signal marks a running thread
        # as ended (CPython 3.11), and a later join would not wait for its clean-up
        self.done = threading.Event()
        self.proc: subprocess.Popen[Any] | None = None
        self.run: TestRun | None = None
        self.error: BaseException | None = None
        self.cancelled = False
        args = (root, cfg, None)
        kwargs: dict[str, Any] = {
            "stream": stream,
            "parallel": parallel,
            "extra_env": extra_env,
            "timeout": timeout,
            "on_start": self._on_start,
            "hold": self.gate,
            "on_results": on_results,  # called from this run's thread
        }
        self.thread = threading.Thread(target=self._work, args=args, kwargs=kwargs, daemon=True)
        self.thread.start()

    def _on_start(self, proc: subprocess.Popen[Any]) -> None:
        self.proc = proc
        if self.cancelled:  # cancelled while it was starting
            end_group(proc, grace=1.0)
        self.started.set()

    def _work(self, *args: Any, **kwargs: Any) -> None:
        try:
            self.run = run_pytest(*args, **kwargs)
        except BaseException as exc:  # handed to the caller in `result`
            self.error = exc
        finally:
            self.started.set()
            self.done.set()

    def release(self) -> None:
        """Let its output through (what it printed so far first)."""
        self.gate.open()

    def result(self) -> TestRun:
        """Wait for the run (a signal still reaches the caller: the wait is in short steps)."""
        self.release()
        while not self.done.wait(0.2):
            pass
        if self.error is not None:
            raise self.error
        assert self.run is not None
        return self.run

    def cancel(self) -> None:
        """End the run and everything it started; wait for the thread (bounded)."""
        self.cancelled = True
        self.gate.drop()
        self.started.wait(timeout=30)
        if self.proc is not None:
            end_group(self.proc, grace=2.0)
        self.done.wait(timeout=10)
        with contextlib.suppress(Exception):
            if self.proc is not None and self.proc.poll() is None:
                self.proc.kill()
