"""Rollout figures on real parts (issue 18): a demo service per box, a real Prometheus scraping each
second, a bounded load loop, the real `ect rollout` CLI.

- bad revision (20% errors): time from its first error (written by the service itself) to the alarm
  and to rollback complete, against the target 2 x evaluation interval (poll_seconds) + the rollback
  command's own time; and the share of all requests answered by the bad revision meanwhile.
- good revision: reaches the last wave with no false alarm, over N runs.

    python scripts/bench_rollout.py [--good-runs 20] [--bad-runs 5] [--poll 1] [--bake 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from rollout_demo import Demo, Load

from ect.events import query


def _event(demo: Demo, kind: str, rev: str) -> dict[str, object] | None:
    found = [e for e in query(demo.repo / ".ect", kind=kind) if e.get("commit_sha") == rev]
    return found[-1] if found else None


def _window_share(load: Load, version: str) -> float:
    """The bad revision's share of the requests answered while it was live (first to last answer)."""
    times = [t for t, v in load.answers if v == version]
    if not times:
        return 0.0
    inside = [v for t, v in load.answers if times[0] <= t <= times[-1] and v != "down"]
    return inside.count(version) / len(inside)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--good-runs", type=int, default=20)
    ap.add_argument("--bad-runs", type=int, default=5)
    ap.add_argument("--poll", type=float, default=1.0, help="alarm evaluation interval (s)")
    ap.add_argument("--bake", type=float, default=1.0, help="bake time per wave (s)")
    ap.add_argument("--rate", type=float, default=40.0, help="load: requests per second over all boxes")
    args = ap.parse_args()

    base = Path(tempfile.mkdtemp(prefix="bench-rollout-"))
    demo = Demo(base, bake=args.bake, poll=args.poll)
    good_ok = 0
    false_alarms = 0
    good_times: list[float] = []
    bad_rows: list[dict[str, float]] = []
    try:
        demo.start_prometheus()
        print(f"prometheus 127.0.0.1:{demo.prom_port}, scrape 1s; poll {args.poll}s; bake {args.bake}s/wave;")
        print(f"5 boxes in 3 waves (1, 2, 2); load {args.rate:g} req/s round-robin over the boxes")
        for i in range(max(args.good_runs, args.bad_runs)):
            if i < args.good_runs or i == 0:
                rev = demo.commit(0, f"good {i}")
                demo.pass_gate(rev)
                load = Load(demo.ports, rate=args.rate, max_seconds=300).start()
                t0 = time.time()
                proc = demo.ect("rollout", rev, timeout=300)
                took = time.time() - t0
                load.stop()
                alarm = _event(demo, "rollout.alarm", rev)
                ok = proc.returncode == 0 and set(demo.versions().values()) == {rev[:12]}
                good_ok += ok
                false_alarms += alarm is not None
                good_times.append(took)
                print(
                    f"good {i + 1:2d}: {'all waves' if ok else 'FAILED'} in {took:5.1f}s"
                    + (f"  FALSE ALARM {alarm.get('alarm')}" if alarm else "")
                )
                if not ok:
                    print(proc.stdout[-1500:], proc.stderr[-500:])
            if i < args.bad_runs:
                bad = demo.commit(5, f"bad {i}")
                demo.pass_gate(bad)
                (demo.dir / "first_error").unlink(missing_ok=True)
                load = Load(demo.ports, rate=args.rate, max_seconds=300).start()
                proc = demo.ect("rollout", bad, timeout=300)
                load.stop()
                state = json.loads(demo.ect("rollout", "status", "--json").stdout)
                alarm = _event(demo, "rollout.alarm", bad)
                rollback = _event(demo, "rollout.rollback", bad)
                first_error = demo.dir / "first_error"
                if proc.returncode != 1 or alarm is None or rollback is None or not first_error.exists():
                    print(f"bad  {i + 1:2d}: NOT ROLLED BACK (rc {proc.returncode})", proc.stdout[-1500:])
                    continue
                first = float(first_error.read_text().split()[0])
                served = sum(n for v, n in load.seen.items() if v != "down")
                row = {
                    "detect": float(str(alarm["ts"])) - first,
                    "restored": float(str(rollback["ts"])) - first,
                    "rollback_cmd": float(state["waves"][0]["rollback"]["seconds"]),
                    "share": load.seen[bad[:12]] / served if served else 0.0,
                    "window_share": _window_share(load, bad[:12]),
                    "wave": 0 if state["waves"][1]["status"] == "pending" else 1,
                }
                row["target"] = 2 * args.poll + row["rollback_cmd"]
                bad_rows.append(row)
                print(
                    f"bad  {i + 1:2d}: alarm {row['detect']:.2f}s after the first error, rolled back at "
                    f"{row['restored']:.2f}s (target {row['target']:.2f}s = 2 x {args.poll:g}s + rollback "
                    f"{row['rollback_cmd']:.2f}s), bad share {row['share']:.1%} of the run, "
                    f"{row['window_share']:.1%} while live, "
                    f"stopped at wave {'one-box' if row['wave'] == 0 else 'later'}"
                )
    finally:
        demo.close()

    print("\nsummary (loaded shared machine: 2 cores, ~8 helpers)")
    if bad_rows:
        det = [r["detect"] for r in bad_rows]
        res = [r["restored"] for r in bad_rows]
        met = sum(r["restored"] <= r["target"] for r in bad_rows)
        print(
            f"  bad revision, {len(bad_rows)} runs: first error -> alarm "
            f"median {statistics.median(det):.2f}s "
            f"(max {max(det):.2f}s); -> rollback complete median {statistics.median(res):.2f}s "
            f"(max {max(res):.2f}s); within 2 x poll + rollback time: {met}/{len(bad_rows)}"
        )
        print(
            f"  share of requests answered by the bad revision: median "
            f"{statistics.median(r['share'] for r in bad_rows):.1%} "
            f"(max {max(r['share'] for r in bad_rows):.1%}) of the rollout's requests, median "
            f"{statistics.median(r['window_share'] for r in bad_rows):.1%} of those answered while it was "
            f"live (1 of 5 boxes);"
            f" stopped at the first wave: {sum(r['wave'] == 0 for r in bad_rows)}/{len(bad_rows)}"
        )
    runs = len(good_times)
    print(
        f"  good revision, {runs} runs: reached the last wave {good_ok}/{runs}, false alarms {false_alarms}; "
        f"rollout time median {statistics.median(good_times):.1f}s"
    )
    return 0 if good_ok == runs and not false_alarms and len(bad_rows) == args.bad_runs else 1


if __name__ == "__main__":
    raise SystemExit(main())
