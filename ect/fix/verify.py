"""Prove a candidate: apply it in the scratch copy, re-run the compile step and the failing tests."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

from ect.config import Config
from ect.fix.failures import Failure
from ect.fix.scratch import Scratch
from ect.fix.warm_pytest import WarmPytest

log = logging.getLogger(__name__)


@dataclass
class Verdict:
    ok: bool
    reason: str
    duration_ms: float
    text: str | None = None  # the candidate after import sorting, when that was needed


def sort_imports(root: Path, path: str) -> bool:
    """`ruff check --select I --fix` on one file (the project's import style); False when ruff is absent."""
    from ect.compile_step import _tool

    exe = _tool("ruff")
    if exe is None:
        return False
    proc = subprocess.run(
        [exe, "check", "--select", "I", "--fix", "--quiet", "--", path],
        cwd=root,
        capture_output=True,
        check=False,
    )
    return proc.returncode in (0, 1)


def timed_out(why: str) -> str:
    """The verdict for a run ect stopped: `why` names the test that ran past `test_timeout` (logged)."""
    log.warning("ect: verifying a fix: tests timed out: %s; it was stopped", why)
    return f"tests timed out: {why}; it was stopped"


def _compile_signature(root: Path, cfg: Config, path: str) -> Counter[tuple[str, str]]:
    from ect.compile_step import run_compile

    report = run_compile(root, cfg, [path])
    return Counter((e.step, e.message) for e in report.errors)


class Verifier:
    """Runs verifications in one scratch copy; `baseline` compile errors are allowed to remain."""

    def __init__(
        self,
        root: Path,
        cfg: Config,
        scratch: Scratch,
        timeout_s: float = 60.0,
        cancelled: threading.Event | None = None,
    ) -> None:
        self.root = root
        self.scratch = scratch
        self.cfg = replace(
            cfg,
            root=scratch.path,
            origin=cfg.origin or root,  # the project's interpreter (its .venv is not copied)
            mypy=cfg.mypy,
            pytest_args=[*cfg.pytest_args, "-x", "-q", "-p", "no:cacheprovider", "-p", "no:randomly"],
        )
        self.timeout_s = timeout_s
        self._baseline: dict[str, Counter[tuple[str, str]]] = {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.cancelled = cancelled or threading.Event()
        self.warm: WarmPytest | None = None  # a warm forking pytest (much faster runs), when available

    def _env(self) -> dict[str, str]:
        roots = [
            str(self.scratch.path / r) if r not in (".", "") else str(self.scratch.path)
            for r in self.cfg.source_roots
        ]
        old = os.environ.get("PYTHONPATH")
        results = self.scratch.path / ".ect" / f"verify-{os.getpid()}.json"
        return {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([*roots, *([old] if old else [])]),
            "ECT_RESULTS": str(results),
        }

    def baseline(self, path: str) -> Counter[tuple[str, str]]:
        """Compile errors the file has before any candidate (computed from the scratch copy)."""
        if path not in self._baseline:
            self._baseline[path] = _compile_signature(self.scratch.path, self.cfg, path)
        return self._baseline[path]

    def run_tests(self, tests: list[str]) -> tuple[bool, str]:
        """Run `tests` in the scratch copy as the loop runs them: the project's interpreter and plugins,
        `test_timeout` per test (a hung test is stopped and named), `timeout_s` for the whole run."""
        env = self._env()
        results = Path(env["ECT_RESULTS"])
        results.parent.mkdir(parents=True, exist_ok=True)
        try:
            verdict = self._run_warm(tests, env) if self.warm is not None else None
            return verdict if verdict is not None else self._run_cold(tests)
        finally:
            for suffix in ("", ".fix.json"):
                Path(f"{results}{suffix}").unlink(missing_ok=True)

    def _run_warm(self, tests: list[str], env: dict[str, str]) -> tuple[bool, str] | None:
        """Through the warm forking pytest; None when it cannot be used (run cold instead)."""
        import shutil
        import tempfile

        from ect.runner import pytest_command

        assert self.warm is not None
        cmd = pytest_command(self.cfg, tests, parallel=False)
        progress = Path(tempfile.mkdtemp(prefix="ect-progress-"))  # the watchdog plugin: the running test
        job_env = {"ECT_RESULTS": env["ECT_RESULTS"], "ECT_PROGRESS": str(progress)}
        path = env["PYTHONPATH"].split(os.pathsep)
        try:
            args, cwd, limit = cmd[3:], self.scratch.path, self.cfg.test_timeout
            code = self.warm.run(args, cwd, job_env, path, None, self.timeout_s, limit, progress)
        finally:
            shutil.rmtree(progress, ignore_errors=True)
        if self.warm.closed or (code is not None and self.cancelled.is_set()):
            return False, "cancelled"
        if code is None:
            return None
        if self.warm.expired:
            return False, timed_out(self.warm.expired_why or f"the run took longer than {self.timeout_s:g} s")
        return (True, "tests pass") if code == 0 else (False, f"tests still fail (exit {code})")

    def _run_cold(self, tests: list[str]) -> tuple[bool, str]:
        """Through ect.runner.run_pytest (a fresh pytest process group, ended whatever happens)."""
        from ect.errors import EctError
        from ect.runner import TIMED_OUT, run_pytest

        def started(proc: subprocess.Popen[bytes]) -> None:
            self.proc = proc
            if self.cancelled.is_set():
                self.kill()

        try:
            run = run_pytest(
                self.scratch.path, self.cfg, tests, stream=False, timeout=self.timeout_s, on_start=started
            )
        except EctError as exc:
            return False, f"tests could not run: {exc}"
        finally:
            self.proc = None
        if self.cancelled.is_set():
            return False, "cancelled"
        if run.exit_code == TIMED_OUT and run.timeout_message:
            why = run.timeout_message.removeprefix("ect: timed out: ").removesuffix("; it was stopped")
            return False, timed_out(why)
        if run.exit_code == 0:
            return True, "tests pass"
        tail = run.output.strip().splitlines()[-1:]
        return False, f"tests still fail ({tail[0] if tail else f'exit {run.exit_code}'})"

    def kill(self) -> None:
        """Stop a running verification (from another thread)."""
        if self.warm is not None:
            self.warm.cancel()
        proc = self.proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, 9)

    def verify(
        self, failure: Failure, path: str, new_text: str, tests: list[str], full: list[str] | None = None
    ) -> Verdict:
        """Apply `new_text` to `path` in the scratch copy, check, and restore the file.

        `tests` run first (a quick sample that rejects wrong candidates early); when they pass, `full`
        (every failing test, or every selected test file) must pass too before the candidate counts.
        """
        started = time.perf_counter()
        base = self.baseline(path)
        original = self.scratch.read(path)
        self.scratch.write(path, new_text)
        try:
            after = _compile_signature(self.scratch.path, self.cfg, path)
            text = None
            if any(m.startswith("I001") for _, m in after - base) and sort_imports(self.scratch.path, path):
                text = self.scratch.read(path)  # the added import, placed as the project sorts imports
                after = _compile_signature(self.scratch.path, self.cfg, path)
            if after - base:
                new = next(iter(after - base))
                return Verdict(False, f"compile: {new[1]}", (time.perf_counter() - started) * 1000)
            if failure.step != "test" and failure.message and any(m == failure.message for _, m in after):
                return Verdict(False, "compile error remains", (time.perf_counter() - started) * 1000)
            if tests:
                ok, why = self.run_tests(tests)
                if ok and full and sorted(full) != sorted(tests):
                    ok, why = self.run_tests(full)
                    why = why if ok else f"{why} (full set)"
                return Verdict(ok, why, (time.perf_counter() - started) * 1000, text)
            return Verdict(True, "compiles", (time.perf_counter() - started) * 1000, text)
        finally:
            self.scratch.write(path, original)
