"""Compile and affected tests for the change, through the loop core (`ect.loop.run_loop`).

The loop runs on a work tree, so the checks run in the repository itself when HEAD is
the reviewed commit and tracked files are clean, and otherwise in a temporary
detached `git worktree` of that commit (removed afterwards).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ect.review.gitcmd import Git

from ect.config import Config, load_config

FIX_LIMIT = 3  # failures to ask the fix engine about, per run


@dataclass
class CompileIssue:
    path: str
    line: int
    col: int
    message: str
    step: str


@dataclass
class SuggestedFix:
    """A fix the fix engine verified (compile step and failing tests green with it)."""

    path: str
    line: int
    title: str
    diff: str


@dataclass
class CheckResult:
    outcome: str  # "pass" | "fail" | "error"
    compile_errors: list[CompileIssue] = field(default_factory=list)
    tests_failed: list[str] = field(default_factory=list)
    tests_selected: int = 0
    tests_ms: float = 0.0
    duration_ms: float = 0.0
    detail: str = ""
    fixes: list[SuggestedFix] = field(default_factory=list)


@contextmanager
def checkout(git: Git, root: Path, head: str) -> Iterator[Path]:
    """A work tree at `head`: the repository itself when it already is, else a temporary worktree."""
    clean = not git.out("status", "--porcelain", "--untracked-files=no").strip()
    if clean and git.maybe_rev("HEAD") == head:
        yield root
        return
    with tempfile.TemporaryDirectory(prefix="ect-review-") as tmp:
        path = Path(tmp) / "tree"
        git.run("worktree", "add", "--quiet", "--detach", str(path), head)
        try:
            yield path
        finally:
            git.run("worktree", "remove", "--force", str(path), check=False)
            git.run("worktree", "prune", check=False)


def _fix_engine(tree: Path, cfg: Config) -> Any:
    """The fix engine (`ect.fix`) when it is installed, else None: it is optional."""
    try:
        from ect.fix.engine import FixEngine
    except ImportError:
        return None
    try:
        return FixEngine(tree, cfg)
    except Exception:  # a broken optional component must not break the review
        return None


def _verified_fixes(engine: Any, tree: Path, res: Any, limit: int) -> list[SuggestedFix]:
    out: list[SuggestedFix] = []
    try:
        for failure in engine.failures_from(res, tree)[:limit]:
            found = engine.fix(failure, all_fixes=False)
            if found.fixes:
                best = found.fixes[0]
                out.append(SuggestedFix(best.path, int(failure.line), str(best.title), best.diff))
    except Exception:  # optional: a fix-engine failure only loses the suggestions
        return out
    return out


def run_checks(
    git: Git, root: Path, cfg: Config, base: str, head: str, run_tests: bool, fixes: bool = False
) -> CheckResult:
    """Compile the changed files and run the tests they can affect, at `head`; with `fixes`,
    ask the fix engine (when installed) for verified fixes of what failed."""
    from ect.changes import Scope
    from ect.loop import run_loop

    t0 = time.perf_counter()
    with checkout(git, root, head) as tree:
        tree_cfg = cfg if tree == root else load_config(tree)
        engine = _fix_engine(tree, tree_cfg) if fixes else None
        loop_cfg = engine.loop_config() if engine is not None else tree_cfg
        res = run_loop(
            tree,
            loop_cfg,
            Scope(mode="range", rev_range=f"{base}..{head}"),
            run_tests=run_tests,
            trigger="review",
            stream=False,
        )
        suggested = _verified_fixes(engine, tree, res, FIX_LIMIT) if engine and res.exit_code else []
    out = CheckResult(
        outcome="pass" if res.exit_code == 0 else "fail",
        compile_errors=[CompileIssue(e.path, e.line, e.col, e.message, e.step) for e in res.compile_errors],
        tests_failed=list(res.tests_failed),
        tests_selected=len(res.test_files) if res.test_files is not None else -1,
        tests_ms=float(res.phases_ms.get("tests", 0.0)),
        fixes=suggested,
    )
    if res.test_run is not None and not res.test_run.ok and not res.test_run.failed:
        out.detail = f"pytest exited with {res.test_run.exit_code}"
    out.duration_ms = (time.perf_counter() - t0) * 1000
    return out
