"""Alarms: PromQL queries through Prometheus's HTTP API, and probe commands.

A reading is `ok`, `alarm` or `unknown`. Unknown (Prometheus down, a bad query, NaN, a probe that
cannot run or times out) never counts as healthy: the rollout holds, and rolls back if it stays
unknown past the plan's hold timeout.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from ect.rollout import commands
from ect.rollout.plan import Alarm, Context, argv, fill

MAX_RESPONSE = 1 << 20
OK, ALARM, UNKNOWN = "ok", "alarm", "unknown"


@dataclass(frozen=True)
class Reading:
    state: str
    value: float | None = None
    detail: str = ""


def query_prometheus(base: str, promql: str, timeout: float) -> list[float]:
    """The values of an instant query (vector or scalar); raises ValueError when it cannot be had."""
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            body = resp.read(MAX_RESPONSE + 1)
    except urllib.error.HTTPError as exc:
        detail = exc.read(4096).decode("utf-8", "replace")
        with contextlib.suppress(ValueError):
            detail = json.loads(detail).get("error", detail)
        raise ValueError(f"Prometheus answered {exc.code}: {detail}"[:300]) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ValueError(f"Prometheus unreachable at {base}: {reason}") from None
    if len(body) > MAX_RESPONSE:
        raise ValueError("Prometheus answer larger than 1 MiB")
    try:
        data = json.loads(body)
        if data.get("status") != "success":
            raise ValueError(f"Prometheus error: {data.get('error', 'unknown')}")
        result = data["data"]
        if result["resultType"] == "scalar":
            return [float(result["result"][1])]
        if result["resultType"] != "vector":
            raise ValueError(f"query gives a {result['resultType']}, not an instant vector or scalar")
        return [float(series["value"][1]) for series in result["result"]]
    except (KeyError, TypeError, IndexError, AttributeError, json.JSONDecodeError) as exc:
        raise ValueError(f"unexpected Prometheus answer ({type(exc).__name__})") from None


def breached(alarm: Alarm, value: float) -> bool:
    if alarm.above is not None and value > alarm.above:
        return True
    return alarm.below is not None and value < alarm.below


def evaluate(alarm: Alarm, ctx: Context, prometheus: str, cwd: Path, log: Path) -> Reading:
    """One reading of `alarm` right now."""
    if alarm.query:
        promql = fill(alarm.query, ctx, quote=True)
        try:
            values = query_prometheus(prometheus, promql, alarm.timeout_seconds)
        except ValueError as exc:
            return Reading(UNKNOWN, detail=str(exc))
        values = [v for v in values if not math.isnan(v)]
        if not values:
            state = {"hold": UNKNOWN, "ok": OK, "alarm": ALARM}[alarm.no_data]
            return Reading(state, detail="no data")
        worst = max(values) if alarm.above is not None else min(values)
        return Reading(ALARM if breached(alarm, worst) else OK, worst)
    result = commands.run(argv(alarm.command, ctx), cwd, log, alarm.timeout_seconds, ctx.env())
    if result.returncode is None:
        return Reading(UNKNOWN, detail=f"probe {result.summary()}")
    if result.returncode != 0:
        last = result.tail.strip().splitlines()[-1:] or [""]
        return Reading(ALARM, float(result.returncode), f"probe exit {result.returncode}: {last[0][:200]}")
    return Reading(OK, 0.0)


@dataclass
class Tracker:
    """Turns readings into decisions: an alarm fires once breached for `for_seconds`;
    `unknown_since` is when the alarms last stopped being all known."""

    alarms: tuple[Alarm, ...]
    breached_since: dict[str, float] = field(default_factory=dict)
    unknown_since: float | None = None

    def update(self, readings: dict[str, Reading], now: float | None = None) -> tuple[list[str], bool]:
        """(names of alarms that fire, whether every alarm read healthy)."""
        now = time.time() if now is None else now
        firing: list[str] = []
        for alarm in self.alarms:
            if readings[alarm.name].state == ALARM:
                since = self.breached_since.setdefault(alarm.name, now)
                if now - since >= alarm.for_seconds:
                    firing.append(alarm.name)
            else:
                self.breached_since.pop(alarm.name, None)
        if any(r.state == UNKNOWN for r in readings.values()):
            if self.unknown_since is None:
                self.unknown_since = now
        else:
            self.unknown_since = None
        return firing, all(r.state == OK for r in readings.values())

    def fires(self, alarm: Alarm, reading: Reading, now: float) -> bool:
        """Whether this reading makes `alarm` fire (before the other alarms are read)."""
        since = self.breached_since.get(alarm.name, now)
        return reading.state == ALARM and now - since >= alarm.for_seconds


def poll(
    alarms: tuple[Alarm, ...], ctx: Context, prometheus: str, cwd: Path, logs: Path, tracker: Tracker
) -> tuple[dict[str, Reading], list[str], bool]:
    """Read every alarm at once (in threads); an alarm that fires answers without waiting for slower
    ones (their probes end by their own timeout). Returns (readings, firing, healthy)."""
    readings: dict[str, Reading] = {}
    if alarms:
        pool = ThreadPoolExecutor(max_workers=min(8, len(alarms)), thread_name_prefix="ect-alarm")
        futures = {
            pool.submit(evaluate, a, ctx, prometheus, cwd, logs / f"probe-{a.name}.log"): a for a in alarms
        }
        try:
            for future in as_completed(futures):
                alarm = futures[future]
                readings[alarm.name] = future.result()
                if tracker.fires(alarm, readings[alarm.name], time.time()):
                    break
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        for alarm in alarms:
            readings.setdefault(alarm.name, Reading(UNKNOWN, detail="not read (another alarm fired)"))
    firing, healthy = tracker.update(readings)
    return readings, firing, healthy
