"""`ect verify`: check on your own repository that ect's selection misses no failing test.

In a scratch worktree of HEAD, record the whole suite once, then apply random small
mutations one at a time. For each, run the full suite and ect's selection, and compare:
recall is the share of mutants the full suite catches that the selection catches too.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import click

from ect.errors import EctError


@dataclass
class MutantResult:
    path: str
    line: int
    operator: str
    caught_full: bool
    caught_selection: bool
    full_failed: list[str]
    selected_tests: int
    selection_time_s: float
    full_time_s: float
    selection_wall_s: float
    full_wall_s: float
    diff: str = ""


@dataclass
class VerifyReport:
    mutants: list[MutantResult] = field(default_factory=list)
    tests_total: int = 0
    record_wall_s: float = 0.0
    seed: int = 0

    @property
    def caught_full(self) -> int:
        return sum(m.caught_full for m in self.mutants)

    @property
    def caught_both(self) -> int:
        return sum(m.caught_full and m.caught_selection for m in self.mutants)

    @property
    def misses(self) -> list[MutantResult]:
        return [m for m in self.mutants if m.caught_full and not m.caught_selection]

    @property
    def recall(self) -> float | None:
        return self.caught_both / self.caught_full if self.caught_full else None

    def time_fractions(self) -> list[float]:
        return [m.selection_time_s / m.full_time_s if m.full_time_s else 0.0 for m in self.mutants]

    def to_json(self) -> dict[str, Any]:
        fractions = self.time_fractions()
        return {
            "mutants": len(self.mutants),
            "caught_by_full_suite": self.caught_full,
            "caught_by_selection": self.caught_both,
            "recall": self.recall,
            "median_test_time_fraction": statistics.median(fractions) if fractions else None,
            "mean_test_time_fraction": statistics.fmean(fractions) if fractions else None,
            "tests_total": self.tests_total,
            "record_wall_s": round(self.record_wall_s, 3),
            "seed": self.seed,
            "misses": [asdict(m) for m in self.misses],
            "results": [{k: v for k, v in asdict(m).items() if k != "diff"} for m in self.mutants],
        }


def _git(root: Path, *args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise EctError(
            f"git {args[0]} failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ''}"
        )
    return proc.stdout


def source_files(root: Path, cfg: Any) -> list[str]:
    """Python files to mutate: not tests, not conftests, not under the test paths or run-everything rules."""
    from ect.graph import list_python_files
    from ect.selection import is_test_file, matches

    tests_dirs = [t.rstrip("/") for t in cfg.test_paths if t not in (".", "")]
    out = []
    for rel in list_python_files(root, cfg):
        if is_test_file(rel, cfg) or PurePosixPath(rel).name in ("conftest.py", "setup.py"):
            continue
        if any(rel == d or rel.startswith(d + "/") for d in tests_dirs) or matches(rel, cfg.run_all):
            continue
        out.append(rel)
    return out


def _test_seconds(run: Any, only: set[str] | None = None) -> float:
    if run is None:
        return 0.0
    return float(sum(d for n, d in run.durations.items() if only is None or n in only))


def verify_selection(root: Path, count: int, seed: int, progress: bool) -> VerifyReport:
    """Run the whole self-check in a scratch worktree of HEAD (removed afterwards)."""
    from ect.changes import Scope
    from ect.config import load_config
    from ect.fingerprints.mutate import make_mutants
    from ect.loop import run_loop
    from ect.runner import TIMED_OUT, run_pytest

    tmp = Path(tempfile.mkdtemp(prefix="ect-verify-"))
    scratch = tmp / "tree"
    saved_env = os.environ.get("PYTHONDONTWRITEBYTECODE")
    saved_path = os.environ.get("PYTHONPATH")
    os.environ["PYTHONDONTWRITEBYTECODE"] = "1"  # a cached mutant .pyc must never outlive its source
    report = VerifyReport(seed=seed)
    try:
        _git(root, "worktree", "add", "-q", "--detach", str(scratch), "HEAD")
        cfg = load_config(scratch)
        cfg.state_dir = str(tmp / "state")  # keep the user's fingerprints and events out of this
        cfg.ruff = cfg.mypy = False  # only tests decide whether a mutant is caught
        # the scratch tree's sources win over an editable install of the user's checkout
        os.environ["PYTHONPATH"] = os.pathsep.join(
            [str(scratch / r) for r in cfg.source_roots] + [p for p in [saved_path] if p]
        )
        t0 = time.perf_counter()
        base = run_loop(scratch, cfg, Scope(mode="all"), stream=False, trigger="ci")
        report.record_wall_s = time.perf_counter() - t0
        if base.test_run is None or not base.test_run.outcomes:
            raise EctError("no tests ran on HEAD: nothing to verify against")
        passing = {n for n, o in base.test_run.outcomes.items() if o in ("passed", "skipped")}
        report.tests_total = len(base.test_run.outcomes)
        timeout = max(60.0, 10 * base.test_run.duration_ms / 1000)
        mutants = make_mutants(scratch, source_files(scratch, cfg), count, seed)
        if not mutants:
            raise EctError("found nothing to mutate (no Python source outside the tests)")
        snapshot = tmp / "state-snapshot"
        shutil.copytree(cfg.state_path, snapshot)
        items: Any = mutants
        bar = click.progressbar(mutants, label="ect verify", file=sys.stderr) if progress else None
        if bar is not None:
            items = bar.__enter__()
        try:
            for mutant in items:
                mutant.apply(scratch)
                try:
                    full = run_pytest(scratch, cfg, None, stream=False, timeout=timeout)
                    broke = sorted(n for n, o in full.outcomes.items() if o == "failed" and n in passing)
                    caught_full = (
                        bool(broke)
                        or bool(full.collect_errors)
                        or full.exit_code == TIMED_OUT
                        or (not full.ok and not full.outcomes)
                    )
                    sel = run_loop(
                        scratch, cfg, Scope(mode="worktree"), stream=False, trigger="ci", timeout=timeout
                    )
                    caught_sel = sel.exit_code != 0
                finally:
                    mutant.revert(scratch)
                    shutil.rmtree(cfg.state_path, ignore_errors=True)
                    shutil.copytree(snapshot, cfg.state_path)
                run = sel.test_run
                report.mutants.append(
                    MutantResult(
                        mutant.path,
                        mutant.line,
                        mutant.operator,
                        caught_full,
                        caught_sel,
                        broke[:20],
                        len(run.outcomes) if run else 0,
                        _test_seconds(run),
                        _test_seconds(full),
                        (run.duration_ms / 1000) if run else 0.0,
                        full.duration_ms / 1000,
                        mutant.diff() if caught_full and not caught_sel else "",
                    )
                )
        finally:
            if bar is not None:
                bar.__exit__(None, None, None)
    finally:
        for key, value in (("PYTHONDONTWRITEBYTECODE", saved_env), ("PYTHONPATH", saved_path)):
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        subprocess.run(
            ["git", "worktree", "remove", "--force", str(scratch)], cwd=root, capture_output=True, check=False
        )
        shutil.rmtree(tmp, ignore_errors=True)
        subprocess.run(["git", "worktree", "prune"], cwd=root, capture_output=True, check=False)
    return report


def render(report: VerifyReport) -> str:
    fractions = report.time_fractions()
    recall = report.recall
    lines = [
        f"mutants:                    {len(report.mutants)} (seed {report.seed}; {report.tests_total} tests)",
        f"caught by the full suite:   {report.caught_full}",
        f"caught by ect's selection:  {report.caught_both}",
        f"recall:                     {'n/a' if recall is None else f'{recall:.1%}'}",
    ]
    if fractions:
        lines.append(f"test time run (median):     {statistics.median(fractions):.1%} of the full suite")
        lines.append(f"test time run (mean):       {statistics.fmean(fractions):.1%}")
    lines.append(f"recording run:              {report.record_wall_s:.2f} s")
    for miss in report.misses:
        lines += [
            "",
            f"MISSED: {miss.operator} at {miss.path}:{miss.line} (full suite failed: "
            f"{', '.join(miss.full_failed[:5])})",
            miss.diff.rstrip(),
        ]
    if not report.misses and recall is not None:
        lines += ["", "ok: every mutant the full suite caught, ect's selection caught too"]
    return "\n".join(lines)


@click.command("verify")
@click.option(
    "--mutants",
    "count",
    default=20,
    show_default=True,
    type=click.IntRange(1, 100000),
    help="How many random mutants to try.",
)
@click.option("--seed", default=0, show_default=True, help="Random seed (same seed, same mutants).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def verify(count: int, seed: int, as_json: bool) -> int:
    """Mutate the code at random and check that ect's selection catches what the full suite catches.

    Works on a scratch worktree of HEAD (uncommitted changes are not included). Exit 1 if any mutant
    was missed.
    """
    from ect.repo import find_root

    root = find_root()
    report = verify_selection(root, count, seed, progress=not as_json)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        click.echo(render(report))
    return 1 if report.misses else 0
