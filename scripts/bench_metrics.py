#!/usr/bin/env python
"""Benchmark the metrics store and report (issues 7 and 17).

1. events lost: R runs (default 10) of W writer processes (default 8) x E events (default 1,000)
   while the database is held locked in bursts and two readers fold the spool in;
2. single-write latency p50/p99/max with W writers at once (nothing else running), the writing thread's
   CPU per write, how many writes found the database busy for their whole budget (spooled), and the
   scheduler's floor: the same W processes with each "write" only burning the mean CPU of a real one
   (with more runnable processes than CPUs, or a loaded machine, the wall tail is the run-queue wait);
3. `ect report --local` over N events (default 1,000,000) as table, json and html: wall and CPU
   seconds of the real CLI (interpreter start included), median of 3 warm runs after a cold one
   (no report-cache.json, report-values.db and report-charts.json);
4. weekly loop p50 and overall p50/p90: the report's figures against an exact computation over every run.

    python scripts/bench_metrics.py [--events 1000000] [--runs 10] [--writers 8] [--per-writer 1000]
        [--gap-ms G] [--reuse DIR] [--skip-writes] [--skip-report] [--json]

`--reuse DIR` keeps the generated repository in DIR (generating 1M events takes minutes on a busy
machine) and reuses it on the next run. Figures depend on the machine's load: say it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ect import events  # noqa: E402

DAY = 86400.0
START_PG = ROOT / "scripts" / "start_postgres.sh"


def generate(state: Path, n: int, days: float = 90.0, seed: int = 1) -> dict[str, int]:
    """Write n synthetic events (a realistic mix over `days`, 20 developers, 3 repos) straight into SQLite."""
    rnd = random.Random(seed)
    now = time.time()
    authors = [f"dev{i}@example.com" for i in range(20)]
    repos = ["api", "web", "infra"]
    kinds = (
        ["loop.run"] * 550
        + ["completion.shown"] * 200
        + ["completion.dismissed"] * 120
        + ["completion.accepted"] * 60
        + ["fix.offered"] * 10
        + ["fix.applied"] * 5
        + ["git.commit"] * 40
        + ["review.requested"] * 4
        + ["review.comment"] * 6
        + ["review.approved"] * 3
        + ["promotion.done"] * 2
    )
    counts: dict[str, int] = {}
    rows = []
    step = days * DAY / n
    last_ok: dict[str, bool] = {}
    for i in range(n):
        ts = now - days * DAY + i * step
        kind = kinds[rnd.randrange(len(kinds))]
        counts[kind] = counts.get(kind, 0) + 1
        author = authors[rnd.randrange(20)]
        repo = repos[rnd.randrange(3)]
        uid = uuid.UUID(int=rnd.getrandbits(128)).hex
        data: dict[str, Any] = {}
        cols: list[Any] = [None] * 8  # attempt, 4 phases, files_selected, files_total, chars
        duration = outcome = sha = None
        if kind == "loop.run":
            r = rnd.random()
            outcome = "pass" if r < 0.75 else "fail" if r < 0.95 else "error" if r < 0.97 else "noop"
            phases = [
                rnd.lognormvariate(1.5, 0.5),
                rnd.lognormvariate(4, 0.6),
                rnd.lognormvariate(0.5, 0.5),
                rnd.lognormvariate(6, 1.0),
            ]
            duration = sum(phases)
            cols = [1 if last_ok.get(author, True) else 2, *phases, rnd.randint(0, 12), 120, None]
            last_ok[author] = outcome == "pass"
            data = {"trigger": "hook", "files_changed": rnd.randint(1, 6)}
        elif kind.startswith("completion."):
            cols[7] = rnd.randint(5, 80)
        elif kind == "git.commit":
            sha = f"{i:040x}"
            outcome = "bypassed" if rnd.random() < 0.06 else "checked"
            cols[7] = rnd.randint(50, 3000)
            runs = rnd.randint(0, 8)
            data = {
                "loop_runs": runs,
                "first_run_outcome": "pass" if rnd.random() < 0.7 else "fail",
                "first_run_ts": ts - rnd.uniform(60, 7200) if runs else None,
                "accepted": rnd.choice([0, 0, 1, 3]),
            }
        elif kind.startswith("review.") or kind == "promotion.done":
            sha = f"{rnd.randrange(n):040x}"
            data = {"change": sha[-8:]}
            if kind == "review.comment":
                data["bot"] = rnd.random() < 0.5
            if kind == "promotion.done":
                data.update(stage="production", first_commit_ts=ts - rnd.uniform(3600, 5 * DAY))
        rows.append((uid, ts, kind, "bench", repo, author, sha, duration, outcome, json.dumps(data), *cols))
    with events.opened(state) as conn:
        conn.execute("BEGIN")
        conn.executemany(events._INSERT, rows)
        conn.execute("COMMIT")
    return counts


WRITER = r"""
import json, sys, time
from pathlib import Path
from ect import events
state, n, tag, gap = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
spin = float(sys.argv[5]) / 1000  # > 0: a stand-in "write" that only burns this much CPU (scheduler floor)
lat, cpu, spooled = [], [], [0]
spool = events._spool


def counted(*args, **kwargs):  # the real spool, counted: a write that found the database busy
    spooled[0] += 1
    return spool(*args, **kwargs)


events._spool = counted
for i in range(n):
    t, c = time.perf_counter(), time.thread_time()
    if spin:
        end = c + spin
        while time.thread_time() < end:
            pass
        ok = True
    else:
        ok = events.record(state, "bench.write", source=tag, n=i, duration_ms=1.0, outcome="pass")
    lat.append((time.perf_counter() - t) * 1000)
    cpu.append((time.thread_time() - c) * 1000)  # this thread's CPU: the write's own work
    if not ok:
        print("not stored", file=sys.stderr)
    if gap:
        time.sleep(gap)
print(json.dumps({"lat": lat, "cpu": cpu, "spooled": spooled[0]}))
"""


LOCKER = r"""
import sqlite3, sys, time
from pathlib import Path
db, stop = Path(sys.argv[1]), Path(sys.argv[2])
conn = sqlite3.connect(db, isolation_level=None, timeout=5)
while not stop.exists():
    conn.execute("BEGIN EXCLUSIVE")  # the database is locked: writers spool
    time.sleep(0.05)
    conn.execute("COMMIT")
    time.sleep(0.01)
"""

FOLDER = r"""
import sqlite3, sys
from pathlib import Path
from ect import events
state, stop = Path(sys.argv[1]), Path(sys.argv[2])
while not stop.exists():
    try:
        with events.opened(state, timeout=0.05):  # folds the spool in: rename, read, insert, delete
            pass
    except sqlite3.OperationalError:
        pass
"""


def _py(code: str, env: dict[str, str], *args: object, out: bool = False) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code, *map(str, args)],
        env=env,
        stdout=subprocess.PIPE if out else subprocess.DEVNULL,
        text=True,
    )


def writers(
    state: Path,
    procs: int,
    per: int,
    env: dict[str, str],
    tag: str,
    contended: bool = False,
    gap_s: float = 0.0,
    spin_ms: float = 0.0,
) -> tuple[list[float], list[float], int]:
    """`procs` writer processes at once (with a burst locker and two folders when `contended`);
    (all write latencies in ms, the writing thread's CPU ms per write, writes spooled).
    `spin_ms`: each "write" only burns that much CPU (no I/O, no lock): what the scheduler alone costs."""
    cpu_ms: list[float] = []
    spooled = 0
    events.connect(state).close()
    stop = state / "bench.stop"
    helpers = []
    if contended:
        helpers = [_py(LOCKER, env, state / events.DB_NAME, stop)] + [
            _py(FOLDER, env, state, stop) for _ in range(2)
        ]
    ps = [_py(WRITER, env, state, per, f"{tag}{w}", gap_s, spin_ms, out=True) for w in range(procs)]
    lat: list[float] = []
    try:
        for i, p in enumerate(ps):
            out, _ = p.communicate(timeout=900)
            if p.returncode != 0 or not out.strip():
                raise SystemExit(f"writer {i} of {procs} failed (exit status {p.returncode})")
            data = json.loads(out)
            lat += data["lat"]
            cpu_ms += data["cpu"]
            spooled += data["spooled"]
    finally:
        stop.touch()
        for h in helpers:
            h.wait(timeout=60)
        stop.unlink()
    return lat, cpu_ms, spooled  # a False from `record` shows in the lost count


def summary(lat: list[float]) -> dict[str, float]:
    return {"p50_ms": pct(lat, 0.5), "p99_ms": pct(lat, 0.99), "max_ms": max(lat)}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def local_count(state: Path, tag: str) -> int:
    with events.opened(state) as conn:
        return int(
            conn.execute(
                "SELECT count(DISTINCT uid) FROM events WHERE source LIKE ?", (tag + "%",)
            ).fetchone()[0]
        )


def cli_report(repo: Path, env: dict[str, str], fmt: str, *args: str, runs: int = 3) -> dict[str, float]:
    """Wall and CPU seconds (the child's user + system) of the real CLI: the first run with no report
    cache (cold), then the median of `runs` more (warm: whole past days and weeks cached)."""
    from ect.metrics.cache import CACHE_NAME
    from ect.metrics.chart_cache import CHARTS_NAME
    from ect.metrics.latency import VALUES_NAME

    for name in (CACHE_NAME, VALUES_NAME, CHARTS_NAME):
        (repo / ".ect" / name).unlink(missing_ok=True)
    walls, cpus = [], []
    for _ in range(runs + 1):
        before = os.times()
        t = time.perf_counter()
        cmd = [sys.executable, "-m", "ect", "report", "--since", "95d", "--format", fmt, "-o", os.devnull]
        res = subprocess.run(
            [*cmd, *args],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        walls.append(time.perf_counter() - t)
        after = os.times()
        user = after.children_user - before.children_user
        cpus.append(user + after.children_system - before.children_system)
        if res.returncode != 0:
            raise SystemExit(f"ect report failed: {res.stderr}")
    warm_w, warm_c = sorted(walls[1:]), sorted(cpus[1:])
    return {
        "cold_wall_s": walls[0],
        "cold_cpu_s": cpus[0],
        "wall_s": warm_w[len(warm_w) // 2],
        "cpu_s": warm_c[len(warm_c) // 2],
    }


def weekly_exactness(repo: Path, env: dict[str, str]) -> dict[str, Any]:
    """The report's weekly loop p50 against the exact p50 over every developer run of each week."""
    from ect.metrics import report as rep
    from ect.metrics import stats

    res = subprocess.run(
        [sys.executable, "-m", "ect", "report", "--since", "95d", "--format", "json"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    data = json.loads(res.stdout)
    since = datetime.fromisoformat(data["window"]["since"].replace("Z", "+00:00")).timestamp()
    until = datetime.fromisoformat(data["window"]["until"].replace("Z", "+00:00")).timestamp()
    per: dict[str, list[float]] = {}
    every: list[float] = []
    with events.opened(repo / ".ect") as conn:
        for ts, ms in conn.execute(
            f"SELECT ts, duration_ms FROM events WHERE {rep.TIMED.replace('{t}', 'events')}", (since, until)
        ):
            per.setdefault(rep.group_label("week", rep.group_of("week")({"ts": ts})), []).append(ms)
            every.append(ms)
    overall = stats.quantiles(every, [0.5, 0.9])
    total = data["loop"]["latency_ms"]["total"]
    overall_err = max(abs(total[k] - v) / v for k, v in zip(("p50", "p90"), overall, strict=True) if v)
    worst, weeks, sampled = 0.0, 0, 0
    for row in data["trends"]:
        values = per.get(row["group"])
        if not values or row["loop_p50_ms"] is None:
            continue
        exact = stats.quantiles(values, [0.5])[0] or 0.0
        worst = max(worst, abs(row["loop_p50_ms"] - exact) / exact)
        weeks += 1
        sampled += row.get("loop_p50_sample", 1) > 1
    stated = [n for n in data["notes"] if "weekly loop p50" in n]
    return {
        "weeks": weeks,
        "max_rel_error": worst,
        "sampled_weeks": sampled,
        "stated": stated,
        "runs": len(every),
        "overall_rel_error": overall_err,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=10, help="runs of the lost-events test (0: none)")
    ap.add_argument("--writers", type=int, default=8)
    ap.add_argument("--per-writer", type=int, default=1000)
    ap.add_argument("--reuse", type=Path, default=None, help="keep/reuse the generated repository here")
    ap.add_argument("--skip-writes", action="store_true", help="only the report figures")
    ap.add_argument("--skip-report", action="store_true", help="only the write figures")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    ap.add_argument(
        "--gap-ms",
        type=float,
        default=0.0,
        help="pause between one writer's writes in the latency run (0: back to back, saturating the CPUs)",
    )
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="ect-metrics-bench-"))
    os.chmod(work, 0o755)
    results: dict[str, Any] = {"events": args.events, "load_start": os.getloadavg()[0]}
    env = {k: v for k, v in os.environ.items() if k != events.URL_ENV}
    try:
        if not args.skip_writes:
            # 1. lost events under contention, R runs
            lost, all_lat = [], []
            total = args.writers * args.per_writer
            for run in range(args.runs):
                wstate = work / f"lost{run}" / ".ect"
                lat, _, _ = writers(wstate, args.writers, args.per_writer, env, "c", contended=True)
                all_lat += lat
                lost.append(total - local_count(wstate, "c"))
                shutil.rmtree(wstate.parent, ignore_errors=True)
            if args.runs:
                results["contended"] = {
                    "runs": args.runs,
                    "written_per_run": total,
                    "lost": lost,
                    "p99_ms": pct(all_lat, 0.99),
                    "max_ms": max(all_lat),
                }
            # 2. plain latency with W writers at once
            wstate = work / "plain" / ".ect"
            gap_s = args.gap_ms / 1000
            lat, cpu, spooled = writers(wstate, args.writers, args.per_writer, env, "p", gap_s=gap_s)
            results["plain"] = {
                "written": total,
                "gap_ms": args.gap_ms,
                "lost": total - local_count(wstate, "p"),
                "p50_ms": pct(lat, 0.5),
                "p99_ms": pct(lat, 0.99),
                "max_ms": max(lat),
                "cpu_p50_ms": pct(cpu, 0.5),
                "cpu_mean_ms": sum(cpu) / len(cpu),
                "cpu_p99_ms": pct(cpu, 0.99),
                "spooled": spooled,
                "cpus": len(os.sched_getaffinity(0)),
                "cpu_max_ms": max(cpu),
            }
            # 2b. the scheduler's floor: the same processes and pauses, each "write" only the mean CPU
            # of a real one; with more runnable processes than CPUs its tail is the run-queue wait
            spin = results["plain"]["cpu_mean_ms"]
            floor = work / "floor" / ".ect"
            lat, _, _ = writers(floor, args.writers, args.per_writer, env, "f", gap_s=gap_s, spin_ms=spin)
            results["floor"] = {"spin_ms": spin, **summary(lat)}
        if not args.skip_report:
            # 3. the report over N events
            repo = (args.reuse or work) / "repo"
            marker = repo / f".ect/bench-{args.events}"
            if not marker.exists():
                shutil.rmtree(repo, ignore_errors=True)
                subprocess.run(["git", "init", "-q", str(repo)], check=True)
                t = time.perf_counter()
                generate(repo / ".ect", args.events, days=90.0)
                results["generate_s"] = time.perf_counter() - t
                with events.opened(repo / ".ect"):
                    pass  # checkpoint the bulk load once, as any first reader would
                marker.touch()
            for fmt in ("table", "json", "html"):
                results[f"report_{fmt}"] = cli_report(repo, env, fmt, "--local")
            # 4. weekly percentiles
            results["weekly"] = weekly_exactness(repo, env)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["load_end"] = os.getloadavg()[0]
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print_table(results, args)
    return 0


def print_table(r: dict[str, Any], args: argparse.Namespace) -> None:
    print(
        f"load average {r['load_start']:.1f} at the start, {r['load_end']:.1f} at the end,"
        f" on {len(os.sched_getaffinity(0))} CPUs"
        " (wall times scale with the load; CPU seconds much less)"
    )
    rows: list[tuple[str, str, str]] = []
    c = r.get("contended")
    if c:
        rows.append(
            (
                f"events lost, {args.writers} writers x {args.per_writer}, spool folded by 2 readers,"
                f" database locked in bursts, {c['runs']} runs",
                " ".join(str(n) for n in c["lost"]),
                "0",
            )
        )
        rows.append(("  write p99 / max in those runs", f"{c['p99_ms']:.2f} / {c['max_ms']:.1f} ms", ""))
    p = r.get("plain")
    if p:
        rows.append(
            (
                f"single write p50 / p99 / max, {args.writers} writers x {args.per_writer} at once"
                + (f", {args.gap_ms:g} ms apart" if args.gap_ms else ", back to back"),
                f"{p['p50_ms']:.2f} / {p['p99_ms']:.2f} / {p['max_ms']:.1f} ms",
                "p99 <= 5 ms, max <= 20 ms",
            )
        )
        rows.append(
            (
                "  CPU of the writing thread per write, p50 / mean / p99 / max (load-independent)",
                f"{p['cpu_p50_ms']:.2f} / {p['cpu_mean_ms']:.2f} / {p['cpu_p99_ms']:.2f}"
                f" / {p['cpu_max_ms']:.1f} ms",
                "",
            )
        )
        rows.append(
            (
                "  writes that found the database busy for their whole budget (spooled)",
                f"{p['spooled']} of {p['written']}",
                "",
            )
        )
        rows.append(("  lost", str(p["lost"]), "0"))
    f = r.get("floor")
    if f:
        rows.append(
            (
                f"  scheduler floor: the same with each write only {f['spin_ms']:.2f} ms of CPU"
                f" (no I/O, no lock), p50 / p99 / max",
                f"{f['p50_ms']:.2f} / {f['p99_ms']:.2f} / {f['max_ms']:.1f} ms",
                "",
            )
        )
    for fmt, target in (("table", "<= 1 s"), ("json", "<= 1 s"), ("html", "<= 2 s")):
        m = r.get(f"report_{fmt}")
        if m:
            rows.append(
                (
                    f"`ect report --local --format {fmt}`, {args.events:,} events, warm (median of 3)",
                    f"{m['wall_s']:.2f} s wall, {m['cpu_s']:.2f} s CPU",
                    target,
                )
            )
            rows.append(
                (
                    "  cold (no report cache yet)",
                    f"{m['cold_wall_s']:.2f} s wall, {m['cold_cpu_s']:.2f} s CPU",
                    "",
                )
            )
    wk = r.get("weekly")
    if wk:
        state = "exact" if wk["max_rel_error"] < 1e-9 else f"max error {wk['max_rel_error'] * 100:.3f}%"
        said = f"; stated: {wk['stated'][0]}" if wk["stated"] else ""
        rows.append(
            (
                f"weekly loop p50 vs exact, all runs ({wk['weeks']} weeks, {wk['sampled_weeks']} sampled)",
                state + said,
                "exact, or the error stated",
            )
        )
        state = "exact" if wk["overall_rel_error"] < 1e-9 else f"error {wk['overall_rel_error'] * 100:.3f}%"
        rows.append(
            (f"loop p50 / p90 vs exact, all {wk['runs']:,} timed runs", state, "exact, or the error stated")
        )
    width = max(len(x[0]) for x in rows) + 2
    print(f"{'measure':<{width}} {'value':>30}  target")
    for label, value, target in rows:
        print(f"{label:<{width}} {value:>30}  {target}")


if __name__ == "__main__":
    sys.exit(main())
