"""Pessimistic rollout after the gate: waves (one box, a zone, a region, the rest), each baked under
real alarms (Prometheus queries, probe commands), every deployed wave rolled back on any alarm.

`run_rollout_for_promotion(root, stage, rev)` is the hook for `ect promote`.
"""

from __future__ import annotations

from pathlib import Path


def run_rollout_for_promotion(root: Path, stage: str, rev: str) -> int:
    """Roll `rev` out to `stage` if the stage has a plan; see `ect.rollout.api`."""
    from ect.rollout.api import run_rollout_for_promotion as run

    return run(root, stage, rev)
