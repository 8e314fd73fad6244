"""Entry points shared by the CLI and `ect promote`: find the plan and the state store, check the gate."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ect.config import Config, load_config
from ect.errors import EctError
from ect.rollout import runner
from ect.rollout.plan import Plan, load_plan
from ect.rollout.store import RolloutStore

Echo = Callable[[str], None]


def stage_name(cfg: Config, stage: str) -> str:
    """The stage's name (a stage may also be named by its branch)."""
    from ect.review.settings import parse

    _, found = parse(cfg.sections, cfg.source).stage(stage)
    return found.name


def setup(root: Path, cfg: Config, stage: str) -> tuple[Plan, RolloutStore]:
    """The stage's plan and its state store (on the review remote when there is one)."""
    from ect.review.gitcmd import Git
    from ect.review.settings import parse

    settings = parse(cfg.sections, cfg.source)
    _, found = settings.stage(stage)
    plan = load_plan(cfg, found.name)
    if plan is None:
        raise EctError(f"stage '{found.name}' has no rollout plan ([tool.ect.stages.{found.name}.rollout])")
    git = Git(root)
    remote = settings.review["remote"]
    return plan, RolloutStore(git, found.name, remote if remote and remote in git.remotes() else None)


def gate_problems(root: Path, cfg: Config, rev: str, stage: str) -> list[str]:
    """Why `rev` may not roll out to `stage`: empty when the stage's gate admits it (or the stage
    branch already holds it, which only a passed gate allows)."""
    from ect.review.promote import check

    result = check(root, cfg, rev, stage)
    return [] if result.ok else list(result.unmet)


def roll_out(root: Path, cfg: Config, rev: str, stage: str, echo: Echo = print) -> int:
    """`ect rollout REV --stage STAGE`: gate check, then the waves."""
    from ect.review.gitcmd import Git

    plan, store = setup(root, cfg, stage)
    sha = Git(root).rev(rev)
    problems = gate_problems(root, cfg, sha, plan.stage)
    if problems:
        echo(f"refused: {sha[:12]} has not passed the {plan.stage} gate")
        for item in problems:
            echo(f"  - {item}")
        return 1
    return runner.start(root, cfg, plan, store, sha, echo)


def run_rollout_for_promotion(root: Path, stage: str, rev: str, echo: Echo = print) -> int:
    """For `ect promote`: roll `rev` out to `stage` when the stage has a plan (0 when it has none).

    Returns 0 when every wave passed, 1 when it was refused or rolled back, 3 when a rollback
    failed (the stage stays locked), 130 when interrupted (after rolling back)."""
    cfg = load_config(root)
    if load_plan(cfg, stage_name(cfg, stage)) is None:
        return 0
    return roll_out(root, cfg, rev, stage, echo)
