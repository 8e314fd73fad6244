"""The rollout state machine: waves in order, each deployed then baked under its alarms; any alarm,
failed deploy, unknown-for-too-long alarm or interruption rolls every deployed wave back.

States: running -> done | rolling_back -> rolled_back | rollback_failed. Every transition is
written to the stage's state ref (see `store`) before the step it announces, so a rollout that
dies (SIGKILL, power loss) is found as it was by `ect rollout status` and finished by
`ect rollout resume` or `ect rollout rollback`. While the state is not final, or a rollback
failed, the stage is locked against new rollouts.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from ect import events
from ect.config import Config
from ect.errors import EctError
from ect.rollout import alarms as alarms_mod
from ect.rollout import commands
from ect.rollout.plan import Context, Plan, Wave, argv
from ect.rollout.store import Conflict, RolloutStore, Snapshot

Echo = Callable[[str], None]
ACTIVE = ("running", "rolling_back", "rollback_failed")
DEPLOYED = ("deploying", "baking", "passed", "rollback_failed")


class LostLock(EctError):
    """Another machine took the stage's rollout over: stop without touching anything."""


class Interrupted(Exception):
    """ect received SIGTERM/SIGHUP while rolling out."""


def live_revision(state: dict[str, Any] | None) -> str:
    """What the stage runs after `state` (when it reached a final state)."""
    if not state:
        return ""
    if state.get("status") == "done":
        return str(state.get("revision") or "")
    return str(state.get("previous") or "")


def owner_alive(state: dict[str, Any], stale_after: float) -> bool:
    """Whether the rollout's owner may still be working on it."""
    owner = state.get("owner") or {}
    if owner.get("host") == socket.gethostname():
        pid = owner.get("pid")
        if not isinstance(pid, int) or pid == os.getpid():
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    heartbeat = owner.get("heartbeat")
    return isinstance(heartbeat, (int, float)) and time.time() - heartbeat < stale_after


@contextmanager
def _signals(handler: Callable[[int, FrameType | None], None]) -> Iterator[None]:
    """SIGTERM/SIGHUP (and SIGINT when given a non-raising handler) go to `handler`."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}
    try:
        for s in saved:
            if s != signal.SIGINT or handler is _ignore:
                signal.signal(s, handler)
        yield
    finally:
        for s, old in saved.items():
            signal.signal(s, old)


def _raise(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum).name)


def _ignore(signum: int, frame: FrameType | None) -> None:
    print(f"ect: {signal.Signals(signum).name} ignored: finishing the rollback first", file=sys.stderr)


@dataclass
class Runner:
    root: Path
    cfg: Config
    plan: Plan
    store: RolloutStore
    echo: Echo = print
    state: dict[str, Any] = field(default_factory=dict)
    base: str | None = None
    _beat: float = 0.0

    # ---- bookkeeping -------------------------------------------------------------------------
    @property
    def rev(self) -> str:
        return str(self.state["revision"])

    def save(self, message: str) -> None:
        now = time.time()
        self.state["updated"] = now
        self.state["owner"] = {"host": socket.gethostname(), "pid": os.getpid(), "heartbeat": now}
        try:
            self.base = self.store.write(self.state, message, self.base)
        except Conflict:
            raise LostLock(
                f"another machine took over the {self.plan.stage} rollout: stopped here "
                f"(see `ect rollout status --stage {self.plan.stage}`)",
                1,
            ) from None
        self._beat = now

    def event(self, kind: str, **fields: Any) -> None:
        events.record(
            self.cfg.state_path,
            kind,
            source="rollout",
            commit_sha=self.rev,
            stage=self.plan.stage,
            rollout=self.state["id"],
            **fields,
        )

    def log_path(self, name: str) -> Path:
        return self.cfg.state_path / "rollout" / str(self.state["id"]) / name

    def context(self, index: int) -> Context:
        wave = self.plan.waves[index]
        return Context(
            revision=self.rev,
            previous=str(self.state.get("previous") or ""),
            stage=self.plan.stage,
            wave=wave.name,
            percent="" if wave.percent is None else f"{wave.percent:g}",
            targets=wave.targets,
            deployed=tuple(self.plan.deployed_targets(index)),
        )

    def run_command(self, template: str, index: int, step: str) -> commands.CommandResult:
        ctx = self.context(index)
        seq = len(os.listdir(self.log_path(""))) if self.log_path("").is_dir() else 0
        log = self.log_path(f"{seq:03d}-{self.plan.waves[index].name}-{step}.log")
        return commands.run(argv(template, ctx), self.root, log, self.plan.command_timeout_seconds, ctx.env())

    # ---- the waves ----------------------------------------------------------------------------
    def run_waves(self) -> int:
        """Deploy and bake from the current wave on; roll back on any trouble."""
        try:
            with _signals(_raise):
                for index in range(int(self.state["wave"]), len(self.plan.waves)):
                    if self.state["waves"][index].get("status") == "passed":
                        continue  # killed right after the wave passed
                    trouble = self._one_wave(index)
                    if trouble is not None:
                        return self.roll_back(trouble)
        except (Interrupted, KeyboardInterrupt) as exc:
            name = str(exc) or "SIGINT"
            self.echo(f"interrupted ({name}): rolling back every deployed wave")
            self.roll_back({"reason": f"interrupted ({name})"})
            return 130
        except LostLock:
            raise
        except Exception as exc:  # never stop halfway: roll back, then report the error
            self.echo(f"error during the rollout ({exc}): rolling back every deployed wave")
            self.roll_back({"reason": f"error: {exc}"})
            raise
        self.state["status"] = "done"
        self.state["finished"] = time.time()
        self.save(f"done: {self.rev[:12]} on every wave")
        self.event(
            "rollout.done",
            outcome="pass",
            duration_ms=round((self.state["finished"] - self.state["started"]) * 1000, 1),
            waves=len(self.plan.waves),
        )
        self.echo(f"rollout of {self.rev[:12]} to {self.plan.stage} done: {len(self.plan.waves)} wave(s)")
        return 0

    def _one_wave(self, index: int) -> dict[str, Any] | None:
        wave = self.plan.waves[index]
        record = self.state["waves"][index]
        self.state["wave"] = index
        record.update(status="deploying", started=time.time())
        self.save(f"wave {wave.name}: deploying {self.rev[:12]}")
        self.event("rollout.wave_started", wave=wave.name, index=index, targets=list(wave.targets))
        self.echo(f"[{wave.name}] deploying {self.rev[:12]} to {', '.join(wave.targets) or wave.percent}")
        result = self.run_command(wave.deploy, index, "deploy")
        record["deploy"] = result.as_dict()
        if not result.ok:
            self.echo(f"[{wave.name}] deploy failed: {result.summary()}")
            return {"reason": f"deploy of wave {wave.name} failed: {result.summary()}", "wave": wave.name}
        record.update(status="baking", deployed=time.time())
        self.save(f"wave {wave.name}: baking")
        trouble = self._bake(index, wave)
        if trouble is not None:
            return trouble
        record.update(status="passed", passed=time.time())
        self.save(f"wave {wave.name}: passed")
        self.event(
            "rollout.wave_passed",
            wave=wave.name,
            index=index,
            duration_ms=round((record["passed"] - record["started"]) * 1000, 1),
        )
        self.echo(f"[{wave.name}] passed")
        return None

    def _bake(self, index: int, wave: Wave) -> dict[str, Any] | None:
        """Poll the alarms until the wave has been healthy for its bake time."""
        tracker = alarms_mod.Tracker(self.plan.alarms)
        ctx = self.context(index)
        healthy_for = 0.0
        last_healthy: float | None = None
        started = time.time()
        tty = sys.stdout.isatty()
        shown = 0.0
        while True:
            poll_start = time.time()
            readings, firing, healthy = alarms_mod.poll(
                self.plan.alarms, ctx, self.plan.prometheus, self.root, self.log_path(""), tracker
            )
            now = time.time()
            if firing:
                name = firing[0]
                reading = readings[name]
                alarm = {
                    "reason": f"alarm {name} in wave {wave.name}",
                    "wave": wave.name,
                    "alarm": name,
                    "value": reading.value,
                    "detail": reading.detail,
                    "ts": now,
                    "breached_since": tracker.breached_since.get(name),
                }
                self.echo(
                    f"[{wave.name}] ALARM {name}: "
                    + (f"value {reading.value:g}" if reading.value is not None else reading.detail)
                )
                self.state["alarm"] = alarm
                self.event(
                    "rollout.alarm",
                    wave=wave.name,
                    alarm=name,
                    value=reading.value,
                    detail=reading.detail,
                    breached_since=alarm["breached_since"],
                    ts=now,
                )
                return alarm
            if (
                tracker.unknown_since is not None
                and now - tracker.unknown_since >= self.plan.hold_timeout_seconds
            ):
                unknown = [f"{n}: {r.detail}" for n, r in readings.items() if r.state == alarms_mod.UNKNOWN]
                detail = "; ".join(unknown)
                self.echo(f"[{wave.name}] alarms unknown for {now - tracker.unknown_since:.0f}s: {detail}")
                alarm = {
                    "reason": f"alarms could not be evaluated in wave {wave.name}: {detail}",
                    "wave": wave.name,
                    "alarm": "unknown",
                    "detail": detail,
                    "ts": now,
                }
                self.state["alarm"] = alarm
                self.event("rollout.alarm", wave=wave.name, alarm="unknown", detail=detail, ts=now)
                return alarm
            if healthy:
                if last_healthy is not None:
                    healthy_for += now - last_healthy
                last_healthy = now
            else:
                last_healthy = None
            if healthy and healthy_for >= wave.bake_seconds:
                return None
            line = self._progress(wave, healthy_for, readings, now - started)
            if tty:
                sys.stdout.write("\r" + line[:150].ljust(150) + "\r")
                sys.stdout.flush()
            elif now - shown >= max(self.plan.poll_seconds, 10.0) or shown == 0.0:
                self.echo(line)
                shown = now
            if now - self._beat >= self.plan.heartbeat_seconds:
                self.state["waves"][index]["baked_s"] = round(healthy_for, 1)
                self.save(f"wave {wave.name}: baking ({healthy_for:.0f}s healthy)")
            time.sleep(max(0.0, self.plan.poll_seconds - (time.time() - poll_start)))

    def _progress(
        self, wave: Wave, healthy_for: float, readings: dict[str, alarms_mod.Reading], elapsed: float
    ) -> str:
        parts = []
        for name, r in readings.items():
            shown = f"{r.value:.4g}" if r.value is not None else (r.detail[:40] or r.state)
            parts.append(f"{name}={shown}" + ("" if r.state == alarms_mod.OK else f" ({r.state})"))
        held = any(r.state == alarms_mod.UNKNOWN for r in readings.values())
        return (
            f"[{wave.name}] baking {healthy_for:.0f}/{wave.bake_seconds:g}s healthy"
            f"{' HELD' if held else ''} ({elapsed:.0f}s) " + "  ".join(parts)
        )

    # ---- rolling back ---------------------------------------------------------------------------
    def roll_back(self, trouble: dict[str, Any]) -> int:
        """Roll back every deployed wave, newest first; signals wait until it is done."""
        with _signals(_ignore):
            began = time.time()
            self.state["status"] = "rolling_back"
            self.state.setdefault("reason", trouble.get("reason", ""))
            self.state["reason"] = trouble.get("reason", self.state.get("reason", ""))
            self.state.setdefault("rollback_started", began)
            self.save(f"rolling back: {self.state['reason']}")
            failed: list[str] = []
            rolled: list[str] = []
            for index in reversed(range(len(self.plan.waves))):
                record = self.state["waves"][index]
                if record.get("status") not in DEPLOYED:
                    continue
                wave = self.plan.waves[index]
                self.echo(f"[{wave.name}] rolling back to {str(self.state.get('previous') or '(none)')[:12]}")
                result = self.run_command(wave.rollback, index, "rollback")
                record["rollback"] = result.as_dict()
                record["status"] = "rolled_back" if result.ok else "rollback_failed"
                (rolled if result.ok else failed).append(wave.name)
                if not result.ok:
                    self.echo(f"[{wave.name}] ROLLBACK FAILED: {result.summary()} (log: {result.log})")
                self.save(f"wave {wave.name}: {record['status']}")
            done = time.time()
            self.state["status"] = "rollback_failed" if failed else "rolled_back"
            self.state["finished"] = done
            self.save(f"{self.state['status']}: {self.state['reason']}")
            first = self.state["waves"][0].get("started") or self.state["started"]
            self.event(
                "rollout.rollback",
                outcome="fail" if failed else "pass",
                reason=self.state["reason"],
                waves=rolled,
                failed_waves=failed,
                duration_ms=round((done - began) * 1000, 1),
                alarm_ts=(self.state.get("alarm") or {}).get("ts"),
            )
            if not failed:
                # the kind `ect report` reads for change failure rate and time to restore
                self.event("rollback", failed_ts=first, restored_ts=done, reason=self.state["reason"])
            if failed:
                self.echo(
                    f"rollback of {self.plan.stage} incomplete ({', '.join(failed)}): the stage stays locked;"
                    f" fix and retry `ect rollout rollback --stage {self.plan.stage}`"
                )
                return 3
            self.echo(f"rolled back {self.rev[:12]} from {self.plan.stage}: {self.state['reason']}")
            return 1


def new_state(plan: Plan, rev: str, previous: str) -> dict[str, Any]:
    now = time.time()
    return {
        "version": 1,
        "id": time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + "-" + uuid.uuid4().hex[:6],
        "stage": plan.stage,
        "revision": rev,
        "previous": previous,
        "status": "running",
        "started": now,
        "wave": 0,
        "waves": [
            {"name": w.name, "targets": list(w.targets), "percent": w.percent, "status": "pending"}
            for w in plan.waves
        ],
        "alarm": None,
        "reason": "",
    }


def stale_after(plan: Plan) -> float:
    return 3 * plan.heartbeat_seconds + plan.poll_seconds + plan.command_timeout_seconds


def start(root: Path, cfg: Config, plan: Plan, store: RolloutStore, rev: str, echo: Echo) -> int:
    """Take the stage's lock and roll `rev` out (the gate was checked by the caller)."""
    snap = store.read()
    if snap.state and snap.state.get("status") in ACTIVE:
        s = snap.state
        how = "in progress" if owner_alive(s, stale_after(plan)) else "interrupted"
        raise EctError(
            f"a rollout of {str(s.get('revision'))[:12]} to {plan.stage} is {how} ({s.get('status')});"
            f" see `ect rollout status --stage {plan.stage}`, then `resume` or `rollback`",
            1,
        )
    runner = Runner(
        root, cfg, plan, store, echo, new_state(plan, rev, live_revision(snap.state)), snap.commit
    )
    try:
        runner.save(f"start: {rev[:12]} to {plan.stage}")
    except LostLock:
        raise EctError(f"another rollout to {plan.stage} began meanwhile: nothing was deployed", 1) from None
    return runner.run_waves()


def _takeover(plan: Plan, store: RolloutStore, force: bool, what: str) -> Snapshot:
    snap = store.read()
    if not snap.state or snap.state.get("status") not in ACTIVE:
        raise EctError(f"no unfinished rollout on {plan.stage} to {what}", 1)
    if owner_alive(snap.state, stale_after(plan)) and not force:
        owner = snap.state.get("owner") or {}
        raise EctError(
            f"the {plan.stage} rollout is still owned by pid {owner.get('pid')} on {owner.get('host')}"
            " (use --force if that machine is gone)",
            1,
        )
    return snap


def resume(root: Path, cfg: Config, plan: Plan, store: RolloutStore, echo: Echo, force: bool = False) -> int:
    """Continue an interrupted rollout: re-deploy and re-bake its current wave, or finish its rollback."""
    snap = _takeover(plan, store, force, "resume")
    assert snap.state is not None
    runner = Runner(root, cfg, plan, store, echo, snap.state, snap.commit)
    if [w["name"] for w in snap.state.get("waves", [])] != [w.name for w in plan.waves]:
        echo("the plan's waves changed since this rollout began: rolling back instead of resuming")
        return runner.roll_back({"reason": "plan changed during an interrupted rollout"})
    if snap.state["status"] != "running":
        echo(f"resuming the rollback of {runner.rev[:12]}")
        return runner.roll_back({"reason": snap.state.get("reason") or "resumed rollback"})
    echo(f"resuming {runner.rev[:12]} at wave {plan.waves[int(snap.state['wave'])].name}")
    runner.save(f"resume at wave {plan.waves[int(snap.state['wave'])].name}")
    return runner.run_waves()


def rollback(
    root: Path, cfg: Config, plan: Plan, store: RolloutStore, echo: Echo, force: bool = False
) -> int:
    """Roll back an interrupted (or failed-to-roll-back) rollout."""
    snap = _takeover(plan, store, force, "roll back")
    assert snap.state is not None
    runner = Runner(root, cfg, plan, store, echo, snap.state, snap.commit)
    if [w["name"] for w in snap.state.get("waves", [])] != [w.name for w in plan.waves]:
        raise EctError("the plan's waves changed since this rollout began: roll back by hand", 1)
    reason = snap.state.get("reason") if snap.state["status"] != "running" else ""
    rc = runner.roll_back({"reason": reason or "rolled back by hand"})
    return 0 if rc == 1 else rc  # rolled back as asked
