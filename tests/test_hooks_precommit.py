"""The real pre-commit CLI runs ect from a temporary hook repository (a copy of this checkout)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ect_testutil import GIT_ENV, git

ECT_SRC = Path(__file__).resolve().parent.parent


def _pre_commit() -> str | None:
    exe = Path(sys.executable).with_name("pre-commit")
    return str(exe) if exe.exists() else shutil.which("pre-commit")


def _hook_repo(dest: Path) -> Path:
    """A committed copy of the ect checkout (tracked and untracked, not ignored, files; no tests)."""
    out = (
        subprocess.run(
            ["git", "ls-files", "-z", "-co", "--exclude-standard"],
            cwd=ECT_SRC,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for rel in out:
        if not rel or rel.startswith("tests/") or not (ECT_SRC / rel).is_file():
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ECT_SRC / rel, target)
    git(dest, "init", "-q", "-b", "main")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "hook repo")
    return dest


@pytest.mark.slow
@pytest.mark.skipif(_pre_commit() is None, reason="pre-commit is not installed")
def test_try_repo_blocks_a_breaking_change_and_passes_a_good_one(make_repo, ran_log, tmp_path) -> None:
    hook_repo = _hook_repo(tmp_path / "ect-hooks")
    repo = make_repo()
    env = {**os.environ, **GIT_ENV, "PRE_COMMIT_HOME": str(tmp_path / "pc-home")}
    cmd = [str(_pre_commit()), "try-repo", str(hook_repo), "ect-check"]

    (repo / "acme/extra.py").write_text('def shout(s):\n    return s.upper() + "?"\n')
    git(repo, "add", "-A")
    proc = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, env=env, timeout=600, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAILED tests/test_extra.py::test_shout" in proc.stdout
    assert ran_log() == ["test_extra"]

    (repo / "acme/extra.py").write_text('def shout(s):\n    return s.upper() + "!"\n\nY = 1\n')
    git(repo, "add", "-A")
    proc = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, env=env, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Passed" in proc.stdout
    assert ran_log() == ["test_extra"]
