"""Run tests with pytest in a subprocess, streaming its output and keeping its verdict."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ect.config import Config
from ect.state import ensure_state_dir, read_json, write_json

LAST_FAILED = "last_failed.json"
# pytest exit codes: 0 ok, 1 failures, 2 interrupted (e.g. collection errors), 3 internal error,
# 4 usage error, 5 no tests collected.
PASSING_EXIT_CODES = (0, 5)


@dataclass
class TestRun:
    """The outcome of one pytest run."""

    exit_code: int
    duration_ms: float
    outcomes: dict[str, str] = field(default_factory=dict)  # repo-relative node id -> outcome
    collect_errors: list[str] = field(default_factory=list)
    output: str = ""
    command: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.exit_code in PASSING_EXIT_CODES

    @property
    def failed(self) -> list[str]:
        return sorted([n for n, o in self.outcomes.items() if o == "failed"] + self.collect_errors)

    @property
    def passed(self) -> list[str]:
        return sorted(n for n, o in self.outcomes.items() if o == "passed")


def pytest_command(cfg: Config, files: list[str] | None, parallel: bool) -> list[str]:
    """The pytest command line: all tests when `files` is None."""
    cmd = [sys.executable, "-m", "pytest", "-p", "ect.pytest_plugin", *cfg.pytest_args]
    if (parallel or cfg.xdist) and importlib.util.find_spec("xdist") is not None:
        cmd += ["-n", "auto"]
    if files is not None:
        cmd += ["--", *files]
    return cmd


def run_pytest(root: Path, cfg: Config, files: list[str] | None, *, stream: bool = True,
               parallel: bool = False, extra_env: dict[str, str] | None = None) -> TestRun:
    """Run pytest on `files` (None: the whole suite) from the repository root."""
    state = ensure_state_dir(cfg.state_path)
    results_path = state / f"results-{os.getpid()}.json"
    cmd = pytest_command(cfg, files, parallel)
    env = {**os.environ, "ECT_RESULTS": str(results_path), **(extra_env or {})}
    started = time.perf_counter()
    try:
        if stream:
            proc = subprocess.run(cmd, cwd=root, env=env, check=False)
            output = ""
        else:
            proc = subprocess.run(cmd, cwd=root, env=env, check=False, capture_output=True, text=True,
                                  errors="replace")
            output = proc.stdout + proc.stderr
    except KeyboardInterrupt:
        raise
    duration_ms = (time.perf_counter() - started) * 1000
    data = read_json(results_path)
    try:
        results_path.unlink()
    except OSError:
        pass
    run = TestRun(proc.returncode, duration_ms, output=output, command=cmd)
    if isinstance(data, dict):
        rootpath = Path(data.get("rootpath") or root)
        for nodeid, entry in (data.get("tests") or {}).items():
            run.outcomes[_relative(rootpath, root, nodeid)] = entry.get("outcome", "failed")
        run.collect_errors = [_relative(rootpath, root, n) for n in data.get("collect_errors") or []]
    return run


def _relative(rootpath: Path, root: Path, nodeid: str) -> str:
    if rootpath == root or not nodeid:
        return nodeid
    file_part, sep, rest = nodeid.partition("::")
    try:
        rel = (rootpath / file_part).relative_to(root).as_posix()
    except ValueError:
        return nodeid
    return rel + sep + rest


def load_last_failed(cfg: Config) -> dict[str, list[str]]:
    """Test file -> node ids that failed in their last run (corrupt file: empty, rebuilt)."""
    data = read_json(cfg.state_path / LAST_FAILED)
    if not isinstance(data, dict):
        return {}
    return {k: [str(n) for n in v] for k, v in data.items() if isinstance(v, list)}


def update_last_failed(cfg: Config, run: TestRun, ran_all: bool, previous: dict[str, list[str]]) -> None:
    """Forget failures that now pass, remember new ones."""
    failed: dict[str, list[str]] = {} if ran_all else {k: list(v) for k, v in previous.items()}
    ran_files = {n.split("::")[0] for n in run.outcomes} | {n.split("::")[0] for n in run.collect_errors}
    for f in ran_files:
        failed.pop(f, None)
    for nodeid in run.failed:
        failed.setdefault(nodeid.split("::")[0], []).append(nodeid)
    if failed != previous:
        try:
            write_json(cfg.state_path / LAST_FAILED, failed)
        except OSError:
            pass
