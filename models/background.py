"""`ect model train --background`: continual training at the lowest priority, in bounded chunks, only
while the rest of the machine is idle (no torch at import)."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


def _proc_stat() -> tuple[float, float] | None:
    """(busy, total) CPU jiffies of the whole machine, or None where /proc is missing."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        vals = [float(v) for v in fields[:8]]
    except (OSError, ValueError, IndexError):
        return None
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0.0)  # idle + iowait
    return sum(vals) - idle, sum(vals)


def _own_jiffies() -> float:
    t = os.times()  # this process and its threads (and waited-for children), in seconds
    return (t.user + t.system + t.children_user + t.children_system) * os.sysconf("SC_CLK_TCK")


@dataclass
class IdleMonitor:
    """Whether others use the machine: the share of all CPUs busy with work that is not this process,
    over the time since the last look (so training itself never counts as activity). Where /proc is
    missing, the 1-minute load average per CPU is used instead."""

    max_busy: float = 0.25  # others' share of all CPUs above which the machine counts as busy
    min_interval_s: float = 2.0
    _last: tuple[float, float, float] | None = None
    _last_t: float = 0.0
    _busy: bool = False

    def others(self) -> float:
        """Others' CPU share since the previous call (0..1)."""
        stat = _proc_stat()
        if stat is None:
            try:
                return os.getloadavg()[0] / (os.cpu_count() or 1)
            except OSError:
                return 0.0
        now = (stat[0], stat[1], _own_jiffies())
        prev, self._last = self._last, now
        if prev is None or now[1] <= prev[1]:
            return 0.0
        return max(0.0, (now[0] - prev[0]) - (now[2] - prev[2])) / (now[1] - prev[1])

    def busy(self) -> bool:
        """Others' use since the last look is over `max_busy` (looks at most every `min_interval_s`)."""
        t = time.monotonic()
        if t - self._last_t >= self.min_interval_s:
            self._last_t = t
            self._busy = self.others() > self.max_busy
        return self._busy


def lower_priority() -> None:
    """Run at the lowest CPU (and, on Linux, idle I/O) priority, for this process and its threads."""
    with contextlib.suppress(OSError):
        os.nice(19)
    with contextlib.suppress(AttributeError, OSError):  # SCHED_IDLE: only when nothing else runs (Linux)
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))  # type: ignore[attr-defined,unused-ignore]


@dataclass
class BackgroundReport:
    chunks: int = 0
    steps: int = 0
    seconds_training: float = 0.0
    seconds_waiting: float = 0.0
    stops_busy: int = 0
    finished: bool = False
    last: dict[str, object] | None = None


def run_background(
    train_chunk: Callable[[float, Callable[[], bool]], dict[str, object]],
    hours: float,
    chunk_minutes: float,
    monitor: IdleMonitor,
    poll_s: float = 30.0,
    settle_s: float = 60.0,
    echo: Callable[[str], None] = print,
    until_done: bool = False,
) -> BackgroundReport:
    """Train in chunks of at most `chunk_minutes` for up to `hours`: start a chunk only after the machine
    has been idle for `settle_s`, stop it at the next step once others need the CPU (the checkpoint keeps
    the optimizer state and data position). When the plan is done and the code has not changed, wait
    for a commit (poll every `poll_s`) unless `until_done`. `train_chunk(minutes, should_stop)` runs one
    chunk and returns its report as a dict."""
    rep = BackgroundReport()
    deadline = time.monotonic() + hours * 3600
    idle_since: float | None = None
    monitor.busy()  # first sample
    while time.monotonic() < deadline:
        if monitor.busy():
            idle_since = None
            time.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))
            rep.seconds_waiting += poll_s
            continue
        now = time.monotonic()
        idle_since = now if idle_since is None else idle_since
        if now - idle_since < settle_s:
            time.sleep(min(monitor.min_interval_s, max(0.0, deadline - now)))
            rep.seconds_waiting += monitor.min_interval_s
            continue
        minutes = min(chunk_minutes, (deadline - now) / 60)
        if minutes < 0.5:
            break
        t0 = time.monotonic()
        out = train_chunk(minutes, monitor.busy)
        rep.seconds_training += time.monotonic() - t0
        rep.chunks += 1
        rep.last = out
        new = int(str(out.get("new_steps", 0)))
        rep.steps += new
        if out.get("stopped") == "busy":
            rep.stops_busy += 1
            idle_since = None
        echo(
            f"chunk {rep.chunks}: {new} steps, held-out loss {out.get('held_out_loss_after')}"
            + (" (stopped: machine busy)" if out.get("stopped") == "busy" else "")
        )
        if out.get("finished") and new == 0:
            rep.finished = True
            if until_done:
                break
            time.sleep(min(poll_s * 10, max(0.0, deadline - time.monotonic())))  # wait for a commit
    return rep
