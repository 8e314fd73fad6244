#!/usr/bin/env python3
"""Benchmark ect's test selection against the full suite and pytest-testmon on the same mutants.

Run it with the Python of the project's environment (ect, pytest and pytest-testmon installed
there), for example:

    /tmp/venv/bin/python scripts/bench_selection.py --repo /tmp/jinja \\
        --test-cmd "/tmp/venv/bin/python -m pytest -q -p no:cacheprovider" --mutants 30

Several projects: repeat `--repo`/`--test-cmd` in pairs; a summary across projects (worst
project first) ends the output.

It works in a scratch worktree of the repository's HEAD (removed afterwards) and reports:
recall (mutants the full suite catches that the selection also catches), the test time each
tool ran per mutant as a fraction of the full suite's, the select phase and the fingerprint
database's size, ect's overhead over plain pytest on the same tests when one test file is
selected, the recording run against a plain run, and the no-op `pre-commit run` cost of the
ect hook over an empty hook.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ect.changes import Scope
from ect.config import load_config
from ect.fingerprints.mutate import make_mutants
from ect.loop import run_loop
from ect.runner import TIMED_OUT, TestRun, run_pytest
from ect.verify import source_files


def timed(
    cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float | None = None
) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, check=False, timeout=timeout)
    return time.perf_counter() - t


def testmon_cmd(cmd: list[str], cache_dir: Path) -> list[str]:
    """`cmd` with `--testmon`; pytest-testmon needs pytest's cache plugin (its cache kept out of the tree)."""
    out: list[str] = []
    skip = False
    for i, arg in enumerate(cmd):
        if skip:
            skip = False
            continue
        if arg == "-p" and i + 1 < len(cmd) and cmd[i + 1] == "no:cacheprovider":
            skip = True
            continue
        if arg == "-pno:cacheprovider":
            continue
        out.append(arg)
    return [*out, "-o", f"cache_dir={cache_dir}", "--testmon"]


def testmon_run(cmd: list[str], cwd: Path, results: Path, timeout: float) -> TestRun:
    """The test command with `--testmon`, outcomes read back through ect's plugin."""
    env = {**os.environ, "ECT_RESULTS": str(results)}
    t = time.perf_counter()
    try:
        proc = subprocess.run(
            [*testmon_cmd(cmd, results.parent / "tm-cache"), "-p", "ect.pytest_plugin"],
            cwd=cwd,
            env=env,
            capture_output=True,
            check=False,
            timeout=timeout,
        )
        code = proc.returncode
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


INTERNAL_ERROR = 3  # pytest: a plugin crashed; not a verdict on the mutant


def caught(run: TestRun | None, passing: set[str]) -> bool:
    """A test that passed before fails, a test module fails to import, or the run hangs."""
    if run is None or run.exit_code == INTERNAL_ERROR:
        return False
    if run.exit_code == TIMED_OUT or run.collect_errors:
        return True
    return any(o == "failed" and n in passing for n, o in run.outcomes.items()) or run.exit_code == 2


def seconds(run: TestRun | None) -> float:
    return float(sum(run.durations.values())) if run else 0.0


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--repo", required=True, type=Path, action="append", help="git repository of a project (repeatable)"
    )
    parser.add_argument(
        "--test-cmd",
        required=True,
        action="append",
        help="plain full-suite command of the --repo at the same position, e.g. 'python -m pytest -q'",
    )
    parser.add_argument("--mutants", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3, help="timing repetitions for the recording run")
    parser.add_argument(
        "--pre-commit", default=shutil.which("pre-commit") or "", help="pre-commit executable"
    )
    parser.add_argument("--pre-commit-runs", type=int, default=10)
    parser.add_argument("--no-testmon", action="store_true")
    parser.add_argument("--json", action="store_true", help="also print the results as JSON")
    args = parser.parse_args(argv)
    if len(args.repo) != len(args.test_cmd):
        parser.error("give one --test-cmd per --repo")
    summaries = []
    for repo, cmd in zip(args.repo, args.test_cmd, strict=True):
        summary = bench_project(repo.resolve(), shlex.split(cmd), args)
        if summary is None:
            return 2
        summaries.append(summary)
    if len(summaries) > 1:
        print_summary(summaries)
    return 0


def print_summary(summaries: list[dict[str, Any]]) -> None:
    """One line per project, the worst (highest median time fraction for ect) first."""
    print()
    print("all projects (worst first):")
    print(
        f"{'project':<18}{'tests':>7}{'ect recall':>11}{'ect median':>11}{'tm recall':>10}{'tm median':>10}"
        f"{'select ms':>10}{'db MB':>7}{'1-file overhead ms':>19}"
    )
    for s in sorted(summaries, key=lambda x: -x["ect"]["median_frac"]):
        tm = s.get("pytest-testmon") or {}
        over = s.get("one_file_overhead_ms")
        print(
            f"{s['name']:<18}{s['tests']:>7}{s['ect']['recall']:>11.1%}{s['ect']['median_frac']:>11.1%}"
            f"{tm.get('recall', float('nan')):>10.1%}{tm.get('median_frac', float('nan')):>10.1%}"
            f"{s['select_ms']:>10.0f}{s['db_mb']:>7.2f}{'-' if over is None else f'{over:.0f}':>19}"
        )


def bench_project(repo: Path, test_cmd: list[str], args: argparse.Namespace) -> dict[str, Any] | None:
    """Benchmark one project; prints its report and returns its summary (None: it could not run)."""

    tmp = Path(tempfile.mkdtemp(prefix="ect-bench-"))
    scratch = tmp / "tree"
    os.environ["PYTHONDONTWRITEBYTECODE"] = "1"  # a cached mutant .pyc must never outlive its source
    result: dict[str, Any] = {"repo": str(repo), "seed": args.seed}
    try:
        subprocess.run(
            ["git", "worktree", "add", "-q", "--detach", str(scratch), "HEAD"], cwd=repo, check=True
        )
        cfg = load_config(scratch)
        cfg.state_dir = str(tmp / "state")
        cfg.ruff = cfg.mypy = False  # only tests decide whether a mutant is caught
        # the scratch tree's sources win over an editable install of the original checkout
        os.environ["TESTMON_DATAFILE"] = str(tmp / "testmondata")  # not an untracked file in the tree
        os.environ["PYTHONPATH"] = os.pathsep.join(
            [str(scratch / r) for r in cfg.source_roots] + [p for p in [os.environ.get("PYTHONPATH")] if p]
        )

        # recording run vs plain run, alternated
        plain, rec_pytest, rec_total, tm_rec = [], [], [], []
        base = None
        for _ in range(args.repeat):
            plain.append(timed(test_cmd, scratch))
            shutil.rmtree(tmp / "state", ignore_errors=True)
            t = time.perf_counter()
            base = run_loop(scratch, cfg, Scope(mode="all"), stream=False, trigger="ci")
            rec_total.append(time.perf_counter() - t)
            rec_pytest.append(base.phases_ms.get("tests", 0) / 1000)
            if not args.no_testmon:
                Path(os.environ["TESTMON_DATAFILE"]).unlink(missing_ok=True)
                tm_rec.append(timed(testmon_cmd(test_cmd, tmp / "tm-cache"), scratch))
        if base is None or base.test_run is None or not base.test_run.outcomes:
            tail = base.test_run.output[-3000:] if base is not None and base.test_run is not None else ""
            print(f"the recording run ran no tests:\n{tail}", file=sys.stderr)
            return None
        passing = {n for n, o in base.test_run.outcomes.items() if o in ("passed", "skipped")}
        result["tests"] = len(base.test_run.outcomes)
        result["plain_s"] = statistics.median(plain)
        result["ect_record_pytest_s"] = statistics.median(rec_pytest)
        result["ect_record_total_s"] = statistics.median(rec_total)
        result["testmon_record_s"] = statistics.median(tm_rec) if tm_rec else None
        result["ect_phases_ms"] = {k: round(v) for k, v in base.phases_ms.items()}
        timeout = max(60.0, 10 * result["plain_s"])

        db_files = list(cfg.state_path.glob("fingerprints.db*"))
        result["db_bytes"] = sum(f.stat().st_size for f in db_files)
        mutants = make_mutants(scratch, source_files(scratch, cfg), args.mutants, args.seed)
        snapshot = tmp / "snapshot"
        shutil.copytree(cfg.state_path, snapshot)
        tm_data = Path(os.environ["TESTMON_DATAFILE"])
        tm_snapshot = tmp / "testmondata-snapshot"
        if tm_data.exists():
            shutil.copy2(tm_data, tm_snapshot)
        rows: list[dict[str, Any]] = []
        for n, mutant in enumerate(mutants, 1):
            mutant.apply(scratch)
            try:
                full = run_pytest(scratch, cfg, None, stream=False, timeout=timeout)
                t = time.perf_counter()
                sel = run_loop(
                    scratch, cfg, Scope(mode="worktree"), stream=False, trigger="ci", timeout=timeout
                )
                ect_wall = time.perf_counter() - t
                plain_same = None
                node_args = sel.selection.pytest_args() if sel.selection else None
                if sel.selection and node_args and len(sel.selection.tests) == 1:
                    # the same tests by plain pytest: what ect adds on top of them
                    plain_same = timed([*test_cmd, *node_args], scratch, timeout=timeout)
                tm = None if args.no_testmon else testmon_run(test_cmd, scratch, tmp / "tm.json", timeout)
            finally:
                mutant.revert(scratch)
                shutil.rmtree(cfg.state_path, ignore_errors=True)
                shutil.copytree(snapshot, cfg.state_path)
                if tm_snapshot.exists():
                    shutil.copy2(tm_snapshot, tm_data)
            full_s = seconds(full) or 1e-9
            row = {
                "mutant": f"{mutant.path}:{mutant.line} {mutant.operator}",
                "full_caught": caught(full, passing),
                "ect_caught": caught(sel.test_run, passing) or (sel.exit_code != 0 and sel.test_run is None),
                "ect_frac": seconds(sel.test_run) / full_s,
                "ect_tests": len(sel.test_run.outcomes) if sel.test_run else 0,
                "ect_files": len(sel.selection.tests) if sel.selection else 0,
                "select_ms": sel.phases_ms.get("select", 0.0),
                "ect_wall_s": ect_wall,
                "plain_same_s": plain_same,
                "tm_caught": caught(tm, passing) if tm else None,
                "tm_frac": seconds(tm) / full_s if tm else None,
                "tm_tests": len(tm.outcomes) if tm else None,
                "exit_codes": [full.exit_code, sel.exit_code, tm.exit_code if tm else None],
                "tm_error": bool(tm and tm.exit_code == INTERNAL_ERROR),
                "ect_why": (
                    sel.selection.run_all_reasons[:1]
                    or [r for rs in sel.selection.tests.values() for r in rs][:2]
                )
                if sel.selection
                else [],
            }
            rows.append(row)
            print(
                f"[{n}/{len(mutants)}] {row['mutant']}: exit {row['exit_codes']} "
                f"full {'caught' if row['full_caught'] else 'survived'}, "
                f"ect {row['ect_tests']} tests {'caught' if row['ect_caught'] else '-'}"
                + (
                    f", testmon {row['tm_tests']} tests {'caught' if row['tm_caught'] else '-'}" if tm else ""
                ),
                file=sys.stderr,
            )
        result["rows"] = rows
    finally:
        subprocess.run(
            ["git", "worktree", "remove", "--force", str(scratch)], cwd=repo, capture_output=True, check=False
        )
        subprocess.run(["git", "worktree", "prune"], cwd=repo, capture_output=True, check=False)
        shutil.rmtree(tmp, ignore_errors=True)

    if args.pre_commit and args.pre_commit_runs > 0:
        result["precommit_ms"] = bench_precommit(repo, sys.executable, args.pre_commit, args.pre_commit_runs)

    killed = [r for r in rows if r["full_caught"]]
    print()
    print(
        f"repo: {repo.name}   tests: {result['tests']}   mutants: {len(rows)} (seed {args.seed}), "
        f"{len(killed)} caught by the full suite"
    )
    print(f"{'tool':<16}{'recall':>10}{'median time':>14}{'mean time':>12}{'median tests':>15}")
    tools = [("ect", "ect")] + ([] if args.no_testmon else [("pytest-testmon", "tm")])
    summary: dict[str, Any] = {}
    for label, key in tools:
        hit = sum(1 for r in killed if r[f"{key}_caught"])
        fracs = [r[f"{key}_frac"] for r in rows]
        tests = [r[f"{key}_tests"] for r in rows]
        recall = hit / len(killed) if killed else float("nan")
        summary[label] = {
            "recall": recall,
            "median_frac": statistics.median(fracs),
            "mean_frac": statistics.fmean(fracs),
            "median_tests": statistics.median(tests),
            "missed": [r["mutant"] for r in killed if not r[f"{key}_caught"]],
        }
        print(
            f"{label:<16}{recall:>10.1%}{statistics.median(fracs):>14.1%}{statistics.fmean(fracs):>12.1%}"
            f"{statistics.median(tests):>15}"
        )
        for miss in summary[label]["missed"]:
            print(f"    missed: {miss}")
        errors = sum(1 for r in rows if key == "tm" and r.get("tm_error"))
        if errors:
            print(f"    pytest-testmon crashed (INTERNALERROR) on {errors} of {len(rows)} mutants")
    print("(time = test time run per mutant, as a fraction of the full suite's test time)")
    print(
        f"recording run: plain `{' '.join(test_cmd[1:])}` {result['plain_s']:.2f} s; ect recording pytest "
        f"{result['ect_record_pytest_s']:.2f} s ({result['ect_record_pytest_s'] / result['plain_s']:.2f}x), "
        f"with storing {result['ect_record_total_s']:.2f} s "
        f"({result['ect_record_total_s'] / result['plain_s']:.2f}x)"
    )
    select_ms = statistics.median(r["select_ms"] for r in rows) if rows else 0.0
    select_max = max((r["select_ms"] for r in rows), default=0.0)
    print(
        f"select phase: median {select_ms:.0f} ms, max {select_max:.0f} ms"
        f"; fingerprint database {result['db_bytes'] / 1e6:.2f} MB for {result['tests']} tests"
    )
    one_file = [r for r in rows if r["plain_same_s"] is not None]
    overhead = None
    if one_file:
        overhead = statistics.median((r["ect_wall_s"] - r["plain_same_s"]) * 1000 for r in one_file)
        print(
            f"one test file selected ({len(one_file)} mutants): median ect wall "
            f"{statistics.median(r['ect_wall_s'] for r in one_file):.2f} s, plain pytest on the same tests "
            f"{statistics.median(r['plain_same_s'] for r in one_file):.2f} s, ect overhead {overhead:.0f} ms"
        )
    phases = result.get("ect_phases_ms", {})
    print(
        f"               ect --all phases (last run): {', '.join(f'{k} {v} ms' for k, v in phases.items())}"
    )
    if result.get("testmon_record_s"):
        print(
            f"               testmon recording {result['testmon_record_s']:.2f} s "
            f"({result['testmon_record_s'] / result['plain_s']:.2f}x)"
        )
    pc = result.get("precommit_ms")
    if pc:
        print(
            f"no-op pre-commit run: empty hook {pc['empty']:.0f} ms, ect hook {pc['ect']:.0f} ms "
            f"(+{pc['ect'] - pc['empty']:.0f} ms)"
        )
    result["summary"] = summary
    if args.json:
        print(json.dumps(result, indent=2))
    return {
        "name": repo.name,
        "tests": result["tests"],
        "select_ms": select_ms,
        "db_mb": result["db_bytes"] / 1e6,
        "one_file_overhead_ms": overhead,
        **summary,
    }


if __name__ == "__main__":
    sys.exit(main())
