"""`ect verify`: check on your own repository that ect's selection misses no failing test.

In a scratch worktree of HEAD, record the whole suite once, then apply random small
mutations one at a time. For each, run the full suite and ect's selection, and compare:
recall is the share of mutants the full suite catches that the selection catches too.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Protocol

import click

from ect.errors import EctError, EnvError
from ect.verify_report import (
    ERROR,
    MISSED,
    MutantResult,
    RunFigures,
    VerifyReport,
    count_selected,
    error_line,
    failed_set,
    render,
    score,
)

if TYPE_CHECKING:
    from ect.fingerprints.mutate import Mutant
    from ect.loop import LoopResult
    from ect.runner import TestRun


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


ERRORED = 3  # exit status: a run errored, so nothing was verified for some mutant
LOCAL_FILE_LIMIT = 1 << 20  # bytes: a local config file, not data
MAX_LOCAL_FILES = 500


def copy_local_files(root: Path, scratch: Path, state_dir: str) -> list[str]:
    """Copy the checkout's local files into the scratch tree: files git ignores (a `.env`, a
    `_version.py` written at install time) and untracked top-level non-Python files (an untracked
    `ect.toml`), which are then committed in the scratch tree so that they are no change there.

    Untracked Python files are work in progress, not configuration, and are left out; so are
    ignored folders (`.venv/`, caches) and files over LOCAL_FILE_LIMIT bytes.
    """
    untracked = [p for p in _git(root, "ls-files", "-z", "--others", "--exclude-standard").split("\0") if p]
    ignored = [
        p
        for p in _git(
            root, "ls-files", "-z", "--others", "--ignored", "--exclude-standard", "--directory"
        ).split("\0")
        if p and not p.endswith("/")
    ]
    copied: list[str] = []
    to_commit: list[str] = []
    wanted = [(p, True) for p in ignored] + [
        (p, False) for p in untracked if "/" not in p and not p.endswith(".py")
    ]
    for name, is_ignored in wanted[:MAX_LOCAL_FILES]:
        src, dst = root / name, scratch / name
        if name.split("/")[0] == state_dir or not src.is_file() or dst.exists():
            continue
        if src.stat().st_size > LOCAL_FILE_LIMIT:
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
        copied.append(name)
        if not is_ignored:
            to_commit.append(name)
    if to_commit:
        _git(scratch, "add", "--", *to_commit)
        _git(
            scratch,
            "-c",
            "user.name=ect verify",
            "-c",
            "user.email=ect-verify@localhost",
            "-c",
            "commit.gpgsign=false",
            "-c",
            f"core.hooksPath={os.devnull}",  # no hook of the user's (post-commit ones too) sees this commit
            "commit",
            "-q",
            "--no-verify",
            "-m",
            "ect verify: the checkout's untracked local files",
        )
    return sorted(copied)


def _module_of(rel: str, cfg: Any) -> str | None:
    """The top-level import name (or mapped package) a source file belongs to."""
    for package, folder in sorted(cfg.package_dirs.items(), key=lambda kv: -len(kv[1])):
        if rel.startswith(folder.rstrip("/") + "/"):
            return str(package)
    for src in sorted(cfg.source_roots, key=len, reverse=True):
        prefix = "" if src in (".", "") else src.rstrip("/") + "/"
        if rel.startswith(prefix):
            first = rel[len(prefix) :].split("/")[0]
            return first[:-3] if first.endswith(".py") else first
    return None


_PROBE = (
    "import importlib.util, json, sys\n"
    "out = {}\n"
    "for name in json.loads(sys.argv[1]):\n"
    "    try:\n"
    "        spec = importlib.util.find_spec(name)\n"
    "    except Exception:\n"
    "        spec = None\n"
    "    where = spec and (spec.origin if spec.has_location else None)\n"
    "    where = where or (spec and list(spec.submodule_search_locations or [None])[0])\n"
    "    out[name] = where\n"
    "print(json.dumps(out))\n"
)


def imported_elsewhere(scratch: Path, cfg: Any, files: list[str]) -> dict[str, str]:
    """Import names among `files` that the tests' Python loads from outside the scratch tree (an
    editable install that maps a package folder), name -> where it loads from."""
    names = sorted(
        {m for m in (_module_of(f, cfg) for f in files) if m and all(p.isidentifier() for p in m.split("."))}
    )
    if not names:
        return {}
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _PROBE, json.dumps(names)],
            cwd=scratch,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        found = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else {}
    except (subprocess.TimeoutExpired, ValueError, IndexError):
        found = {}
    out = {}
    for name, where in found.items():
        if where and not Path(where).resolve().is_relative_to(scratch.resolve()):
            out[name] = str(where)
    return out


def _exit_on_signals() -> dict[int, Any]:
    """Turn SIGTERM and SIGHUP into SystemExit; returns the previous handlers."""

    def leave(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous: dict[int, Any] = {}
    for signum in (signal.SIGTERM, signal.SIGHUP):
        try:
            previous[signum] = signal.signal(signum, leave)
        except ValueError:  # not the main thread: leave signals alone
            break
    return previous


class MutantObserver(Protocol):
    """Extra runs on verify's own mutants (the selection benchmark runs pytest-testmon this way)."""

    def prepare(self, scratch: Path, cfg: Any) -> None:
        """HEAD is recorded; no mutant is applied yet."""

    def observe(
        self, mutant: Mutant, scratch: Path, cfg: Any, full: TestRun, sel: LoopResult
    ) -> dict[str, Any]:
        """The mutant is applied and both ect runs are done; returns what to keep on its result."""
        return {}

    def restore(self) -> None:
        """The mutant was reverted."""


def _check_out_submodules(root: Path, scratch: Path, report: VerifyReport) -> None:
    """The scratch worktree's submodules at their recorded commits, from local data only."""
    from ect.submodules import TIMEOUT_S, check_out, gitlinks

    deadline = time.monotonic() + TIMEOUT_S
    links = gitlinks(scratch, deadline)
    if links:
        done = check_out(root, scratch, links, deadline)
        report.notes.append(f"checked out submodules at their recorded commits: {', '.join(done)}")


def verify_selection(
    root: Path, count: int, seed: int, progress: bool, observer: MutantObserver | None = None
) -> VerifyReport:
    """Run the whole self-check in a scratch worktree of HEAD (removed afterwards)."""
    from ect.config import load_config

    tmp = Path(tempfile.mkdtemp(prefix="ect-verify-"))
    scratch = tmp / "tree"
    saved = {k: os.environ.get(k) for k in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH")}
    os.environ["PYTHONDONTWRITEBYTECODE"] = "1"  # a cached mutant .pyc must never outlive its source
    report = VerifyReport(seed=seed)
    handlers = _exit_on_signals()  # so that the cleanup below runs and pytest is stopped
    try:
        _git(root, "worktree", "add", "-q", "--detach", str(scratch), "HEAD")
        _check_out_submodules(root, scratch, report)
        copied = copy_local_files(root, scratch, load_config(root).state_dir)
        if copied:
            more = f" and {len(copied) - 10} more" if len(copied) > 10 else ""
            report.notes.append(f"copied the checkout's local files: {', '.join(copied[:10])}{more}")
        cfg = load_config(scratch)
        cfg.state_dir = str(tmp / "state")  # keep the user's fingerprints and events out of this
        cfg.ruff = cfg.mypy = False  # only tests decide whether a mutant is caught
        # the scratch tree's sources win over an editable install of the user's checkout
        os.environ["PYTHONPATH"] = os.pathsep.join(
            [str(scratch / r) for r in cfg.source_roots] + [p for p in [saved["PYTHONPATH"]] if p]
        )
        _run_mutants(scratch, cfg, count, seed, progress, report, observer)
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        for key, value in saved.items():
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


def _test_seconds(run: TestRun | None) -> float:
    return float(sum(run.durations.values())) if run is not None else 0.0


def _run_mutants(
    scratch: Path,
    cfg: Any,
    count: int,
    seed: int,
    progress: bool,
    report: VerifyReport,
    observer: MutantObserver | None = None,
) -> None:
    from ect.changes import Scope
    from ect.fingerprints.mutate import make_mutants
    from ect.loop import run_loop
    from ect.runner import run_pytest

    t0 = time.perf_counter()
    base = run_loop(scratch, cfg, Scope(mode="all"), stream=False, trigger="ci")
    report.record_wall_s = time.perf_counter() - t0
    if base.test_run is None or not base.test_run.outcomes:
        tail = error_line(base.test_run.output) if base.test_run else "compile step failed"
        raise EctError(f"no tests ran on HEAD: nothing to verify against ({tail})")
    suite = set(base.test_run.outcomes)
    passing = {n for n, o in base.test_run.outcomes.items() if o in ("passed", "skipped")}
    report.tests_total = len(suite)
    timeout = max(60.0, 10 * base.test_run.duration_ms / 1000)
    tracked = set(_git(scratch, "ls-files", "-z").split("\0"))
    files = [f for f in source_files(scratch, cfg) if f in tracked]  # not a copied local file
    elsewhere = imported_elsewhere(scratch, cfg, files)
    if elsewhere:
        files = [f for f in files if _module_of(f, cfg) not in elsewhere]
        for name, where in sorted(elsewhere.items()):
            report.notes.append(
                f"not mutated: {name} (the tests import it from {where}, not the scratch tree)"
            )
    mutants = make_mutants(scratch, files, count, seed)
    if not mutants:
        raise EctError("found nothing to mutate (no Python source outside the tests)")
    snapshot = scratch.parent / "state-snapshot"
    shutil.copytree(cfg.state_path, snapshot)
    sel_collect: list[str] = []
    if observer is not None:
        observer.prepare(scratch, cfg)

    def selection_runner(run_selected: Callable[[], TestRun]) -> TestRun:
        try:
            run = run_selected()
        except EnvError as exc:  # pytest refused the selection's run: an errored outcome, not a catch
            if exc.run is None:
                raise
            run = exc.run
        sel_collect[:] = run.collect_errors  # before the loop marks a crashed run's files as failed
        return run

    items: Any = mutants
    bar = click.progressbar(mutants, label="ect verify", file=sys.stderr) if progress else None
    if bar is not None:
        items = bar.__enter__()
    try:
        for mutant in items:
            mutant.apply(scratch)
            try:
                try:
                    full = run_pytest(scratch, cfg, None, stream=False, timeout=timeout)
                except EnvError as exc:  # the mutant broke a conftest: pytest stops as on a bad flag
                    if exc.run is None:
                        raise
                    full = exc.run
                sel_collect.clear()
                with heap_frozen():
                    sel = run_loop(
                        scratch,
                        cfg,
                        Scope(mode="worktree"),
                        stream=False,
                        trigger="ci",
                        timeout=timeout,
                        run_wrapper=selection_runner,  # the loop's own pytest, as `ect check` runs it
                    )
                extra = observer.observe(mutant, scratch, cfg, full, sel) if observer is not None else {}
            finally:
                mutant.revert(scratch)
                shutil.rmtree(cfg.state_path, ignore_errors=True)
                shutil.copytree(snapshot, cfg.state_path)
                if observer is not None:
                    observer.restore()
            result = _result(mutant, full, sel, list(sel_collect), suite, passing)
            result.extra = extra
            report.mutants.append(result)
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)


@contextlib.contextmanager
def heap_frozen() -> Iterator[None]:
    """Time a loop as a fresh `ect check` process runs it: the garbage collector does not walk the
    caller's own objects (the full run's results, a benchmark's coverage data)."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _result(
    mutant: Any, full: TestRun, sel: LoopResult, sel_collect: list[str], suite: set[str], passing: set[str]
) -> MutantResult:
    run = sel.test_run
    selected = 0 if sel.test_args == [] or sel.selection is None else count_selected(sel.test_args, suite)
    scored = score(
        mutant.path, full, full.collect_errors, run, sel_collect, selected, sel.compile_errors, passing
    )
    full_figures = RunFigures(
        len(suite),
        len(full.outcomes),
        len(failed_set(full, full.collect_errors)),
        _test_seconds(full),
        full.duration_ms / 1000,
        full.exit_code,
    )
    sel_figures = RunFigures(
        selected,
        len(run.outcomes) if run else 0,
        len(failed_set(run, sel_collect)) if run else 0,
        _test_seconds(run),
        run.duration_ms / 1000 if run else 0.0,
        run.exit_code if run else None,
    )
    return MutantResult(
        mutant.path,
        mutant.line,
        mutant.operator,
        scored.outcome,
        full_figures,
        sel_figures,
        scored.full_failed,
        scored.selection_failed,
        scored.error,
        mutant.diff() if scored.outcome in (MISSED, ERROR) else "",
        round(sel.phases_ms.get("select", 0.0), 1),
        _first_reason(sel),
    )


# reasons that select a test whatever changed: they say nothing about the change
_STANDING = ("starts a subprocess", "failed last time", "the environment changed")


def _first_reason(sel: LoopResult) -> str:
    """Why the selection chose what it ran: its first reason about the change (empty: none selected)."""
    if sel.selection is None:
        return ""
    reasons = sel.selection.run_all_reasons[:1] or [r for rs in sel.selection.tests.values() for r in rs]
    about_change = [r for r in reasons if not any(k in r for k in _STANDING)]
    return (about_change or reasons or [""])[0]


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

    Works on a scratch worktree of HEAD plus the checkout's untracked top-level local files (an
    untracked ect.toml, an ignored .env); uncommitted changes are not included. Exit 1 if any mutant
    was missed, 3 if a run errored or ran none of its tests (nothing was verified for that mutant).
    """
    from ect.repo import find_root

    root = find_root()
    has_head = subprocess.run(
        ["git", "rev-parse", "--verify", "-q", "HEAD"], cwd=root, capture_output=True, check=False
    )
    if has_head.returncode != 0:
        raise EctError("verify checks the committed code (HEAD), and this repository has no commit yet")
    report = verify_selection(root, count, seed, progress=not as_json)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        click.echo(render(report))
    if report.errors:
        first = report.errors[0]
        click.echo(
            f"ect: verify: {len(report.errors)} of {len(report.mutants)} mutants not verified; "
            f"{first.path}:{first.line}: {first.error}",
            err=True,
        )
        return ERRORED
    return 1 if report.misses else 0
