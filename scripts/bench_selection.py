#!/usr/bin/env python3
"""Benchmark ect's test selection against the full suite and pytest-testmon on the same mutants.

Run it with the Python of the project's environment (ect, pytest and pytest-testmon installed
there), for example:

    /tmp/venv/bin/python scripts/bench_selection.py --repo /tmp/jinja --mutants 30

Several projects: repeat `--repo`; a summary across projects (worst project first) ends the output.

The mutants, their runs and their scoring are `ect verify`'s own (`ect.verify.verify_selection`,
`ect.verify_report.score`): the same seed gives the same mutants and the same verdicts as
`ect verify --mutants N --seed S`. On each mutant this script also runs pytest-testmon (scored by the
same rules) and, when ect selected one test file, plain pytest on the same tests, with the same
plugins, to measure what ect adds. It reports recall, errored runs, the test time each tool ran per
mutant as a fraction of the full suite's (all mutants, and split by the rule that selected the
tests: code that runs at import time or in a shared fixture, or code tests executed), the select
phase, the fingerprint database's size, ect's overhead when one file is selected, the recording run
against a plain run, and the no-op `pre-commit run` cost of the ect hook over an empty hook.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from ect.changes import Scope
from ect.config import Config, load_config
from ect.fingerprints.mutate import Mutant
from ect.loop import LoopResult, run_loop
from ect.runner import TIMED_OUT, TestRun, autoload, python_for
from ect.verify import copy_local_files, heap_frozen, verify_selection
from ect.verify_report import CAUGHT, ERROR, MISSED, VerifyReport, score

INTERNAL_ERROR = 3  # pytest: a plugin crashed; not a verdict on the mutant
STANDING_RULES = ("starts a subprocess", "failed last time", "the environment changed")
IMPORT_RULES = ("runs while a module is imported", "module level of", "while collecting", " fixture '")


def plain_command(cfg: Config) -> tuple[list[str], dict[str, str]]:
    """pytest as ect runs it (same interpreter, plugins and options), without ect's plugins."""
    python, project_env = python_for(cfg)
    cmd = [python, "-m", "pytest"]  # with pytest's cache, as a developer runs it (and ect does)
    env = dict(os.environ)
    if not autoload(cfg, project_env):
        env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
        for plugin in cfg.pytest_plugins:
            cmd += ["-p", plugin]
    return [*cmd, *cfg.pytest_args], env


def timed(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float | None = None) -> float:
    t = time.perf_counter()
    with contextlib.suppress(subprocess.TimeoutExpired):  # counted as the time it was given
        subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, check=False, timeout=timeout)
    return time.perf_counter() - t


def _failed(run: TestRun | None) -> set[str]:
    return {n for n, o in run.outcomes.items() if o == "failed"} if run is not None else set()


def rule_of(why: str) -> str:
    """The kind of rule that selected a mutant's tests."""
    if not why:
        return "none selected"
    if any(r in why for r in STANDING_RULES):
        return "only tests run every time"
    if any(r in why for r in IMPORT_RULES):
        return "import time / shared"
    if "executed " in why or " ran " in why or "read " in why:
        return "executed by tests"
    return "other"


class TestmonObserver:
    """Runs pytest-testmon (recorded once on HEAD) and plain pytest on each of verify's mutants."""

    def __init__(self, use_testmon: bool, overhead: bool = False) -> None:
        self.use_testmon = use_testmon
        self.overhead = overhead  # also time `ect check` as a process and the loop as `ect watch` runs it
        self.warm: Any = None
        self.noop_cli_s: float | None = None
        self.tmp = Path(tempfile.mkdtemp(prefix="ect-bench-tm-"))
        self.data = self.tmp / "testmondata"
        self.snapshot = self.tmp / "testmondata-snapshot"
        self.db_bytes = 0
        self.record_s = 0.0
        self.passing: set[str] = set()
        self.oracle: dict[str, dict[int, set[str]]] = {}

    def _testmon(self, scratch: Path, cfg: Config, timeout: float) -> TestRun:
        cmd, env = plain_command(cfg)
        results = self.tmp / "tm.json"
        env = {**env, "TESTMON_DATAFILE": str(self.data), "ECT_RESULTS": str(results)}
        if env.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
            cmd += ["-p", "testmon.pytest_testmon"]
        cmd += ["-o", f"cache_dir={self.tmp / 'cache'}", "--testmon", "-p", "ect.pytest_plugin"]
        t = time.perf_counter()
        try:
            code = subprocess.run(
                cmd, cwd=scratch, env=env, capture_output=True, check=False, timeout=timeout
            ).returncode
        except subprocess.TimeoutExpired:
            code = TIMED_OUT
        run = TestRun(code, (time.perf_counter() - t) * 1000)
        try:
            data = json.loads(results.read_text())
            results.unlink()
        except (OSError, ValueError):
            data = {}
        for nodeid, entry in (data.get("tests") or {}).items():
            run.outcomes[nodeid] = entry.get("outcome", "failed")
            run.durations[nodeid] = float(entry.get("duration") or 0.0)
        run.collect_errors = list(data.get("collect_errors") or [])
        return run

    def prepare(self, scratch: Path, cfg: Config) -> None:
        self.db_bytes = sum(f.stat().st_size for f in cfg.state_path.glob("fingerprints.db*"))
        if self.overhead:
            from ect.fix.warm_pytest import WarmPytest

            try:
                self.warm = WarmPytest(scratch, cfg)  # type: ignore[call-arg]
            except TypeError:  # an older WarmPytest(root)
                self.warm = WarmPytest(scratch)
            self.warm.start()
            # the fixed cost of `ect check` as a process (what a hook pays on top of the loop):
            # interpreter start-up, imports, git status, with nothing to check
            runs = [
                timed([sys.executable, "-m", "ect", "check"], scratch, dict(os.environ)) for _ in range(5)
            ]
            self.noop_cli_s = statistics.median(runs)
        self.oracle = self._line_coverage(scratch, cfg)
        if not self.use_testmon:
            return
        t = time.perf_counter()
        base = self._testmon(scratch, cfg, 3600)
        self.record_s = time.perf_counter() - t
        self.passing = {n for n, o in base.outcomes.items() if o in ("passed", "skipped")}
        self._copy_db(self.data, self.snapshot)

    def _line_coverage(self, scratch: Path, cfg: Config) -> dict[str, dict[int, set[str]]]:
        """The oracle: which tests ran each line (coverage.py, one context per test) on HEAD. A
        mutant's oracle selection is the tests that ran its line; a line only import or collection
        ran (no test context) has none. {} when coverage cannot run."""
        cmd, env = plain_command(cfg)
        data_file = self.tmp / "oracle.coverage"
        env = {**env, "COVERAGE_FILE": str(data_file)}
        if env.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
            cmd += ["-p", "pytest_cov"]
        cmd += ["-p", "no:cacheprovider", "--cov=.", "--cov-context=test", "--cov-report="]
        try:
            subprocess.run(cmd, cwd=scratch, env=env, capture_output=True, check=False, timeout=3600)
            import coverage

            data = coverage.CoverageData(basename=str(data_file))
            data.read()
        except Exception:
            return {}
        found: dict[str, dict[int, set[str]]] = {}
        for filename in data.measured_files():
            try:
                rel = Path(filename).resolve().relative_to(scratch.resolve()).as_posix()
            except ValueError:
                continue
            lines = found.setdefault(rel, {})
            for line, contexts in data.contexts_by_lineno(filename).items():
                tests = {c.rsplit("|", 1)[0] for c in contexts if c}
                if tests:
                    lines[line] = tests
        return found

    def observe(
        self, mutant: Mutant, scratch: Path, cfg: Config, full: TestRun, sel: LoopResult
    ) -> dict[str, Any]:
        out: dict[str, Any] = {"select_ms": sel.phases_ms.get("select", 0.0)}
        ran_line = self.oracle.get(mutant.path, {}).get(mutant.line) if self.oracle else None
        if ran_line is not None:
            time_s = sum(full.durations.get(t, 0.0) for t in ran_line)
            out["oracle"] = {"tests": len(ran_line), "time_s": time_s}
        out["ect_wall_s"] = sum(sel.phases_ms.values()) / 1000
        out["ect_phases_ms"] = {k: round(v, 1) for k, v in sel.phases_ms.items()}
        # per-test recall: the tests the mutant fails in the full suite that a tool did not fail
        broke = _failed(full) & self.passing if self.passing else _failed(full)
        out["failing"] = len(broke)
        out["ect_missed_failing"] = len(broke - _failed(sel.test_run))
        # as verify bounds its runs: a mutant that makes a test loop forever costs minutes, not hours
        timeout = max(60.0, 10 * self.record_s) if self.record_s else 600.0
        node_args = sel.selection.pytest_args() if sel.selection else None
        if sel.selection and node_args and len(sel.selection.tests) == 1:
            cmd, env = plain_command(cfg)
            out["plain_same_s"] = timed([*cmd, "--", *node_args], scratch, env, timeout)
            if self.overhead:
                out.update(self._overhead(scratch, cfg, timeout))
        if self.use_testmon:
            tm = self._testmon(scratch, cfg, timeout)
            verdict = (
                ERROR
                if tm.exit_code == INTERNAL_ERROR
                else score(
                    mutant.path,
                    full,
                    full.collect_errors,
                    tm,
                    tm.collect_errors,
                    len(tm.outcomes),
                    [],
                    self.passing,
                ).outcome
            )
            out["tm"] = {
                "outcome": verdict,
                "exit_code": tm.exit_code,
                "tests": len(tm.outcomes),
                "time_s": sum(tm.durations.values()),
                "missed_failing": len(broke - _failed(tm)),
            }
        return out

    def _overhead(self, scratch: Path, cfg: Config, timeout: float) -> dict[str, float]:
        """The same selection again, from the state before the mutant, run as `ect watch` runs it:
        the loop with the warm runner."""
        if self.warm is None:
            return {}
        snapshot = scratch.parent / "state-snapshot"  # verify's copy of the recorded state
        state = self.tmp / "state-watch"
        shutil.rmtree(state, ignore_errors=True)
        shutil.copytree(snapshot, state)
        try:
            with heap_frozen():  # as `verify` times its loop
                t = time.perf_counter()
                run_loop(
                    scratch,
                    replace(cfg, state_dir=str(state)),
                    Scope(mode="worktree"),
                    stream=False,
                    trigger="watch",
                    timeout=timeout,
                    pytest_runner=self.warm.run_pytest,
                )
                return {"watch_wall_s": time.perf_counter() - t}
        finally:
            shutil.rmtree(state, ignore_errors=True)

    @staticmethod
    def _copy_db(src: Path, dst: Path) -> None:
        """Copy testmon's SQLite database with its write-ahead log (a stale log corrupts it)."""
        for suffix in ("", "-wal", "-shm"):
            target = Path(f"{dst}{suffix}")
            target.unlink(missing_ok=True)
            if Path(f"{src}{suffix}").exists():
                shutil.copy2(f"{src}{suffix}", target)

    def restore(self) -> None:
        if self.snapshot.exists():
            self._copy_db(self.snapshot, self.data)

    def close(self) -> None:
        if self.warm is not None:
            self.warm.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)


def bench_recording(repo: Path, repeat: int) -> dict[str, float]:
    """The recording run (`ect check --all`) against plain pytest, alternated, in a scratch worktree.

    As a developer has them: byte-code caches on (`PYTHONDONTWRITEBYTECODE` is dropped) and warmed by
    one untimed run of each. "warm": ect's state kept from the run before (its instrumented-code
    cache and the stored versions), as every later `ect check --all` has it; "cold": an empty state,
    as on the very first run.
    """
    tmp = Path(tempfile.mkdtemp(prefix="ect-bench-rec-"))
    scratch = tmp / "tree"
    plain: list[float] = []
    warm_pytest: list[float] = []
    warm_total: list[float] = []
    cold_total: list[float] = []
    saved = os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    saved_path = os.environ.get("PYTHONPATH")
    try:
        subprocess.run(
            ["git", "worktree", "add", "-q", "--detach", str(scratch), "HEAD"], cwd=repo, check=True
        )
        copy_local_files(repo, scratch, load_config(repo).state_dir)  # `_version.py` and the like
        cfg = load_config(scratch)
        cfg.state_dir = str(tmp / "state")
        cfg.ruff = cfg.mypy = False
        # the scratch tree's source roots first, as verify has them (a `src/` layout not installed)
        os.environ["PYTHONPATH"] = os.pathsep.join(
            [str(scratch / r) for r in cfg.source_roots] + ([saved_path] if saved_path else [])
        )
        cmd, env = plain_command(cfg)

        def recording() -> LoopResult:
            return run_loop(scratch, cfg, Scope(mode="all"), stream=False, trigger="ci")

        timed(cmd, scratch, env)  # warm-up: byte code written, files in the page cache
        recording()
        for _ in range(repeat):
            plain.append(timed(cmd, scratch, env))
            t = time.perf_counter()
            base = recording()
            warm_total.append(time.perf_counter() - t)
            warm_pytest.append(base.phases_ms.get("tests", 0) / 1000)
            shutil.rmtree(tmp / "state", ignore_errors=True)
            t = time.perf_counter()
            recording()
            cold_total.append(time.perf_counter() - t)
    finally:
        if saved is not None:
            os.environ["PYTHONDONTWRITEBYTECODE"] = saved
        if saved_path is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved_path
        subprocess.run(
            ["git", "worktree", "remove", "--force", str(scratch)], cwd=repo, capture_output=True, check=False
        )
        subprocess.run(["git", "worktree", "prune"], cwd=repo, capture_output=True, check=False)
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "plain_s": statistics.median(plain),
        "record_pytest_s": statistics.median(warm_pytest),
        "record_total_s": statistics.median(warm_total),
        "cold_total_s": statistics.median(cold_total),
    }


def recording_line(rec: dict[str, float]) -> str:
    plain = rec["plain_s"]
    return (
        f"recording run (`ect check --all`): plain pytest {plain:.2f} s; ect {rec['record_total_s']:.2f} s "
        f"({rec['record_total_s'] / plain:.2f}x; its pytest {rec['record_pytest_s'] / plain:.2f}x); "
        f"first run, empty state {rec['cold_total_s']:.2f} s ({rec['cold_total_s'] / plain:.2f}x)"
    )


def bench_precommit(repo: Path, python: str, pre_commit: str, runs: int) -> dict[str, float] | None:
    """Median wall time of a no-op `pre-commit run` with an empty hook and with the ect hook."""
    work = Path(tempfile.mkdtemp(prefix="ect-bench-pc-"))
    try:
        clone = work / "clone"
        subprocess.run(["git", "clone", "-q", "--shared", str(repo), str(clone)], check=True)
        hook = (
            "-   repo: local\n    hooks:\n    -   id: h\n        name: h\n        language: system\n"
            "        pass_filenames: false\n        always_run: true\n        entry: '{}'\n"
        )
        (clone / "empty.yaml").write_text("repos:\n" + hook.format("true"))
        entry = f"{python} -m ect check --staged --trigger hook"
        (clone / "ect.yaml").write_text("repos:\n" + hook.format(entry))
        env = {
            **os.environ,
            "PRE_COMMIT_HOME": str(work / "home"),
            "GIT_AUTHOR_NAME": "b",
            "GIT_AUTHOR_EMAIL": "b@b",
            "GIT_COMMITTER_NAME": "b",
            "GIT_COMMITTER_EMAIL": "b@b",
        }
        subprocess.run(["git", "add", "empty.yaml", "ect.yaml"], cwd=clone, check=True)
        subprocess.run(["git", "commit", "-qm", "configs"], cwd=clone, check=True, env=env)
        out: dict[str, list[float]] = {"empty": [], "ect": []}
        for name in out:  # warm up (and make sure it works)
            proc = subprocess.run(
                [pre_commit, "run", "-c", f"{name}.yaml"],
                cwd=clone,
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode != 0:
                print(f"pre-commit with {name} hook failed: {proc.stdout[-500:]}", file=sys.stderr)
                return None
        for _ in range(runs):
            for name in out:
                out[name].append(timed([pre_commit, "run", "-c", f"{name}.yaml"], clone, env))
        return {k: statistics.median(v) * 1000 for k, v in out.items()}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def bench_project(repo: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Benchmark one project; prints its report and returns its summary."""
    result: dict[str, Any] = {"repo": str(repo), "seed": args.seed}
    if args.repeat > 0:
        result["recording"] = bench_recording(repo, args.repeat)
    observer = TestmonObserver(not args.no_testmon, args.overhead)
    try:
        report: VerifyReport = verify_selection(repo, args.mutants, args.seed, False, observer)
    finally:
        observer.close()
    rows = report.mutants
    scored = [m for m in rows if m.outcome != ERROR]
    killed = [m for m in scored if m.outcome in (CAUGHT, MISSED)]
    fracs = report.time_fractions()
    tm_out = {id(m): m.extra["tm"]["outcome"] if "tm" in m.extra else None for m in rows}
    tm_ok = [m for m in rows if tm_out[id(m)] not in (None, ERROR) and m.outcome != ERROR]
    tm_fracs = [m.extra["tm"]["time_s"] / m.full.time_s for m in tm_ok if m.full.time_s > 0]
    by_rule: dict[str, list[float]] = {}
    for m in scored:
        if m.full.time_s > 0 and m.full.exit_code != TIMED_OUT:
            by_rule.setdefault(rule_of(m.why), []).append(m.selection.time_s / m.full.time_s)

    print()
    print(
        f"repo: {repo.name}   tests: {report.tests_total}   mutants: {len(rows)} (seed {args.seed}), "
        f"{len(killed)} caught by the full suite, {len(report.errors)} errored"
    )
    print(f"{'tool':<16}{'recall':>10}{'median time':>14}{'mean time':>12}{'errored runs':>14}")
    recall = report.recall if report.recall is not None else float("nan")
    print(
        f"{'ect':<16}{recall:>10.1%}{_median(fracs):>14.1%}"
        f"{statistics.fmean(fracs) if fracs else float('nan'):>12.1%}{len(report.errors):>14}"
    )
    for m in report.misses:
        print(f"    missed: {m.path}:{m.line} {m.operator}")
    summary: dict[str, Any] = {
        "name": repo.name,
        "tests": report.tests_total,
        "ect": {"recall": report.recall, "median_frac": _median(fracs), "errors": len(report.errors)},
    }
    if not args.no_testmon:
        tm_killed = [m for m in killed if tm_out[id(m)] not in (None, ERROR)]
        tm_hit = sum(1 for m in tm_killed if tm_out[id(m)] == CAUGHT)
        tm_recall = tm_hit / len(tm_killed) if tm_killed else float("nan")
        tm_errors = sum(1 for m in rows if tm_out[id(m)] == ERROR)
        print(
            f"{'pytest-testmon':<16}{tm_recall:>10.1%}{_median(tm_fracs):>14.1%}"
            f"{statistics.fmean(tm_fracs) if tm_fracs else float('nan'):>12.1%}{tm_errors:>14}"
        )
        for m in tm_killed:
            if tm_out[id(m)] != CAUGHT:
                print(f"    testmon missed: {m.path}:{m.line} {m.operator}")
        summary["pytest-testmon"] = {
            "recall": tm_recall,
            "median_frac": _median(tm_fracs),
            "errors": tm_errors,
        }
        paired = [m for m in tm_ok if m.full.time_s > 0]
        less = sum(1 for m in paired if m.selection.time_s < m.extra["tm"]["time_s"] - 0.005 * m.full.time_s)
        more = sum(1 for m in paired if m.selection.time_s > m.extra["tm"]["time_s"] + 0.005 * m.full.time_s)
        print(
            f"  per mutant: ect ran less test time than testmon on {less}, more on {more}, "
            f"the same (within 0.5% of the suite) on {len(paired) - less - more}"
        )
        failing = sum(int(m.extra.get("failing", 0)) for m in tm_ok)
        print(
            f"  failing tests (full suite, summed over mutants): {failing}; not failed by ect "
            f"{sum(int(m.extra.get('ect_missed_failing', 0)) for m in tm_ok)}, by testmon "
            f"{sum(int(m.extra['tm'].get('missed_failing', 0)) for m in tm_ok)}"
        )
    with_oracle = [m for m in rows if "oracle" in m.extra and m.outcome != ERROR and m.full.time_s > 0]
    if with_oracle:
        oracle = [m.extra["oracle"]["time_s"] / m.full.time_s for m in with_oracle]
        ect_same = [m.selection.time_s / m.full.time_s for m in with_oracle]
        summary["oracle_median_frac"] = _median(oracle)
        print(
            f"{'line oracle':<16}{'':>10}{_median(oracle):>14.1%}{statistics.fmean(oracle):>12.1%}"
            f"   (the tests that ran the mutated line; {len(with_oracle)} mutants whose line a test ran: "
            f"ect median {_median(ect_same):.1%} on those)"
        )
    print("(time = test time run per mutant, as a fraction of the full suite's test time)")
    for rule, values in sorted(by_rule.items()):
        print(f"  ect, {rule:<22} {len(values):>3} mutants, median time {_median(values):.1%}")
    for m in report.errors:
        print(f"    errored: {m.path}:{m.line} {m.operator}: {m.error[:160]}")
    select = [float(m.extra.get("select_ms", m.select_ms)) for m in rows]
    print(
        f"select phase: median {_median(select):.0f} ms, max {max(select, default=0):.0f} ms"
        f"; fingerprint database {observer.db_bytes / 1e6:.2f} MB for {report.tests_total} tests"
    )
    one_file = [m for m in rows if m.extra.get("plain_same_s") is not None]
    overhead = None
    if one_file:
        overhead = _median([(m.extra["ect_wall_s"] - m.extra["plain_same_s"]) * 1000 for m in one_file])
        print(
            f"one test file selected ({len(one_file)} mutants): median ect loop "
            f"{_median([m.extra['ect_wall_s'] for m in one_file]):.2f} s, plain pytest on the same tests "
            f"{_median([m.extra['plain_same_s'] for m in one_file]):.2f} s, ect overhead {overhead:.0f} ms"
        )
        phases = sorted({k for m in one_file for k in m.extra.get("ect_phases_ms", {})})
        if phases:
            per = [m.extra.get("ect_phases_ms", {}) for m in one_file]
            medians = {k: _median([p.get(k, 0.0) for p in per]) for k in phases}
            print("  its phases (median ms): " + ", ".join(f"{k} {v:.0f}" for k, v in medians.items()))
        warm = [m for m in one_file if m.extra.get("watch_wall_s") is not None]
        if warm:
            watch_over = _median([(m.extra["watch_wall_s"] - m.extra["plain_same_s"]) * 1000 for m in warm])
            summary["watch_overhead_ms"] = watch_over
            watch_wall = _median([m.extra["watch_wall_s"] for m in warm])
            print(
                f"  as `ect watch` runs it (warm pytest): median {watch_wall:.2f} s, "
                f"overhead {watch_over:.0f} ms"
            )
    if observer.noop_cli_s is not None:
        summary["noop_cli_ms"] = observer.noop_cli_s * 1000
        print(
            f"`ect check` as a process with nothing to check (the hook's fixed cost on top of the loop): "
            f"{observer.noop_cli_s * 1000:.0f} ms"
        )
    rec = result.get("recording")
    if rec:
        print(recording_line(rec))
    if observer.record_s:
        print(f"               testmon recording {observer.record_s:.2f} s")
    if args.pre_commit and args.pre_commit_runs > 0:
        pc = bench_precommit(repo, sys.executable, args.pre_commit, args.pre_commit_runs)
        if pc:
            print(
                f"no-op pre-commit run: empty hook {pc['empty']:.0f} ms, ect hook {pc['ect']:.0f} ms "
                f"(+{pc['ect'] - pc['empty']:.0f} ms)"
            )
    if args.json:
        print(json.dumps({**result, "verify": report.to_json()}, indent=2))
    summary.update(
        select_ms=_median(select),
        db_mb=observer.db_bytes / 1e6,
        one_file_overhead_ms=overhead,
        record_ratio=rec["record_total_s"] / rec["plain_s"] if rec else None,
    )
    return summary


def synthetic_repo(where: Path, tests: int) -> Path:
    """A repository of `tests` tests (20 per file) over 20 modules that register functions of a core
    module at import time: every test imports the core, each runs a few of its functions."""
    root = where / "synthetic"
    (root / "syn").mkdir(parents=True)
    (root / "tests").mkdir()
    (root / "pyproject.toml").write_text(
        '[project]\nname = "syn"\nversion = "0"\n[tool.pytest.ini_options]\ntestpaths = ["tests"]\n'
        'pythonpath = ["."]\n[tool.ect]\nruff = false\n'
    )
    (root / "syn/__init__.py").write_text("")
    core = [
        "REG = {}\n\n\ndef register(name):\n    def deco(f):\n        REG[name] = f\n        return f\n\n"
    ]
    core.append("    return deco\n")
    for i in range(200):
        core.append(f"\n\ndef f{i}(x):\n    if x > {i}:\n        return x - {i}\n    return x + {i}\n")
    (root / "syn/core.py").write_text("".join(core))
    for m in range(20):
        names = ", ".join(f"f{i}" for i in range(m * 10, m * 10 + 10))
        body = [f"from syn.core import register, {names}\n"]
        for i in range(m * 10, m * 10 + 10):
            body.append(f"\n\n@register('g{i}')\ndef g{i}(x):\n    return f{i}(x) * 2\n")
        (root / f"syn/mod{m}.py").write_text("".join(body))
    for t in range(max(1, tests // 20)):
        m = t % 20
        names = ", ".join(f"g{i}" for i in range(m * 10, m * 10 + 10))
        lines = [f"from syn.mod{m} import {names}\n"]
        for k in range(20):
            i = m * 10 + k % 10
            want = f"2 * ({k} - {i} if {k} > {i} else {k} + {i})"
            lines.append(f"\n\ndef test_{t}_{k}():\n    assert g{i}({k}) == {want}\n")
        (root / f"tests/test_{t}.py").write_text("".join(lines))
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b"}
    env |= {"GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@b"}
    for cmd in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "synthetic"]):
        subprocess.run(["git", *cmd], cwd=root, env=env, check=True)
    return root


def bench_select_phase(repo: Path, count: int, seed: int, runs: int) -> None:
    """The select phase alone (graph, fingerprint database, selection) on verify's mutants of HEAD, after
    one recording run: no test runs, so it is quick on any suite."""
    from ect.changes import collect
    from ect.fingerprints.mutate import make_mutants
    from ect.fingerprints.session import FingerprintSession
    from ect.graph import build
    from ect.runner import load_last_failed
    from ect.verify import source_files

    tmp = Path(tempfile.mkdtemp(prefix="ect-bench-select-"))
    scratch = tmp / "tree"
    try:
        subprocess.run(
            ["git", "worktree", "add", "-q", "--detach", str(scratch), "HEAD"], cwd=repo, check=True
        )
        copy_local_files(repo, scratch, load_config(repo).state_dir)  # `_version.py` and the like
        cfg = load_config(scratch)
        cfg.state_dir = str(tmp / "state")
        cfg.ruff = cfg.mypy = False
        base = run_loop(scratch, cfg, Scope(mode="all"), stream=False, trigger="ci")
        tests = len(base.test_run.outcomes) if base.test_run else 0
        db = sum(f.stat().st_size for f in cfg.state_path.glob("fingerprints.db*"))
        times: list[float] = []
        first: list[float] = []  # the first run of each mutant: its new content parsed (a hook's case)
        chosen: list[int] = []
        for mutant in make_mutants(scratch, source_files(scratch, cfg), count, seed):
            mutant.apply(scratch)
            try:
                for run in range(runs):
                    t = time.perf_counter()
                    changes = collect(scratch, Scope(mode="worktree"))
                    graph, _ = build(scratch, cfg)
                    session = FingerprintSession.open(scratch, cfg)
                    assert session is not None
                    sel = session.select(graph, changes, load_last_failed(cfg))
                    session.close()
                    times.append((time.perf_counter() - t) * 1000)
                    if run == 0:
                        first.append(times[-1])
                chosen.append(sum(len(v) for v in sel.nodes.values()) + len(set(sel.tests) - set(sel.nodes)))
            finally:
                mutant.revert(scratch)
        p90 = sorted(times)[int(0.9 * (len(times) - 1))] if times else float("nan")
        load = os.getloadavg()[0]
        print(
            f"select phase on {repo.name} ({tests} tests, database {db / 1e6:.2f} MB): {len(chosen)} mutants"
            f" x {runs} runs, median {_median(times):.0f} ms, p90 {p90:.0f} ms,"
            f" max {max(times, default=0):.0f} ms (git status, import graph, database, selection;"
            f" load average {load:.1f}); first run of each mutant (its new content parsed): median"
            f" {_median(first):.0f} ms, max {max(first, default=0):.0f} ms"
        )
    finally:
        subprocess.run(
            ["git", "worktree", "remove", "--force", str(scratch)], cwd=repo, capture_output=True, check=False
        )
        shutil.rmtree(tmp, ignore_errors=True)


def print_summary(summaries: list[dict[str, Any]]) -> None:
    """One line per project, the worst (highest median time fraction for ect) first."""
    print()
    print("all projects (worst first):")
    print(
        f"{'project':<16}{'tests':>6}{'ect recall':>11}{'ect median':>11}{'errored':>8}{'tm recall':>10}"
        f"{'tm median':>10}{'select ms':>10}{'db MB':>7}{'1-file overhead ms':>19}{'record x':>9}"
    )
    for s in sorted(summaries, key=lambda x: -x["ect"]["median_frac"]):
        tm = s.get("pytest-testmon") or {}
        over = s.get("one_file_overhead_ms")
        ratio = s.get("record_ratio")
        recall = s["ect"]["recall"] if s["ect"]["recall"] is not None else float("nan")
        print(
            f"{s['name']:<16}{s['tests']:>6}{recall:>11.1%}{s['ect']['median_frac']:>11.1%}"
            f"{s['ect']['errors']:>8}{tm.get('recall', float('nan')):>10.1%}"
            f"{tm.get('median_frac', float('nan')):>10.1%}{s['select_ms']:>10.0f}{s['db_mb']:>7.2f}"
            f"{'-' if over is None else f'{over:.0f}':>19}{'-' if ratio is None else f'{ratio:.2f}':>9}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--repo", type=Path, action="append", default=[], help="a git repository (repeatable)"
    )
    parser.add_argument("--mutants", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=1, help="recording-run timings (0: skip)")
    parser.add_argument(
        "--pre-commit", default=shutil.which("pre-commit") or "", help="pre-commit executable"
    )
    parser.add_argument("--pre-commit-runs", type=int, default=0)
    parser.add_argument("--no-testmon", action="store_true")
    parser.add_argument(
        "--overhead", action="store_true", help="also time one-file selections as `ect watch` runs them"
    )
    parser.add_argument("--json", action="store_true", help="also print the results as JSON")
    parser.add_argument(
        "--select-only", action="store_true", help="time only the select phase (no test runs after recording)"
    )
    parser.add_argument(
        "--recording-only", action="store_true", help="time only the recording run against plain pytest"
    )
    parser.add_argument("--select-runs", type=int, default=3, help="select-phase timings per mutant")
    parser.add_argument(
        "--synthetic", type=int, default=0, help="also time the select phase on a generated suite of N tests"
    )
    args = parser.parse_args(argv)
    if args.synthetic:
        where = Path(tempfile.mkdtemp(prefix="ect-bench-synthetic-"))
        try:
            bench_select_phase(
                synthetic_repo(where, args.synthetic), args.mutants, args.seed, args.select_runs
            )
        finally:
            shutil.rmtree(where, ignore_errors=True)
    if args.recording_only:
        for repo in args.repo:
            rec = bench_recording(repo.resolve(), max(1, args.repeat))
            print(f"{repo.resolve().name}: {recording_line(rec)}")
        return 0
    if args.select_only:
        for repo in args.repo:
            bench_select_phase(repo.resolve(), args.mutants, args.seed, args.select_runs)
        return 0
    summaries = []
    for repo in args.repo:
        summaries.append(bench_project(repo.resolve(), args))
    if len(summaries) > 1:
        print_summary(summaries)
    return 0


if __name__ == "__main__":
    sys.exit(main())
