"""The rollout state machine through the real CLI, with real git (a central bare repository and two
clones), real deploy/rollback/probe commands and real signals: the lock a second machine sees, a probe
alarm, SIGKILL then resume or roll back, SIGTERM, and an alarm that cannot be evaluated."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from ect_testutil import GIT_ENV, git

STEP = """
import sys, time
with open("actions.log", "a") as fh:
    fh.write(" ".join(sys.argv[1:]) + "\\n")
"""
PROBE = """
import os, sys
sys.exit(1 if os.path.exists("ALARM") else 0)
"""


def plan(bake: float = 60.0, extra: str = "", alarm: str | None = None) -> str:
    py = sys.executable
    alarm = alarm or f'name = "canary"\ncommand = "{py} probe.py"'
    return textwrap.dedent(
        f"""
        [tool.ect.stages.staging]
        [tool.ect.stages.production]
        [tool.ect.stages.production.rollout]
        deploy = "{py} step.py deploy {{wave}} {{short}} {{targets}}"
        rollback = "{py} step.py rollback {{wave}} '{{previous}}' {{targets}}"
        poll_seconds = 0.2
        heartbeat_seconds = 1
        command_timeout_seconds = 20
        {extra}
        [[tool.ect.stages.production.rollout.waves]]
        name = "one-box"
        targets = ["b1"]
        bake_seconds = {bake}
        [[tool.ect.stages.production.rollout.waves]]
        name = "rest"
        targets = ["b2", "b3"]
        bake_seconds = 0.3
        [[tool.ect.stages.production.rollout.alarms]]
        """
    ) + textwrap.dedent(alarm)


def make(root: Path, text: str) -> str:
    """A repository whose production plan is `text`; staging holds HEAD (production's gate is open)."""
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "pyproject.toml").write_text(text)
    (root / "step.py").write_text(STEP)
    (root / "probe.py").write_text(PROBE)
    (root / ".gitignore").write_text(".ect/\nactions.log\nALARM\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "v1")
    git(root, "branch", "staging")
    return git(root, "rev-parse", "HEAD").strip()


def ect(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ect", *args],
        cwd=root,
        env={**os.environ, **GIT_ENV},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def start(root: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "ect", "rollout", *args],
        cwd=root,
        env={**os.environ, **GIT_ENV},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def state(root: Path, fetch_from: Path | None = None) -> dict[str, Any]:
    ref = "refs/ect/rollout/production"
    src = fetch_from or root
    out = subprocess.run(
        ["git", "cat-file", "blob", f"{ref}:state.json"], cwd=src, capture_output=True, text=True, check=False
    )
    return json.loads(out.stdout) if out.returncode == 0 else {}


def wait_baking(root: Path, proc: subprocess.Popen[str]) -> None:
    deadline = time.time() + 30
    while time.time() < deadline:
        waves = state(root).get("waves") or [{}]
        if waves[0].get("status") == "baking":
            return
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        time.sleep(0.1)
    raise AssertionError("the rollout never reached the bake of its first wave")


def actions(root: Path) -> list[str]:
    path = root / "actions.log"
    return path.read_text().splitlines() if path.exists() else []


@pytest.mark.slow
def test_lock_seen_from_a_second_machine_and_probe_alarm_rolls_back(tmp_path: Path) -> None:
    seed = tmp_path / "seed"
    rev = make(seed, plan())
    central = tmp_path / "central.git"
    git(tmp_path, "clone", "-q", "--bare", str(seed), str(central))
    a, b = tmp_path / "a", tmp_path / "b"
    for clone in (a, b):
        git(tmp_path, "clone", "-q", str(central), str(clone))
    proc = start(a, rev)
    try:
        wait_baking(central, proc)  # the state is in the central repository
        other = ect(b, "rollout", rev)
        assert other.returncode == 1
        assert "is in progress (running)" in other.stderr
        shown = ect(b, "rollout", "status")
        assert shown.returncode == 1 and "running (pid" in shown.stdout and "baking" in shown.stdout
        (a / "ALARM").write_text("")
        out, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 1, out
    assert "[one-box] ALARM canary" in out
    assert actions(a) == [f"deploy one-box {rev[:12]} b1", "rollback one-box  b1"]
    final = json.loads(ect(b, "rollout", "status", "--json").stdout)
    assert final["status"] == "rolled_back" and final["alarm"]["alarm"] == "canary"
    # the state's history is a commit chain in the central repository
    log = git(central, "log", "--format=%s", "refs/ect/rollout/production")
    assert "wave one-box: rolled_back" in log and "start:" in log


@pytest.mark.slow
def test_killed_rollout_is_found_then_rolled_back_or_resumed(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    rev = make(root, plan())
    for attempt in ("rollback", "resume"):
        (root / "actions.log").unlink(missing_ok=True)
        proc = start(root, rev)
        wait_baking(root, proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        if attempt == "rollback":
            shown = ect(root, "rollout", "status")
            assert shown.returncode == 1 and "INTERRUPTED" in shown.stdout, shown.stdout
            refused = ect(root, "rollout", rev)
            assert refused.returncode == 1 and "is interrupted" in refused.stderr
            done = ect(root, "rollout", "rollback")
            assert done.returncode == 0, done.stdout + done.stderr
            assert state(root)["status"] == "rolled_back"
            assert actions(root) == [f"deploy one-box {rev[:12]} b1", "rollback one-box  b1"]
        else:
            # the plan's bake time is shortened meanwhile: resume re-deploys and re-bakes the wave
            (root / "pyproject.toml").write_text(plan(bake=0.3))
            done = ect(root, "rollout", "resume")
            assert done.returncode == 0, done.stdout + done.stderr
            assert state(root)["status"] == "done"
            assert actions(root) == [
                f"deploy one-box {rev[:12]} b1",
                f"deploy one-box {rev[:12]} b1",
                f"deploy rest {rev[:12]} b2 b3",
            ]


def test_sigterm_rolls_every_deployed_wave_back(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    rev = make(root, plan())
    proc = start(root, rev)
    wait_baking(root, proc)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 130, out
    assert "interrupted (SIGTERM): rolling back" in out
    assert state(root)["status"] == "rolled_back"
    assert actions(root)[-1] == "rollback one-box  b1"


def test_alarm_that_cannot_be_evaluated_holds_then_rolls_back(tmp_path: Path) -> None:
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    root = tmp_path / "repo"
    alarm = 'name = "errors"\nquery = "sum(rate(errors_total[1m]))"\nabove = 0.1\n'
    rev = make(
        root,
        plan(
            bake=0.3, extra=f'prometheus = "http://127.0.0.1:{port}"\nhold_timeout_seconds = 1.5', alarm=alarm
        ),
    )
    done = ect(root, "rollout", rev)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "HELD" in done.stdout and "Prometheus unreachable" in done.stdout
    final = state(root)
    assert final["status"] == "rolled_back"
    assert "could not be evaluated" in final["reason"]
    assert [w["status"] for w in final["waves"]] == ["rolled_back", "pending"]


def test_refused_without_the_gate_and_bad_plan_is_one_line(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    rev = make(root, plan(bake=0.3))
    git(root, "commit", "-q", "--allow-empty", "-m", "v2")
    head = git(root, "rev-parse", "HEAD").strip()
    refused = ect(root, "rollout", head)
    assert refused.returncode == 1 and "has not passed the production gate" in refused.stdout
    assert "previous stage 'staging' does not hold" in refused.stdout
    assert not actions(root)
    (root / "pyproject.toml").write_text(plan().replace('targets = ["b1"]', 'percent = 10\ntargets = ["b1"]'))
    bad = ect(root, "rollout", rev)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert (
        bad.stderr.strip()
        == "ect: error: pyproject.toml [tool.ect]: wave 'one-box' needs either 'targets' or 'percent'"
    )
    missing = ect(root, "rollout", "status", "--stage", "staging")
    assert missing.returncode == 2 and "stage 'staging' has no rollout plan" in missing.stderr


@pytest.mark.parametrize("stage", ["production"])
def test_status_without_any_rollout(tmp_path: Path, stage: str) -> None:
    root = tmp_path / "repo"
    make(root, plan())
    shown = ect(root, "rollout", "status", "--stage", stage)
    assert shown.returncode == 0 and "no rollout yet" in shown.stdout


def test_state_writes_are_compare_and_swap_on_the_central_repository(tmp_path: Path) -> None:
    from ect.review.gitcmd import Git

    from ect.rollout.store import Conflict, RolloutStore

    seed = tmp_path / "seed"
    make(seed, plan())
    central = tmp_path / "central.git"
    git(tmp_path, "clone", "-q", "--bare", str(seed), str(central))
    stores = []
    for name in ("a", "b"):
        git(tmp_path, "clone", "-q", str(central), str(tmp_path / name))
        stores.append(RolloutStore(Git(tmp_path / name), "production", "origin"))
    a, b = stores
    assert a.read().state is None and b.read().state is None
    first = a.write({"status": "running", "n": 1}, "start", None)
    with pytest.raises(Conflict):  # b read before a wrote: its write must not win
        b.write({"status": "running", "n": 2}, "start", None)
    seen = b.read()
    assert seen.state == {"status": "running", "n": 1} and seen.commit == first
    b.write({"status": "done", "n": 3}, "done", seen.commit)
    with pytest.raises(Conflict):
        a.write({"status": "rolling_back"}, "late", first)
    assert a.read().state == {"status": "done", "n": 3}
    assert [m for _, _, m in a.history()] == ["done", "start"]


def test_promote_into_a_stage_with_a_plan_runs_the_rollout(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    rev = make(root, plan(bake=0.3))
    promoted = ect(root, "promote", rev, "--to", "production")
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    assert f"promoted {rev[:12]} to production" in promoted.stdout
    assert state(root)["status"] == "done"
    assert [a.split()[:2] for a in actions(root)] == [["deploy", "one-box"], ["deploy", "rest"]]

    (root / "ALARM").write_text("")  # the next promotion trips the canary at the first wave
    git(root, "commit", "-q", "--allow-empty", "-m", "v2")
    head = git(root, "rev-parse", "HEAD").strip()
    git(root, "branch", "-f", "staging", head)
    refused = ect(root, "promote", head, "--to", "production")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert state(root)["status"] == "rolled_back"
    assert actions(root)[-1].startswith("rollback one-box")
