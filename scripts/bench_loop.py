#!/usr/bin/env python3
"""Benchmark the ECT loop (issue: loop core numbers).

  no-op `ect check` wall time (Python start-up included) vs `ruff check` (cached), same repo, same run;
  one-line edit in a core module: `ect check` total vs the selected tests' own pytest time;
  import graph: cold build and incremental rebuild after one file change.

By default it generates a synthetic ~30k-line repository; `--repo PATH` measures a real one
(`--edit-file` picks the module to edit, `--test-cmd` the command whose time is the reference).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

PY = sys.executable
RUFF = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
ECT = [PY, "-m", "ect"]
ECT_BIN = str(Path(PY).parent / "ect")
ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "b",
    "GIT_AUTHOR_EMAIL": "b@x",
    "GIT_COMMITTER_NAME": "b",
    "GIT_COMMITTER_EMAIL": "b@x",
}


def generate(root: Path, packages: int = 6, modules: int = 25, funcs: int = 23) -> None:
    """~30k lines: packages of modules; module k imports module k-1 of its package and the core."""
    (root / "pyproject.toml").write_text(
        textwrap.dedent("""
        [project]
        name = "synth"
        version = "0"
        [tool.pytest.ini_options]
        testpaths = ["tests"]
        pythonpath = ["."]
        [tool.ruff]
        line-length = 120
    """)
    )
    (root / "synth").mkdir()
    (root / "synth/__init__.py").write_text("")
    core = ["def base(x):\n    return x + 1\n"]
    for f in range(funcs * 2):
        core.append(
            f"def core_{f}(x, y=1):\n    total = 0\n    for i in range(y):\n"
            f"        total += base(x) * {f + 1}\n    return total\n"
        )
    (root / "synth/core.py").write_text("\n\n".join(core))
    (root / "tests").mkdir()
    for p in range(packages):
        pkg = root / f"synth/pkg{p}"
        pkg.mkdir()
        (pkg / "__init__.py").write_text("")
        for m in range(modules):
            lines = ["from synth.core import base, core_1"]
            if m:
                lines.append(f"from synth.pkg{p}.mod{m - 1} import f0 as prev")
            for f in range(funcs):
                body = f"prev({f})" if m else "core_1(1)"
                lines.append(
                    textwrap.dedent(f"""

                    def f{f}(x=0):
                        \"\"\"Function {f} of module {m}.\"\"\"
                        values = [base(i) for i in range(3)]
                        if x > 10:
                            return sum(values) + {body}
                        return x + len(values)
                    """).rstrip()
                )
            (pkg / f"mod{m}.py").write_text("\n".join(lines) + "\n")
            (root / f"tests/test_p{p}_m{m}.py").write_text(
                f"from synth.pkg{p}.mod{m} import f0, f1\n\n\ndef test_f0():\n    assert f0(1) == 4\n\n\n"
                f"def test_f1():\n    assert f1(2) == 5\n"
            )
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=root, check=True)
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    subprocess.run(["git", "commit", "-qm", "synthetic"], cwd=root, check=True, env=ENV)


def count_lines(root: Path) -> int:
    out = subprocess.run(["git", "ls-files", "*.py"], cwd=root, capture_output=True, text=True).stdout.split()
    return sum(len((root / f).read_bytes().splitlines()) for f in out)


def wall(cmd: list[str], cwd: Path, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
        times.append((time.perf_counter() - t) * 1000)
    return times


def graph_times(root: Path) -> dict[str, float]:
    code = textwrap.dedent("""
        import json, os, sys, time
        from pathlib import Path
        from ect.config import load_config
        from ect import graph
        root = Path.cwd(); cfg = load_config(root)
        cache = cfg.state_path / graph.CACHE_NAME
        if cache.exists(): cache.unlink()
        t = time.perf_counter(); g, s = graph.build(root, cfg); cold = time.perf_counter() - t
        t = time.perf_counter(); g, s2 = graph.build(root, cfg); warm = time.perf_counter() - t
        target = Path(sys.argv[1]); text = target.read_text()
        target.write_text(text + "\\n# touched\\n")
        try:
            t = time.perf_counter(); g, s3 = graph.build(root, cfg); inc = time.perf_counter() - t
        finally:
            target.write_text(text)
        print(json.dumps({"cold_ms": cold * 1000, "cached_ms": warm * 1000, "incremental_ms": inc * 1000,
                          "files": len(g.files), "reparsed": s3["parsed"]}))
    """)
    out = subprocess.run(
        [PY, "-c", code, str(EDIT_FILE)], cwd=root, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


EDIT_FILE = Path()


def main() -> int:
    global EDIT_FILE
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", type=Path, help="a real repository (default: generate a synthetic one)")
    ap.add_argument("--edit-file", help="repo-relative module to edit (default: synth/core.py)")
    ap.add_argument("--runs", type=int, default=21)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    tmp = None
    if args.repo:
        root = args.repo.resolve()
        edit = args.edit_file or ""
        if not edit:
            ap.error("--edit-file is required with --repo")
    else:
        tmp = Path(tempfile.mkdtemp(prefix="ect-bench-"))
        root = tmp / "synth"
        root.mkdir()
        generate(root)
        edit = "synth/core.py"
    EDIT_FILE = root / edit
    lines = count_lines(root)
    results: dict[str, object] = {"repo": str(root), "python_lines": lines}
    try:
        subprocess.run([ECT_BIN, "check", "--all", "--no-tests"], cwd=root, capture_output=True, env=ENV)
        subprocess.run([RUFF, "check", "--quiet", "."], cwd=root, capture_output=True)  # warm ruff's cache
        noop, ruff = [], []
        for _ in range(args.runs):  # interleaved, so both see the same machine load
            noop += wall([ECT_BIN, "check"], root, 1)
            ruff += wall([RUFF, "check", "--quiet", "."], root, 1)
        results["noop_ect_check_ms"] = statistics.median(noop)
        results["ruff_check_cached_ms"] = statistics.median(ruff)
        results["noop_ratio_vs_ruff"] = results["noop_ect_check_ms"] / results["ruff_check_cached_ms"]  # type: ignore[operator]

        overheads, totals, pytest_times, selected = [], [], [], 0
        original = EDIT_FILE.read_text()
        for i in range(5):
            EDIT_FILE.write_text(original + f"\n_BENCH_EDIT = {i}\n")
            t = time.perf_counter()
            proc = subprocess.run(
                [ECT_BIN, "check", "--json"], cwd=root, capture_output=True, text=True, env=ENV
            )
            total = (time.perf_counter() - t) * 1000
            data = json.loads(proc.stdout)
            cmd = [c for c in data["results"]["command"] if c not in ("-p", "ect.pytest_plugin")]
            selected = len(data["selection"]["tests"]) if not data["selection"]["run_all"] else -1
            pt = wall(cmd, root, 1)[0]
            totals.append(total)
            pytest_times.append(pt)
            overheads.append(total - pt)
        EDIT_FILE.write_text(original)
        results["edit_selected_test_files"] = selected
        results["edit_total_test_files"] = data["selection"]["total_test_files"]
        results["edit_ect_check_ms"] = statistics.median(totals)
        results["edit_selected_pytest_ms"] = statistics.median(pytest_times)
        results["edit_overhead_ms"] = statistics.median(overheads)
        results.update({f"graph_{k}": v for k, v in graph_times(root).items()})
        results["graph_cold_ms_per_30k_lines"] = results["graph_cold_ms"] * 30000 / max(lines, 1)  # type: ignore[operator]
    finally:
        subprocess.run(["git", "checkout", "-q", "--", edit], cwd=root)
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)

    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    r = results
    print(f"repository: {r['repo']} ({r['python_lines']} lines of Python)")
    print(f"{'measure':48} {'value':>12}  target")
    rows = [
        ("no-op `ect check` (median wall, start-up incl.)", f"{r['noop_ect_check_ms']:.1f} ms", "<= 60 ms"),
        ("`ruff check` cached (median wall)", f"{r['ruff_check_cached_ms']:.1f} ms", ""),
        ("no-op ect / ruff", f"{r['noop_ratio_vs_ruff']:.2f}x", "<= 1.5x"),
        (
            f"edit {edit}: test files selected",
            f"{r['edit_selected_test_files']} / {r['edit_total_test_files']}",
            "",
        ),
        ("edit: `ect check` total (median)", f"{r['edit_ect_check_ms']:.0f} ms", ""),
        ("edit: selected tests' own pytest time", f"{r['edit_selected_pytest_ms']:.0f} ms", ""),
        ("edit: ect overhead over that pytest run", f"{r['edit_overhead_ms']:.0f} ms", "<= 250 ms"),
        ("graph cold build", f"{r['graph_cold_ms']:.0f} ms", ""),
        ("graph cold build per 30k lines", f"{r['graph_cold_ms_per_30k_lines']:.0f} ms", "<= 1000 ms"),
        ("graph rebuild, nothing changed", f"{r['graph_cached_ms']:.1f} ms", ""),
        ("graph incremental rebuild, one file changed", f"{r['graph_incremental_ms']:.1f} ms", "<= 50 ms"),
    ]
    for name, value, target in rows:
        print(f"{name:48} {value:>12}  {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
