"""Run tests with pytest in a subprocess, streaming its output and keeping its verdict."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ect.config import Config
from ect.state import ensure_state_dir, read_json, write_json

LAST_FAILED = "last_failed.json"
# pytest exit codes: 0 ok, 1 failures, 2 interrupted (e.g. collection errors), 3 internal error,
# 4 usage error, 5 no tests collected.
PASSING_EXIT_CODES = (0, 5)
TIMED_OUT = 124


@dataclass
class TestRun:
    """The outcome of one pytest run."""

    exit_code: int
    duration_ms: float
    outcomes: dict[str, str] = field(default_factory=dict)  # repo-relative node id -> outcome
    collect_errors: list[str] = field(default_factory=list)
    output: str = ""
    command: list[str] = field(default_factory=list)
    durations: dict[str, float] = field(default_factory=dict)  # repo-relative node id -> seconds
    rootpath: str = ""  # pytest's rootdir (node ids in a recording are relative to it)

    @property
    def ok(self) -> bool:
        return self.exit_code in PASSING_EXIT_CODES

    @property
    def failed(self) -> list[str]:
        return sorted([n for n, o in self.outcomes.items() if o == "failed"] + self.collect_errors)

    @property
    def passed(self) -> list[str]:
        return sorted(n for n, o in self.outcomes.items() if o == "passed")


# Anything with `run_pytest`'s signature (e.g. the LSP server's warm forking runner).
PytestRunner = Callable[..., TestRun]


def pytest_command(cfg: Config, files: list[str] | None, parallel: bool) -> list[str]:
    """The pytest command line: all tests when `files` is None."""
    cmd = [sys.executable, "-m", "pytest", "-p", "ect.pytest_plugin", *cfg.pytest_args]
    if (parallel or cfg.xdist) and importlib.util.find_spec("xdist") is not None:
        cmd += ["-n", "auto"]
    if files is not None:
        cmd += ["--", *files]
    return cmd


def recording_env(root: Path, cfg: Config, out_dir: Path) -> dict[str, str]:
    """Environment that makes ect's pytest plugin record fingerprints into `out_dir`."""
    skip = [cfg.state_dir] + [g[:-3] for g in cfg.exclude if g.endswith("/**") and "*" not in g[:-3]]
    return {
        "ECT_FP_OUT": str(out_dir),
        "ECT_FP_ROOT": str(root),
        "ECT_FP_SKIP": json.dumps(skip),
        "ECT_FP_CODE_CACHE": str(cfg.state_path / "fp-code"),
    }


def run_pytest(
    root: Path,
    cfg: Config,
    files: list[str] | None,
    *,
    stream: bool = True,
    parallel: bool = False,
    extra_env: dict[str, str] | None = None,
    timeout: float | None = None,
) -> TestRun:
    """Run pytest on `files` (test files or node ids; None: the whole suite) from the repository root."""
    state = ensure_state_dir(cfg.state_path)
    results_path = state / f"results-{os.getpid()}.json"
    cmd = pytest_command(cfg, files, parallel)
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("ECT_FP_")}  # no nested recording
    env = {**inherited, "ECT_RESULTS": str(results_path), **(extra_env or {})}
    started = time.perf_counter()
    proc: subprocess.CompletedProcess[Any]
    try:
        if stream:
            proc = subprocess.run(cmd, cwd=root, env=env, check=False, timeout=timeout)
            output = ""
        else:
            proc = subprocess.run(
                cmd,
                cwd=root,
                env=env,
                check=False,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=timeout,
            )
            output = proc.stdout + proc.stderr
    except subprocess.TimeoutExpired:  # a hung run counts as a failure of everything it ran
        duration_ms = (time.perf_counter() - started) * 1000
        results_path.unlink(missing_ok=True)
        run = TestRun(TIMED_OUT, duration_ms, output=f"pytest timed out after {timeout} s", command=cmd)
        run.collect_errors = list(files or ["."])
        return run
    duration_ms = (time.perf_counter() - started) * 1000
    data = read_json(results_path)
    with contextlib.suppress(OSError):
        results_path.unlink()
    run = TestRun(proc.returncode, duration_ms, output=output, command=cmd)
    read_results(run, data, root)
    return run


def read_results(run: TestRun, data: object, root: Path) -> None:
    """Fill `run` from what ect's pytest plugin wrote (`$ECT_RESULTS`); nothing if it wrote nothing."""
    if not isinstance(data, dict):
        return
    rootpath = Path(data.get("rootpath") or root)
    run.rootpath = str(rootpath)
    for nodeid, entry in (data.get("tests") or {}).items():
        rel = _relative(rootpath, root, nodeid)
        run.outcomes[rel] = entry.get("outcome", "failed")
        run.durations[rel] = float(entry.get("duration") or 0.0)
    run.collect_errors = [_relative(rootpath, root, n) for n in data.get("collect_errors") or []]


def relative_nodeid(rootpath: Path, root: Path, nodeid: str) -> str:
    """A node id relative to pytest's rootdir, made relative to the repository root."""
    return _relative(rootpath, root, nodeid)


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


def update_last_failed(
    cfg: Config,
    run: TestRun,
    ran_all: bool,
    previous: dict[str, list[str]],
    partial: set[str] | frozenset[str] = frozenset(),
) -> None:
    """Forget failures that now pass, remember new ones (`partial`: files only some tests of which ran)."""
    failed: dict[str, list[str]] = {} if ran_all else {k: list(v) for k, v in previous.items()}
    ran_files = {n.split("::")[0] for n in run.outcomes} | {n.split("::")[0] for n in run.collect_errors}
    for f in ran_files:
        if f in partial:
            kept = [n for n in failed.get(f, []) if n not in run.outcomes]
            if kept:
                failed[f] = kept
            else:
                failed.pop(f, None)
            continue
        failed.pop(f, None)
    for nodeid in run.failed:
        failed.setdefault(nodeid.split("::")[0], []).append(nodeid)
    if failed != previous:
        with contextlib.suppress(OSError):
            write_json(cfg.state_path / LAST_FAILED, failed)
