"""`ect rollout REV [--stage S]`, `ect rollout status|resume|rollback [--stage S]`."""

from __future__ import annotations

import json
import time
from typing import Any

import click

from ect.config import load_config
from ect.repo import find_root

DEFAULT_STAGE = "production"


def _echo(text: str) -> None:
    click.echo(text)


class RolloutGroup(click.Group):
    """`ect rollout REV` is short for `ect rollout start REV`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        first = next((a for a in args if not a.startswith("-")), None)
        if args and first is not None and first not in self.commands and args[0] not in ("-h", "--help"):
            args = ["start", *args]
        return super().parse_args(ctx, args)


@click.group(cls=RolloutGroup)
def rollout() -> None:
    """Roll a revision out wave by wave under alarms; roll back on any alarm.

    \b
    ect rollout REV [--stage production]   run the stage's plan for REV
    ect rollout status [--stage S]         where the stage's rollout stands
    ect rollout resume [--stage S]         continue an interrupted rollout
    ect rollout rollback [--stage S]       roll an interrupted rollout back
    """


stage_option = click.option(
    "--stage", default=DEFAULT_STAGE, show_default=True, help="The stage to roll out to."
)


@rollout.command(hidden=True)
@click.argument("rev")
@stage_option
def start(rev: str, stage: str) -> int:
    """Run the stage's rollout plan for REV (REV must have passed the stage's gate)."""
    from ect.rollout.api import roll_out

    root = find_root()
    return roll_out(root, load_config(root), rev, stage, _echo)


@rollout.command()
@stage_option
@click.option("--force", is_flag=True, help="Take over even if the owning machine may still be alive.")
def resume(stage: str, force: bool) -> int:
    """Continue an interrupted rollout (re-deploys and re-bakes its current wave)."""
    from ect.rollout import runner
    from ect.rollout.api import setup

    root = find_root()
    cfg = load_config(root)
    plan, store = setup(root, cfg, stage)
    return runner.resume(root, cfg, plan, store, _echo, force)


@rollout.command("rollback")
@stage_option
@click.option("--force", is_flag=True, help="Take over even if the owning machine may still be alive.")
def rollback_cmd(stage: str, force: bool) -> int:
    """Roll back every deployed wave of an interrupted rollout (or retry a failed rollback)."""
    from ect.rollout import runner
    from ect.rollout.api import setup

    root = find_root()
    cfg = load_config(root)
    plan, store = setup(root, cfg, stage)
    return runner.rollback(root, cfg, plan, store, _echo, force)


def _ago(ts: Any) -> str:
    if not isinstance(ts, (int, float)):
        return "-"
    return f"{max(0.0, time.time() - ts):.0f}s ago"


@rollout.command()
@stage_option
@click.option("--json", "as_json", is_flag=True, help="Print the state as JSON.")
def status(stage: str, as_json: bool) -> int:
    """Where the stage's rollout stands. Exits 0 when idle or finished, 1 while unfinished."""
    from ect.rollout import runner
    from ect.rollout.api import setup

    root = find_root()
    cfg = load_config(root)
    plan, store = setup(root, cfg, stage)
    snap = store.read()
    state = snap.state
    if as_json:
        click.echo(json.dumps(state, indent=1))
        return 1 if state and state.get("status") in runner.ACTIVE else 0
    if not state:
        click.echo(f"{plan.stage}: no rollout yet")
        return 0
    status_ = str(state.get("status"))
    owner = state.get("owner") or {}
    if status_ in ("running", "rolling_back"):
        alive = runner.owner_alive(state, runner.stale_after(plan))
        status_ += (
            f" (pid {owner.get('pid')} on {owner.get('host')}, heartbeat {_ago(owner.get('heartbeat'))})"
            if alive
            else " INTERRUPTED: `ect rollout resume` or `ect rollout rollback`"
        )
    elif status_ == "rollback_failed":
        status_ += ": the stage is locked; fix the rollback, then `ect rollout rollback`"
    click.echo(f"{plan.stage}: {str(state.get('revision'))[:12]} {status_}")
    click.echo(f"  started {_ago(state.get('started'))}, previous {str(state.get('previous') or '-')[:12]}")
    if state.get("reason"):
        click.echo(f"  reason: {state['reason']}")
    for w in state.get("waves", []):
        extra = ""
        for step in ("deploy", "rollback"):
            cmd = w.get(step)
            if cmd:
                extra += f"  {step}: rc={cmd.get('rc')} {cmd.get('seconds')}s"
        targets = ", ".join(w.get("targets") or []) or f"{w.get('percent')}%"
        click.echo(f"  {w.get('name'):<14} {w.get('status'):<16} {targets}{extra}")
    if state.get("alarm"):
        a = state["alarm"]
        click.echo(f"  alarm: {a.get('alarm')} value={a.get('value')} {a.get('detail') or ''}".rstrip())
    return 1 if state.get("status") in runner.ACTIVE else 0
