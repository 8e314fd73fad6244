"""`ect promote REV --to STAGE`: check the stage's gate, then fast-forward (and push) its branch."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from ect.review import records
from ect.review import store as store_mod
from ect.review.diff import base_for, compute
from ect.review.gate import GateResult, Trust, evaluate
from ect.review.gitcmd import ZERO_SHA, Git
from ect.review.policy import Policy, from_worktree
from ect.review.settings import Stage
from ect.review.store import Store

from ect import events
from ect.config import Config
from ect.errors import EctError

Echo = Callable[[str], None]


def configured_remote(git: Git, policy: Policy) -> str | None:
    name = policy.settings.review["remote"]
    return name if name and name in git.remotes() else None


def _sync(git: Git, remote: str | None, stages: tuple[Stage, ...]) -> None:
    """Pull review notes and the stage branches from the remote."""
    if remote is None:
        return
    # Patterns (a trailing `*`) so that a stage branch missing on the remote is no error: one fetch.
    specs = [f"+refs/heads/{s.branch}*:refs/remotes/{remote}/{s.branch}*" for s in stages]
    store_mod.pull(git, remote, specs)


def tip_reader(git: Git, remote: str | None) -> Callable[[str], str | None]:
    """Stage branch tips as they are now (one `for-each-ref`): the remote's when there is one."""
    prefix = f"refs/remotes/{remote}/" if remote is not None else "refs/heads/"
    out = git.out("for-each-ref", "--format=%(objectname) %(refname)", prefix)
    tips = {
        name[len(prefix) :]: sha for sha, name in (line.split(" ", 1) for line in out.splitlines() if line)
    }
    return tips.get


def check(root: Path, cfg: Config, rev: str, stage: str, *, sync: bool = True) -> GateResult:
    """Evaluate the gate without promoting (used by `ect promote --dry-run` and the benchmark)."""
    git = Git(root)
    policy = from_worktree(git, root, cfg)
    remote = configured_remote(git, policy)
    if sync:
        _sync(git, remote, policy.settings.stages)
    trust = Trust(policy, server_times=remote is not None)
    return evaluate(git, Store(git), policy, rev, stage, tip_reader(git, remote), trust=trust)


def promote(
    root: Path,
    cfg: Config,
    rev: str,
    stage_name: str,
    *,
    wait: bool = False,
    timeout: float = 600.0,
    dry_run: bool = False,
    echo: Echo = print,
) -> int:
    git = Git(root)
    policy = from_worktree(git, root, cfg)
    _, stage = policy.settings.stage(stage_name)
    head = git.rev(rev)
    remote = configured_remote(git, policy)
    me = (git.config("user.email") or "").lower()
    started = time.time()
    _sync(git, remote, policy.settings.stages)
    tip_of = tip_reader(git, remote)
    events.record(
        cfg.state_path,
        "promotion.attempted",
        source="review",
        commit_sha=head,
        author=me,
        stage=stage.name,
        wait=wait,
    )
    store = Store(git)
    trust = Trust(policy, server_times=remote is not None)  # bake time: the server's receive log
    result = evaluate(git, store, policy, head, stage.name, tip_of, trust=trust)
    _warn_problems(store, echo)
    shown: list[str] = []
    deadline = started + timeout
    while wait and not result.ok and time.time() < deadline:
        if result.unmet != shown:
            echo(
                f"waiting for {stage.name} gate of {head[:12]} (up to {max(0, deadline - time.time()):.0f}s):"
            )
            for item in result.unmet:
                echo(f"  - {item}")
            shown = result.unmet
        time.sleep(min(policy.settings.review["poll_seconds"], max(0.05, deadline - time.time())))
        _sync(git, remote, policy.settings.stages)
        store = Store(git)
        tip_of = tip_reader(git, remote)
        trust = Trust(policy, server_times=remote is not None)
        result = evaluate(git, store, policy, head, stage.name, tip_of, trust=trust)
    if result.already:
        echo(f"{stage.branch} already holds {head[:12]}: nothing to do")
        return 0
    if not result.ok:
        echo(f"refused: {head[:12]} cannot enter {stage.name}")
        for item in result.unmet:
            echo(f"  - {item}")
        events.record(
            cfg.state_path,
            "promotion.refused",
            source="review",
            commit_sha=head,
            author=me,
            stage=stage.name,
            reasons=result.unmet,
            waited_s=round(time.time() - started, 3),
        )
        return 1
    if dry_run:
        echo(f"ok: {head[:12]} may enter {stage.name}")
        return 0
    _advance(git, remote, stage, head, tip_of(stage.branch), echo)
    store.append(records.make("promotion", head, time.time(), stage=stage.name, by=me or "unknown"))
    if remote is not None:
        store_mod.push(git, remote)
    tip = tip_of(stage.branch)
    base = git.merge_base(tip, head) if tip and tip != head else None
    first = compute(git, base or base_for(git, policy.settings, head), head).first_commit_ts
    done = time.time()
    events.record(
        cfg.state_path,
        "promotion.done",
        ts=done,
        source="review",
        commit_sha=head,
        author=me,
        stage=stage.name,
        first_commit_ts=first,
        lead_time_s=round(done - first, 3) if first else None,
        waited_s=round(done - started, 3),
    )
    echo(f"promoted {head[:12]} to {stage.name} ({stage.branch})")
    from ect.rollout.api import run_rollout_for_promotion  # a stage with a rollout plan deploys in waves

    return run_rollout_for_promotion(root, stage.name, head, echo)


def _advance(git: Git, remote: str | None, stage: Stage, head: str, old: str | None, echo: Echo) -> None:
    """Push the stage branch (when there is a remote), then fast-forward the local one."""
    if remote is not None:
        store_mod.push(git, remote)
        proc = git.run("push", "--quiet", remote, f"{head}:refs/heads/{stage.branch}", check=False)
        if proc.returncode != 0:
            lines = [
                ln.removeprefix("remote:").strip()
                for ln in proc.stderr.decode("utf-8", "replace").splitlines()
                if ln.strip()
            ]
            raise EctError(f"{remote} refused the push of {stage.branch}: " + " / ".join(lines[-4:]), 1)
        git.run("update-ref", f"refs/remotes/{remote}/{stage.branch}", head)
    local = git.maybe_rev(f"refs/heads/{stage.branch}")
    current = git.run("symbolic-ref", "--quiet", "--short", "HEAD", check=False).stdout.decode().strip()
    if local is not None and not git.is_ancestor(local, head):
        echo(f"note: local branch {stage.branch} has diverged; left as is")
    elif current == stage.branch:
        git.run("merge", "--ff-only", "--quiet", head)
    else:
        git.run("update-ref", f"refs/heads/{stage.branch}", head, local or ZERO_SHA)


def _warn_problems(store: Store, echo: Echo) -> None:
    for problem in store.problems[:10]:
        echo(f"warning: {problem}")
