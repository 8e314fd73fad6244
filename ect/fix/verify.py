"""Prove a candidate: apply it in the scratch copy, re-run the compile step and the failing tests."""

from __future__ import annotations

import contextlib
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
        from ect.runner import pytest_command

        cmd = pytest_command(self.cfg, tests, parallel=False)
        env = self._env()
        Path(env["ECT_RESULTS"]).parent.mkdir(parents=True, exist_ok=True)
        if self.warm is not None:
            path = env.pop("PYTHONPATH").split(os.pathsep)
            code = self.warm.run(
                cmd[3:], self.scratch.path, {"ECT_RESULTS": env["ECT_RESULTS"]}, path, None, self.timeout_s
            )
            if self.warm.closed:
                return False, "cancelled"
            if code is not None:
                Path(env["ECT_RESULTS"]).unlink(missing_ok=True)
                Path(env["ECT_RESULTS"] + ".fix.json").unlink(missing_ok=True)
                if self.cancelled.is_set():
                    return False, "cancelled"
                if self.warm.expired:
                    return False, f"tests timed out after {self.timeout_s:g}s"
                return (True, "tests pass") if code == 0 else (False, f"tests still fail (exit {code})")
            env["PYTHONPATH"] = os.pathsep.join(path)
        try:
            self.proc = subprocess.Popen(
                cmd,
                cwd=self.scratch.path,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            out, _ = self.proc.communicate(timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            return False, f"tests timed out after {self.timeout_s:g}s"
        finally:
            code = self.proc.returncode if self.proc else -1
            self.proc = None
        for suffix in ("", ".fix.json"):
            Path(env["ECT_RESULTS"] + suffix).unlink(missing_ok=True)
        if self.cancelled.is_set():
            return False, "cancelled"
        if code == 0:
            return True, "tests pass"
        tail = out.decode("utf-8", "replace").strip().splitlines()[-1:] if out else []
        return False, f"tests still fail ({tail[0] if tail else f'exit {code}'})"

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
