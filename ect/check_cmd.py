"""`ect check`: compile what changed and run only the tests it can affect."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from ect.changes import Change, Scope
from ect.loop import LoopResult, Reporter

NOOP_LINE = "ect: nothing to check (no changes)"
BLOCKED_COMMIT = "ect: commit blocked (fix it, or commit with --no-verify to skip the hook)"
HOOK_TIMEOUT = 120.0  # seconds one test may run in a hook when test_timeout is not configured


class TextReporter(Reporter):
    """Human output: one short block per phase; `--explain` adds the reasons."""

    def __init__(self, explain: bool) -> None:
        self.explain = explain

    def changes(self, changes: list[Change]) -> None:
        if changes:
            py = sum(1 for c in changes if c.path.endswith(".py"))
            click.echo(f"ect: {len(changes)} changed file{'s' * (len(changes) != 1)} ({py} Python)")
            if self.explain:
                for c in changes:
                    extra = f" (from {c.old_path})" if c.old_path else ""
                    click.echo(f"  {c.status} {c.path}{extra}")

    def compiled(self, report: Any) -> None:
        steps = ", ".join(f"{k} {v:.0f} ms" for k, v in report.durations_ms.items())
        for step, why in report.skipped.items():
            click.echo(f"ect: {step} skipped: {why}")
        if report.ok:
            if self.explain:
                click.echo(f"ect: compile ok ({steps})")
            return
        by_step: dict[str, list[Any]] = {}
        for err in report.errors:
            by_step.setdefault(err.step, []).append(err)
        for step, errs in by_step.items():
            click.secho(f"ect: {step}: {len(errs)} error{'s' * (len(errs) != 1)}", fg="red", bold=True)
            for err in errs:
                click.echo(f"{err}")
        click.echo(f"ect: tests not run: fix the compile errors first ({steps})")

    def still_working(self, what: str) -> None:
        click.echo(f"ect: {what}…", err=True)

    def checkout(self, what: str) -> None:
        click.echo(f"ect: testing {what} in a temporary checkout (it differs from the working tree)")

    def selected(self, selection: Any, files: list[str] | None) -> None:
        total = selection.total_test_files
        if files is None:
            click.echo(f"ect: running all tests: {selection.run_all_reasons[0]}")
            for why in selection.run_all_reasons[1:] if self.explain else []:
                click.echo(f"  also: {why}")
        elif not files:
            click.echo(f"ect: no tests can be affected by this change (0 of {total} test files)")
        else:
            nodes = sum(len(v) for v in selection.nodes.values())
            narrowed = f" ({nodes} tests by fingerprint)" if nodes else ""
            click.echo(f"ect: {len(files)} of {total} test files selected{narrowed}")
        if self.explain:
            for test, reasons in sorted(selection.tests.items()):
                click.echo(f"  {test}")
                for why in reasons:
                    click.echo(f"    ← {why}")
            for note in selection.notes:
                click.echo(f"  note: {note}")


def summary(res: LoopResult) -> str:
    """The closing line of a loop run."""
    phases = ", ".join(f"{k} {_ms(v)}" for k, v in res.phases_ms.items())
    word = {"pass": "passed", "fail": "FAILED", "noop": "nothing to do"}.get(res.outcome, res.outcome)
    return f"ect: {word} in {_ms(res.duration_ms)} ({phases})"


def _ms(value: float) -> str:
    return f"{value / 1000:.2f} s" if value >= 1000 else f"{value:.0f} ms"


def result_json(res: LoopResult, root: Path) -> dict[str, Any]:
    """The machine-readable form of a loop run (`--json`)."""
    run = res.test_run
    sel = res.selection
    return {
        "root": str(root),
        "outcome": res.outcome,
        "exit_code": res.exit_code,
        "changed": [{"path": c.path, "status": c.status, "old_path": c.old_path} for c in res.changes],
        "compile": {
            "errors": [
                {"step": e.step, "path": e.path, "line": e.line, "col": e.col, "message": e.message}
                for e in res.compile_errors
            ],
            "durations_ms": res.compile.durations_ms if res.compile else {},
            "skipped": res.compile.skipped if res.compile else {},
        },
        "selection": None
        if sel is None
        else {
            "run_all": sel.run_all,
            "run_all_reasons": sel.run_all_reasons,
            "tests": [{"path": t, "reasons": r} for t, r in sorted(sel.tests.items())],
            "nodes": sel.nodes,
            "fingerprinted": sel.fingerprinted,
            "total_test_files": sel.total_test_files,
            "notes": sel.notes,
        },
        "results": None
        if run is None
        else {
            "exit_code": run.exit_code,
            "passed": len(run.passed),
            "failed": run.failed,
            "outcomes": run.outcomes,
            "command": run.command,
            "output_tail": run.output[-4000:],
        },
        "durations_ms": {
            **{k: round(v, 3) for k, v in res.phases_ms.items()},
            "total": round(res.duration_ms, 3),
        },
    }


def _stamp_config(root: Path, cfg: Any) -> None:
    """Tell the fast no-op path (ect.entry) that this config validated."""
    from ect.entry import CONFIG_STAMP, config_signature
    from ect.state import ensure_state_dir

    if cfg.state_dir != ".ect":
        return
    stamp = cfg.state_path / CONFIG_STAMP
    signature = config_signature(str(root)).encode()
    try:
        if not stamp.is_file() or stamp.read_bytes() != signature:  # missing, stale or garbage: rewrite
            ensure_state_dir(cfg.state_path)
            tmp = stamp.with_name(CONFIG_STAMP + ".tmp")
            tmp.write_bytes(signature)
            os.replace(tmp, stamp)
    except OSError:
        pass


@click.command("check")
@click.option("--staged", is_flag=True, help="Only what is staged (the pre-commit case).")
@click.option("--all", "everything", is_flag=True, help="Compile everything and run the whole suite.")
@click.option("--range", "rev_range", metavar="A..B", help="Changes in a revision range (pre-push, CI).")
@click.option("--explain", is_flag=True, help="Say why each test file was selected.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
@click.option("--no-tests", is_flag=True, help="Compile only.")
@click.option("-n", "--parallel", is_flag=True, help="Run tests with pytest-xdist (-n auto) when installed.")
@click.option(
    "--timeout",
    "test_timeout",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help=f"Stop a test that runs longer (0: no limit; default: test_timeout, {HOOK_TIMEOUT:g} s in hooks).",
)
@click.option(
    "--trigger", default="cli", hidden=True, type=click.Choice(["cli", "hook", "watch", "ci", "lsp"])
)
@click.argument("paths", nargs=-1, type=click.Path())
def check(
    staged: bool,
    everything: bool,
    rev_range: str | None,
    explain: bool,
    as_json: bool,
    no_tests: bool,
    parallel: bool,
    test_timeout: float | None,
    trigger: str,
    paths: tuple[str, ...],
) -> int:
    """Compile changed files and run the tests they can affect.

    By default, the working tree (staged, unstaged and untracked files) against HEAD.
    Exit 0: all passed; 1: a compile error or a test failure; 2: usage or environment error.
    """
    from ect.config import load_config
    from ect.errors import EctError
    from ect.loop import run_loop
    from ect.repo import find_root

    chosen = [
        m
        for m in (
            "staged" if staged else None,
            "all" if everything else None,
            "range" if rev_range else None,
            "paths" if paths else None,
        )
        if m
    ]
    if len(chosen) > 1:
        raise EctError("choose one of --staged, --all, --range or PATHS")
    scope = Scope(mode=chosen[0] if chosen else "worktree", rev_range=rev_range, paths=tuple(paths))
    root = find_root()
    cfg = with_timeout(load_config(root), test_timeout, trigger)
    _stamp_config(root, cfg)
    reporter = Reporter() if as_json else TextReporter(explain)
    res = run_loop(
        root,
        cfg,
        scope,
        run_tests=not no_tests,
        trigger=trigger,
        reporter=reporter,
        stream=not as_json,
        parallel=parallel,
    )
    if as_json:
        click.echo(json.dumps(result_json(res, root), indent=2))
    elif res.outcome == "noop":
        click.echo(NOOP_LINE)
    else:
        click.echo(summary(res))
        if res.exit_code and trigger == "hook":
            click.echo(BLOCKED_COMMIT, err=True)
    return res.exit_code


def with_timeout(cfg: Any, override: float | None, trigger: str) -> Any:
    """`cfg` with the per-test timeout in force: `--timeout`, else test_timeout, else the hook default."""
    from dataclasses import replace

    if override is not None:
        return replace(cfg, test_timeout=override)
    if not cfg.test_timeout and trigger == "hook":
        return replace(cfg, test_timeout=HOOK_TIMEOUT)
    return cfg
