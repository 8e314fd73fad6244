"""Scoring and reporting for `ect verify`: what counts as a catch, and how each run went.

A mutant is caught by the selection only when the selection run failed at least one test
the full suite failed (a failing test module counts by its file), both runs hung, or both
stopped on the same error in the mutated file (a conftest that no longer imports, say). A
run that errored or ran none of the tests it selected verifies nothing: it is an error,
never a catch.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ect.compile_step import CompileError
    from ect.runner import TestRun

CAUGHT, MISSED, SURVIVED, ERROR = "caught", "missed", "survived", "error"
_ERROR_LINE = re.compile(
    r"^(E {2,}\S.*|ERROR[: ].*|INTERNALERROR.*|ImportError while .*|\S*Error: .*)$", re.M
)
_SHOWN = 20  # failing tests listed per run


@dataclass
class RunFigures:
    """One run on one mutant: tests selected (of HEAD's suite), run and failed, and its times."""

    selected: int = 0
    ran: int = 0
    failed: int = 0
    time_s: float = 0.0  # test time, as pytest measured it
    wall_s: float = 0.0
    exit_code: int | None = None  # None: pytest was not started


@dataclass
class MutantResult:
    path: str
    line: int
    operator: str
    outcome: str  # caught, missed (by the selection), survived (the full suite passed), error
    full: RunFigures
    selection: RunFigures
    full_failed: list[str] = field(default_factory=list)
    selection_failed: list[str] = field(default_factory=list)
    error: str = ""  # why nothing was verified (outcome "error")
    diff: str = ""
    select_ms: float = 0.0  # the selection's select phase
    why: str = ""  # the first reason the selection gave (which rule selected the tests)
    extra: dict[str, Any] = field(default_factory=dict)  # what a benchmark observed on the mutant

    @property
    def caught_full(self) -> bool:
        return self.outcome in (CAUGHT, MISSED)

    @property
    def caught_selection(self) -> bool:
        return self.outcome == CAUGHT


def failed_set(run: TestRun, collect_errors: list[str], passing: set[str] | None = None) -> set[str]:
    """Failed tests (those that passed on HEAD when `passing` is given) and modules that failed to load."""
    failed = {n for n, o in run.outcomes.items() if o == "failed" and (passing is None or n in passing)}
    return failed | set(collect_errors)


def error_line(output: str) -> str:
    """The line that says why a pytest run stopped (its first error line, else its last line)."""
    found = _ERROR_LINE.search(output)
    if found:
        return found.group(0).strip()[:300]
    lines = [s for s in output.strip().splitlines() if s.strip()]
    return lines[-1].strip()[:300] if lines else "no output"


def error_signature(output: str) -> str:
    """What a stopped run reported: its exception lines (`E   ...`), else its error line."""
    lines = [s.strip() for s in output.splitlines() if s.startswith("E ")]
    return "\n".join(lines[-20:]) if lines else error_line(output)


def errored(run: TestRun, collect_errors: list[str]) -> bool:
    """pytest stopped without a verdict on any test: usage, internal or start-up error, or a crash."""
    from ect.runner import TIMED_OUT

    if run.exit_code == TIMED_OUT:
        return False
    if run.exit_code == 3:  # INTERNALERROR: a plugin crashed, whatever ran before
        return True
    return not run.ok and not run.outcomes and not collect_errors


def count_selected(args: list[str] | None, suite: set[str]) -> int:
    """How many of HEAD's tests `args` (files and node ids; None: everything) ask pytest for."""
    if args is None:
        return len(suite)
    by_file: dict[str, list[str]] = {}
    for nodeid in suite:
        by_file.setdefault(nodeid.split("::")[0], []).append(nodeid)
    chosen: set[str] = set()
    for arg in args:
        if "::" not in arg:
            folder = arg.rstrip("/") + "/"
            for file, ids in by_file.items():
                if file == arg or file.startswith(folder):
                    chosen.update(ids)
            continue
        in_file = by_file.get(arg.split("::")[0], [])
        hits = {n for n in in_file if n == arg or n.startswith((arg + "::", arg + "["))}
        if not hits:  # as ect's pytest plugin runs an id that no longer exists
            function = arg.partition("[")[0]
            hits = {n for n in in_file if n == function or n.startswith(function + "[")} or set(in_file)
        chosen |= hits
    return len(chosen)


@dataclass
class Scored:
    outcome: str
    full_failed: list[str]
    selection_failed: list[str]
    error: str = ""


def score(
    path: str,
    full: TestRun,
    full_collect: list[str],
    sel: TestRun | None,
    sel_collect: list[str],
    selected: int,
    compile_errors: list[CompileError],
    passing: set[str],
) -> Scored:
    """Judge one mutant from its full-suite run and its selection run (None: no test selected)."""
    from ect.runner import TIMED_OUT

    full_hung = full.exit_code == TIMED_OUT
    broke = failed_set(full, full_collect, passing)
    full_error = errored(full, full_collect)
    # e.g. a conftest that imports the mutated module: HEAD's run was clean, so the mutant broke the
    # suite's start if the traceback names its file, or if the selection run stopped the same way
    same_error = (
        full_error
        and sel is not None
        and errored(sel, sel_collect)
        and sel.exit_code == full.exit_code
        and error_signature(sel.output) == error_signature(full.output)
    )
    by_mutant = full_error and (path in full.output or same_error)
    if full_error and not by_mutant:
        return Scored(
            ERROR, [], [], f"full suite run errored (exit {full.exit_code}): {error_line(full.output)}"
        )
    caught_full = bool(broke) or full_hung or by_mutant
    full_failed = sorted(broke)[:_SHOWN]

    def verdict(caught: bool, sel_failed: list[str]) -> Scored:
        if not caught_full:
            return Scored(SURVIVED, full_failed, sel_failed)
        return Scored(CAUGHT if caught else MISSED, full_failed, sel_failed)

    if compile_errors:
        if caught_full and any(e.path == path for e in compile_errors):
            return verdict(True, [])
        shown = "; ".join(str(e) for e in compile_errors[:2])
        return Scored(ERROR, full_failed, [], f"selection's compile step failed: {shown}")
    if sel is None:
        return verdict(False, [])
    if sel.exit_code == TIMED_OUT:
        if full_hung:
            return verdict(True, [])
        return Scored(ERROR, full_failed, [], f"selection run timed out ({sel.output})")
    sel_failed = failed_set(sel, sel_collect)
    if errored(sel, sel_collect):
        why = f"selection run errored (exit {sel.exit_code}): {error_line(sel.output)}"
        if same_error:
            return verdict(True, [])
        return Scored(ERROR, full_failed, [], why)
    if selected and not sel.outcomes and not sel_collect:
        return Scored(
            ERROR,
            full_failed,
            [],
            f"selection run ran none of its {selected} tests: {error_line(sel.output)}",
        )
    return verdict(bool(broke & sel_failed), sorted(sel_failed)[:_SHOWN])


@dataclass
class VerifyReport:
    mutants: list[MutantResult] = field(default_factory=list)
    tests_total: int = 0
    record_wall_s: float = 0.0
    seed: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def caught_full(self) -> int:
        return sum(m.caught_full for m in self.mutants)

    @property
    def caught_both(self) -> int:
        return sum(m.caught_selection for m in self.mutants)

    @property
    def misses(self) -> list[MutantResult]:
        return [m for m in self.mutants if m.outcome == MISSED]

    @property
    def errors(self) -> list[MutantResult]:
        return [m for m in self.mutants if m.outcome == ERROR]

    @property
    def recall(self) -> float | None:
        return self.caught_both / self.caught_full if self.caught_full else None

    def time_fractions(self) -> list[float]:
        """Selection test time over full-suite test time, for mutants whose runs both completed."""
        from ect.runner import TIMED_OUT

        return [
            m.selection.time_s / m.full.time_s
            for m in self.mutants
            if m.outcome != ERROR and m.full.exit_code != TIMED_OUT and m.full.time_s > 0
        ]

    def to_json(self) -> dict[str, Any]:
        fractions = self.time_fractions()
        return {
            "mutants": len(self.mutants),
            "caught_by_full_suite": self.caught_full,
            "caught_by_selection": self.caught_both,
            "recall": self.recall,
            "errors": [_brief(m) | {"reason": m.error} for m in self.errors],
            "median_test_time_fraction": statistics.median(fractions) if fractions else None,
            "mean_test_time_fraction": statistics.fmean(fractions) if fractions else None,
            "time_fraction_mutants": len(fractions),
            "tests_total": self.tests_total,
            "record_wall_s": round(self.record_wall_s, 3),
            "seed": self.seed,
            "notes": self.notes,
            "misses": [_brief(m) | {"full_failed": m.full_failed, "diff": m.diff} for m in self.misses],
            "results": [
                {k: v for k, v in asdict(m).items() if k != "diff"}
                | {"caught_full": m.caught_full, "caught_selection": m.caught_selection}
                for m in self.mutants
            ],
        }


def _brief(m: MutantResult) -> dict[str, Any]:
    return {"path": m.path, "line": m.line, "operator": m.operator}


def _figures(r: RunFigures) -> str:
    if r.exit_code is None:
        return f"{r.selected:>5} selected, not run"
    return (
        f"{r.selected:>5} selected {r.ran:>5} ran {r.failed:>4} failed "
        f"{r.time_s:7.2f} s test {r.wall_s:7.2f} s wall (exit {r.exit_code})"
    )


def render(report: VerifyReport) -> str:
    fractions = report.time_fractions()
    recall = report.recall
    lines = [
        f"mutants:                    {len(report.mutants)} (seed {report.seed}; {report.tests_total} tests)",
        f"caught by the full suite:   {report.caught_full}",
        f"caught by ect's selection:  {report.caught_both}",
        f"recall:                     {'n/a' if recall is None else f'{recall:.1%}'}",
        f"errored runs:               {len(report.errors)}",
    ]
    if fractions:
        lines.append(
            f"test time run (median):     {statistics.median(fractions):.1%} of the full suite "
            f"(over the {len(fractions)} mutants whose runs completed)"
        )
        lines.append(f"test time run (mean):       {statistics.fmean(fractions):.1%}")
    lines.append(f"recording run:              {report.record_wall_s:.2f} s")
    lines += [f"note: {n}" for n in report.notes]
    lines.append("")
    for m in report.mutants:
        lines.append(f"{m.outcome.upper():<9}{m.operator} at {m.path}:{m.line}")
        lines.append(f"    full suite: {_figures(m.full)}")
        lines.append(f"    selection:  {_figures(m.selection)}")
        if m.error:
            lines.append(f"    error: {m.error}")
    for miss in report.misses:
        lines += [
            "",
            f"MISSED: {miss.operator} at {miss.path}:{miss.line} (full suite failed: "
            f"{', '.join(miss.full_failed[:5])})",
            miss.diff.rstrip(),
        ]
    if report.errors:
        lines += ["", f"NOT VERIFIED: {len(report.errors)} mutant(s) had a run that errored (see above)"]
    elif not report.misses and recall is not None:
        lines += ["", "ok: every mutant the full suite caught, ect's selection caught too"]
    return "\n".join(lines)
