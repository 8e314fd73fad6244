#!/usr/bin/env python3
"""The select phase after a long edit-run session: does the fingerprint database keep selection fast?

A hook user's database grows with every edit that runs tests: each run records the tests it ran
against the edited content. This script replays that on a real project, in a scratch worktree of
HEAD (as `ect verify` does, the scratch sources first on `PYTHONPATH`):

1. `ect check --all` records the suite;
2. `--rounds` edit-run rounds: apply a mutant (an edit), run `ect check` on the working tree (the
   selected tests run and are recorded against the edited content), revert it;
3. the select phase (changes, import graph, fingerprints) is timed in-process for `--mutants` other
   edits, each on the first selection of its content, as a hook meets it.

It prints the database's size and rows after the rounds and the select times (median, max). Run it
with the project environment's Python (ect and pytest installed there), for example:

    /tmp/venv/bin/python scripts/bench_select_growth.py --repo /tmp/dateutil --rounds 30 --mutants 30
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import shutil
import sqlite3
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from ect.changes import Scope, collect
from ect.config import load_config
from ect.fingerprints.mutate import make_mutants
from ect.fingerprints.session import FingerprintSession
from ect.fingerprints.store import DB_NAME
from ect.graph import build
from ect.loop import run_loop
from ect.runner import load_last_failed
from ect.verify import copy_local_files, source_files

TABLES = ("tests", "records", "files", "deps", "namesets", "versions", "block_cache")


def _db_summary(db: Path) -> str:
    conn = sqlite3.connect(db)
    try:
        counts = ", ".join(f"{t} {conn.execute(f'SELECT count(*) FROM {t}').fetchone()[0]}" for t in TABLES)
    finally:
        conn.close()
    return f"database {db.stat().st_size / 1e6:.2f} MB ({counts})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=30, help="edit-run rounds before timing")
    parser.add_argument("--mutants", type=int, default=30, help="edits whose first selection is timed")
    parser.add_argument(
        "--seed", type=int, default=0, help="the rounds use this seed, the timed edits seed + 1"
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds one round's tests may take")
    parser.add_argument("--profile", action="store_true", help="where the timed selections spent time")
    args = parser.parse_args()
    root = args.repo.resolve()
    tmp = Path(tempfile.mkdtemp(prefix="ect-growth-"))
    scratch = tmp / "tree"
    saved = os.environ.get("PYTHONPATH")
    try:
        subprocess.run(
            ["git", "worktree", "add", "-q", "--detach", str(scratch), "HEAD"], cwd=root, check=True
        )
        copy_local_files(root, scratch, load_config(root).state_dir)
        cfg = load_config(scratch)
        cfg.state_dir = str(tmp / "state")
        cfg.ruff = cfg.mypy = False
        os.environ["PYTHONDONTWRITEBYTECODE"] = "1"
        os.environ["PYTHONPATH"] = os.pathsep.join(
            [str(scratch / r) for r in cfg.source_roots] + [saved or ""]
        )
        run_loop(scratch, cfg, Scope(mode="all"), stream=False, trigger="ci")
        db = cfg.state_path / DB_NAME
        print(f"repo: {root.name}   after the recording run: {_db_summary(db)}")
        files = source_files(scratch, cfg)
        started = time.perf_counter()
        for mutant in make_mutants(scratch, files, args.rounds, args.seed):
            mutant.apply(scratch)
            try:
                run_loop(
                    scratch, cfg, Scope(mode="worktree"), stream=False, trigger="ci", timeout=args.timeout
                )
            finally:
                mutant.revert(scratch)
        print(
            f"after {args.rounds} edit-run rounds ({time.perf_counter() - started:.0f} s): {_db_summary(db)}"
        )
        times = []
        profile = cProfile.Profile() if args.profile else None
        for mutant in make_mutants(scratch, files, args.mutants, args.seed + 1):
            mutant.apply(scratch)
            try:
                t = time.perf_counter()
                if profile is not None:
                    profile.enable()
                changes = collect(scratch, Scope(mode="worktree"))
                graph, _ = build(scratch, cfg)
                session = FingerprintSession.open(scratch, cfg)
                if session is not None:
                    session.select(graph, changes, load_last_failed(cfg))
                    session.close()
                if profile is not None:
                    profile.disable()
                times.append((time.perf_counter() - t) * 1000)
            finally:
                mutant.revert(scratch)
        print(
            f"select phase over {len(times)} new edits: median {statistics.median(times):.0f} ms, "
            f"max {max(times):.0f} ms"
        )
        if profile is not None:
            pstats.Stats(profile).sort_stats("cumulative").print_stats(30)
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved
        subprocess.run(["git", "worktree", "remove", "--force", str(scratch)], cwd=root, capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
        subprocess.run(["git", "worktree", "prune"], cwd=root, capture_output=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
