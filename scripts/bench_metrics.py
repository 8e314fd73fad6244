#!/usr/bin/env python
"""Benchmark the metrics store and report (issue 7).

1. report over N (default 1,000,000) events: local SQLite, and PostgreSQL after `sync`;
2. W processes (default 8) x E events (default 1,000) written at once: events lost, write latency;
3. PostgreSQL stopped in the middle of a team-mode run, started again, then `sync`: events lost.

PostgreSQL: a throwaway cluster started with scripts/start_postgres.sh (default), or --pg-url
(then step 3 needs --pg-dir, the directory the script started it in).

    python scripts/bench_metrics.py [--events 1000000] [--writers 8] [--per-writer 1000] [--json]
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


def time_report(store: Any, since: float, until: float, by: str | None, runs: int = 3) -> dict[str, Any]:
    """Build + render the table `runs` times: min and median seconds."""
    from ect.metrics import formats
    from ect.metrics.report import build

    times, cpu = [], []
    rep: dict[str, Any] = {}
    for _ in range(runs):
        t, c = time.perf_counter(), time.process_time()
        rep = build(store, since, until, by=by)
        formats.to_table(rep)
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return {
        "min_s": min(times),
        "median_s": sorted(times)[len(times) // 2],
        "cpu_min_s": min(cpu),  # this process only: SQLite's work for the local store, the client's for PG
        "events": rep["events"],
    }


def cli_report(repo: Path, env: dict[str, str], *args: str, runs: int = 3) -> float:
    """Median wall time of the real CLI, interpreter start included."""
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        res = subprocess.run(
            [sys.executable, "-m", "ect", "report", "--since", "95d", "--format", "json", *args],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
        )
        if res.returncode != 0:
            raise SystemExit(f"ect report failed: {res.stderr}")
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


WRITER = r"""
import json, sys, time
from pathlib import Path
from ect import events
state, n, tag, gap = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
lat, cpu = [], 0.0
for i in range(n):
    t, c = time.perf_counter(), time.process_time()
    ok = events.record(state, "bench.write", source=tag, n=i, duration_ms=1.0, outcome="pass")
    lat.append((time.perf_counter() - t) * 1000)
    cpu += time.process_time() - c
    if not ok:
        print("not stored", file=sys.stderr)
    if gap:
        time.sleep(gap)
print(json.dumps({"lat": lat, "cpu_ms": cpu * 1000 / n}))
"""


def writers(
    state: Path, procs: int, per: int, env: dict[str, str], tag: str, gap: float = 0.0, during: Any = None
) -> tuple[list[float], float]:
    """Start `procs` writer processes at once; (all write latencies in ms, mean CPU ms per write)."""
    ps = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(state), str(per), f"{tag}{w}", str(gap)],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for w in range(procs)
    ]
    if during:
        during()
    lat: list[float] = []
    cpu = []
    for p in ps:
        out, _ = p.communicate(timeout=600)
        data = json.loads(out)
        lat += data["lat"]
        cpu.append(data["cpu_ms"])
    return lat, sum(cpu) / len(cpu)


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


def remote_count(url: str, tag: str) -> int:
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(DISTINCT uid) FROM ect_events WHERE source LIKE %s", (tag + "%",)
        ).fetchone()
        return int(row[0]) if row else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--writers", type=int, default=8)
    ap.add_argument("--per-writer", type=int, default=1000)
    ap.add_argument("--pg-url", default=None, help="use this server instead of starting one")
    ap.add_argument(
        "--pg-dir", default=None, help="where start_postgres.sh keeps the cluster (for the outage test)"
    )
    ap.add_argument("--no-pg", action="store_true", help="SQLite only")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="ect-metrics-bench-"))
    os.chmod(work, 0o755)
    results: dict[str, Any] = {"events": args.events}
    env = {k: v for k, v in os.environ.items() if k != events.URL_ENV}
    pg_url, pg_dir = args.pg_url, args.pg_dir
    started = False
    try:
        if not args.no_pg and not pg_url:
            pg_dir = pg_dir or str(work / "pg")
            out = subprocess.run(["bash", str(START_PG), "start", pg_dir], capture_output=True, text=True)
            if out.returncode != 0:
                raise SystemExit(f"cannot start PostgreSQL: {out.stderr.strip()}")
            pg_url, started = out.stdout.strip().split("=", 1)[1], True

        # 1. report over N events
        repo = work / "repo"
        subprocess.run(["git", "init", "-q", str(repo)], check=True)
        state = repo / ".ect"
        t = time.perf_counter()
        results["mix"] = generate(state, args.events)
        results["generate_s"] = time.perf_counter() - t
        results["sqlite_db_mb"] = (state / events.DB_NAME).stat().st_size / 1e6
        now = time.time()
        window = (now - 95 * DAY, now)
        from ect.metrics.store import SqliteStore

        s = SqliteStore(state)
        try:
            results["report_sqlite"] = time_report(s, *window, by=None)
            results["report_sqlite_by_author"] = time_report(s, *window, by="author")
        finally:
            s.close()
        results["report_sqlite_cli_s"] = cli_report(repo, env, "--local")
        if pg_url:
            from ect.metrics.forward import sync
            from ect.metrics.store import PostgresStore

            t = time.perf_counter()
            results["sync_sent"] = sync(state, pg_url).sent
            results["sync_s"] = time.perf_counter() - t
            p = PostgresStore(pg_url)
            try:
                p.conn.autocommit = True  # settle the bulk load (as autovacuum would) before timing
                p.conn.execute("VACUUM ANALYZE ect_events")
                p.conn.autocommit = False
                results["report_pg"] = time_report(p, *window, by=None)
                results["report_pg_by_author"] = time_report(p, *window, by="author")
            finally:
                p.close()
            results["report_pg_cli_s"] = cli_report(repo, {**env, events.URL_ENV: pg_url}, "--team")

        # 2. concurrent writers: back to back (CPU-bound: 8 processes on the machine's cores), paced
        # (a write every 2 ms per process), and back to back in team mode (forwarder spawned by record)
        modes = [("local", 0.0), ("paced", 0.002)] + ([("team", 0.0)] if pg_url else [])
        for mode, gap in modes:
            wstate = work / f"w-{mode}" / ".ect"
            wenv = dict(env)
            if mode == "team":
                assert pg_url is not None
                wenv[events.URL_ENV] = pg_url
            lat, cpu = writers(wstate, args.writers, args.per_writer, wenv, f"c{mode}", gap=gap)
            total = args.writers * args.per_writer
            got = local_count(wstate, f"c{mode}")
            results[f"writes_{mode}"] = {
                "written": total,
                "stored": got,
                "lost": total - got,
                "p50_ms": pct(lat, 0.5),
                "p99_ms": pct(lat, 0.99),
                "max_ms": max(lat),
                "cpu_ms_per_write": cpu,
            }
            if mode == "team":
                from ect.metrics.forward import sync

                sync(wstate, pg_url)  # whatever the background forwarder has not sent yet
                results["writes_team"]["in_postgres"] = remote_count(pg_url, "cteam")

        # 3. PostgreSQL stopped mid-run
        if pg_url and pg_dir:
            ostate = work / "outage" / ".ect"
            oenv = {**env, events.URL_ENV: pg_url}
            procs, per = 4, 500
            timeline: dict[str, float] = {}

            def outage() -> None:
                time.sleep(1.0)
                timeline["stop"] = time.time()
                subprocess.run(["bash", str(START_PG), "stop", pg_dir], check=True, capture_output=True)
                time.sleep(2.0)
                subprocess.run(["bash", str(START_PG), "start", pg_dir], check=True, capture_output=True)
                timeline["start"] = time.time()

            lat, cpu = writers(ostate, procs, per, oenv, "outage", gap=0.004, during=outage)
            total = procs * per
            before = remote_count(pg_url, "outage")
            from ect.metrics.forward import sync

            res = sync(ostate, pg_url)
            after = remote_count(pg_url, "outage")
            results["outage"] = {
                "written": total,
                "stored_locally": local_count(ostate, "outage"),
                "in_postgres_before_sync": before,
                "sync_sent": res.sent,
                "in_postgres_after_sync": after,
                "lost": total - after,
                "p99_write_ms": pct(lat, 0.99),
                "max_write_ms": max(lat),
                "down_s": round(timeline["start"] - timeline["stop"], 1),
            }
    finally:
        if started and pg_dir:
            subprocess.run(["bash", str(START_PG), "stop", pg_dir], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)

    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print_table(results, args)
    return 0


def print_table(r: dict[str, Any], args: argparse.Namespace) -> None:
    print(
        f"events: {args.events:,} (generated in {r['generate_s']:.1f} s,"
        f" SQLite file {r['sqlite_db_mb']:.0f} MB); load average at the end: {os.getloadavg()[0]:.1f}"
        f" on {os.cpu_count()} CPUs"
    )
    rows: list[tuple[str, str, str]] = []
    for name, label, target in (("sqlite", "SQLite", "<= 2 s"), ("pg", "PostgreSQL", "<= 3 s")):
        if f"report_{name}" not in r:
            continue
        if name == "pg":
            rows.append((f"sync {r['sync_sent']:,} events to PostgreSQL", f"{r['sync_s']:.1f} s", ""))
        for key, what in ((f"report_{name}", "report"), (f"report_{name}_by_author", "report --by author")):
            m = r[key]
            rows.append(
                (
                    f"{what}, {label}, build + table (min / median of 3)",
                    f"{m['min_s']:.2f} / {m['median_s']:.2f} s",
                    target,
                )
            )
            who = "in-process SQLite" if name == "sqlite" else "client only"
            rows.append((f"  CPU seconds ({who}, min of 3)", f"{m['cpu_min_s']:.2f} s", ""))
        rows.append(
            (
                f"`ect report --format json` wall, {label} (median of 3)",
                f"{r[f'report_{name}_cli_s']:.2f} s",
                target,
            )
        )
    for mode, what in (
        ("local", "back to back"),
        ("paced", "one per 2 ms"),
        ("team", "back to back, team mode"),
    ):
        w = r.get(f"writes_{mode}")
        if not w:
            continue
        label = f"{args.writers} procs x {args.per_writer} writes, {what}"
        rows += [
            (f"{label}: lost", str(w["lost"]), "0"),
            (
                "  write p50 / p99 / max",
                f"{w['p50_ms']:.2f} / {w['p99_ms']:.2f} / {w['max_ms']:.0f} ms",
                "p99 <= 5 ms",
            ),
            ("  CPU per write", f"{w['cpu_ms_per_write']:.3f} ms", ""),
        ]
        if "in_postgres" in w:
            rows.append(("  in PostgreSQL after sync", str(w["in_postgres"]), str(w["written"])))
    o = r.get("outage")
    if o:
        rows += [
            (f"PostgreSQL down {o['down_s']} s mid-run: events written", str(o["written"]), ""),
            (
                "  in PostgreSQL before / after `sync`",
                f"{o['in_postgres_before_sync']} / {o['in_postgres_after_sync']}",
                "",
            ),
            ("  lost", str(o["lost"]), "0"),
            ("  write p99 / max during the run", f"{o['p99_write_ms']:.2f} / {o['max_write_ms']:.0f} ms", ""),
        ]
    width = max(len(x[0]) for x in rows) + 2
    print(f"{'measure':<{width}} {'value':>22}  target")
    for label, value, target in rows:
        print(f"{label:<{width}} {value:>22}  {target}")


if __name__ == "__main__":
    sys.exit(main())
