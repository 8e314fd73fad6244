"""Benchmark the server gate against an attacker with push access (issue 15's numbers).

- the red-team catalogue (review/redteam.py): a real central bare repository with the ect
  hooks, four people with their own SSH keys, every attack through real `git push`es;
  prints attacks tried, forged approvals accepted, bypasses accepted, crashes (target 0, 0,
  0) and the honest controls (must all pass);
- the gate's time on a repository with 10,000 review records: the pre-receive judgement of
  a staging push, in-process and as the real hook process.

  python scripts/bench_gate.py [--records 10000] [--samples 5] [--skip-attacks] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ect.review import records
from ect.review.gitcmd import Git
from ect.review.pre_receive import judge
from ect.review.redteam import Lab, make_lab, run_catalogue, summary
from ect.review.store import Store


def attacks(tmp: Path) -> dict[str, Any]:
    lab = make_lab(tmp / "redteam")
    t0 = time.perf_counter()
    outcomes = run_catalogue(lab)
    return {
        **summary(outcomes),
        "seconds": round(time.perf_counter() - t0, 1),
        "detail": [
            {"name": o.name, "kind": o.kind, "accepted": o.accepted, "error": o.error} for o in outcomes
        ],
    }


def _filler(n: int, rng: random.Random) -> dict[str, list[str]]:
    """`n` well-formed records about other commits, by ref, like a busy repository's history."""
    by_ref: dict[str, list[str]] = {"approvals": [], "comments": [], "reviews": []}
    for i in range(n):
        commit = f"{rng.getrandbits(160):040x}"
        ts = 1.7e9 + i
        kind = i % 4
        if kind == 0:
            data = records.make(
                "approval", commit, ts, by="bob@example.com", patch_id=f"{i:040x}", sig="x" * 300
            )
            by_ref["approvals"].append(records.dumps(data))
        elif kind == 1:
            data = records.make(
                "comment",
                commit,
                ts,
                fp=f"{i:016x}",
                rule="forbidden",
                severity="advisory",
                message="use subprocess.run",
                path="pkg/x.py",
                line=i % 300,
                by="ect-bot",
            )
            by_ref["comments"].append(records.dumps(data))
        elif kind == 2:
            data = records.make(
                "check",
                commit,
                ts,
                tree=f"{i:040x}",
                base=f"{i:040x}",
                outcome="pass",
                checks="pass",
                tests_run=True,
                summary="ok",
                by="carol@example.com",
                sig="x" * 300,
            )
            by_ref["reviews"].append(records.dumps(data))
        else:
            data = records.make("resolve", commit, ts, fp=f"{i:016x}", by="ect-bot")
            by_ref["comments"].append(records.dumps(data))
    return by_ref


def _import_notes(git: Git, ref: str, lines: list[str]) -> None:
    """Add one note per record line to `refs/notes/ect/<ref>` with one `git fast-import`."""
    full = records.NOTES_PREFIX + ref
    parent = git.maybe_rev(full)
    out = [f"commit {full}", "committer bench <bench@localhost> 0 +0000", "data 0"]
    if parent:
        out.append(f"from {parent}")
    for line in lines:
        commit = records.loads(line)["commit"]
        body = (line + "\n").encode()
        out.append(f"M 100644 inline {commit[:2]}/{commit[2:]}")
        out.append(f"data {len(body)}")
        out.append(body.decode())
    git.run("fast-import", "--quiet", input=("\n".join(out) + "\n").encode())


def gate_time(tmp: Path, n: int, samples: int) -> dict[str, Any]:
    lab: Lab = make_lab(tmp / "records")
    sha = lab.change()
    lab.reviewed(sha)  # the honest change: carol's signed check, bob's signed approval
    central = lab.central
    for ref, lines in _filler(n, random.Random(15)).items():
        _import_notes(central, ref, lines)
    store = Store(central)
    total = len(store.records("approvals")) + len(store.records("comments")) + len(store.records("reviews"))
    lab.push(f"{sha}:refs/heads/wip/bench")  # the objects on the server, as a push would bring them
    update = [("0" * 40 if lab.tip("staging") is None else lab.tip("staging"), sha, "refs/heads/staging")]
    errors = judge(central, update, {})
    times, cpu = [], []
    for _ in range(samples):
        r0, c0 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        judge(central, update, {})
        times.append((time.perf_counter() - t0) * 1000)
        r1, c1 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        used = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
        used += (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime)
        cpu.append(used * 1000)
    stdin = "".join(f"{o} {nw} {r}\n" for o, nw, r in update)
    hook = central.path / "hooks" / "pre-receive"
    hook_times = []
    for _ in range(samples):
        t0 = time.perf_counter()
        proc = subprocess.run(
            [str(hook)],
            cwd=central.path,
            input=stdin,
            text=True,
            capture_output=True,
            env=lab.sc.env,
            check=False,
            timeout=120,
        )
        hook_times.append((time.perf_counter() - t0) * 1000)
    return {
        "records": total,
        "verdict": "accept" if not errors else "refuse: " + "; ".join(errors),
        "judge_ms_median": round(statistics.median(times), 1),
        "judge_ms_min": round(min(times), 1),
        "judge_cpu_ms_median": round(statistics.median(cpu), 1),
        "hook_process_ms_median": round(statistics.median(hook_times), 1),
        "hook_exit": proc.returncode,
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=10000, help="review records in the timing repository")
    ap.add_argument("--samples", type=int, default=5, help="gate timing samples (default 5)")
    ap.add_argument("--skip-attacks", action="store_true", help="only the timing")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args(argv)
    if args.records < 0 or args.samples < 1:
        print("bench_gate: --records must be >= 0 and --samples >= 1", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="ect-bench-gate-") as name:
        tmp = Path(name)
        red = None if args.skip_attacks else attacks(tmp)
        timing = gate_time(tmp, args.records, args.samples)
    if args.json:
        print(json.dumps({"attacks": red, "gate": timing}, indent=2))
        return 0
    if red is not None:
        print(f"red team: {red['attacks']} attacks through real pushes ({red['seconds']} s)")
        for row in red["detail"]:
            verdict = "ACCEPTED" if row["accepted"] else "refused"
            if row["kind"] == "control":
                verdict = "passes" if row["accepted"] else "BLOCKED"
            elif row["kind"] == "crash":
                verdict = "BLOCKED" if row["accepted"] else "held"
            print(
                f"  {row['kind']:8} {verdict:9} {row['name']}"
                + (f"  [{row['error']}]" if row["error"] else "")
            )
        print(f"  attacks tried               {red['attacks']:5d}")
        print(f"  forged approvals accepted   {red['forged_accepted']:5d}   (target 0)")
        print(f"  bypasses accepted           {red['bypasses_accepted']:5d}   (target 0)")
        print(f"  crashes                     {red['crashes']:5d}   (target 0)")
        print(f"  honest controls failed      {red['controls_failed']:5d} of {red['controls']}")
    load = timing["load_avg_1m"]
    print(f"\ngate on a repository with {timing['records']} review records (load average {load})")
    print(f"  verdict                     {timing['verdict']}")
    wall = f"median {timing['judge_ms_median']} ms, min {timing['judge_ms_min']} ms"
    print(f"  pre-receive judge, in-process  {wall}   (target <= 200 ms)")
    print(
        f"  CPU time of that judgement     median {timing['judge_cpu_ms_median']} ms (with git, ssh-keygen)"
    )
    print(
        f"  pre-receive hook process       median {timing['hook_process_ms_median']} ms"
        f" (exit {timing['hook_exit']}, includes interpreter start-up)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
