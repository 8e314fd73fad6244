"""Plain git hooks: install, chain, core.hooksPath, uninstall, real commits and pushes."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from ect_testutil import GIT_ENV, git, git_proc, run_ect


def _break_extra(repo: Path) -> None:
    (repo / "acme/extra.py").write_text('def shout(s):\n    return s.upper() + "?"\n')
    git(repo, "add", "acme/extra.py")


def test_install_blocks_a_breaking_commit_and_lets_a_good_one_through(make_repo, ran_log) -> None:
    repo = make_repo()
    proc = run_ect(repo, "hooks", "install")
    assert proc.returncode == 0, proc.stderr
    hooks = repo / ".git" / "hooks"
    assert os.access(hooks / "pre-commit", os.X_OK) and os.access(hooks / "post-commit", os.X_OK)
    assert not (hooks / "pre-push").exists()

    _break_extra(repo)
    proc = git_proc(repo, "commit", "-q", "-m", "break")
    assert proc.returncode != 0, "a commit that breaks a test must be blocked"
    assert "FAILED" in proc.stdout + proc.stderr
    assert ran_log() == ["test_extra"]
    assert git(repo, "rev-list", "--count", "HEAD").strip() == "1"

    git(repo, "checkout", "HEAD", "--", "acme/extra.py")
    (repo / "acme/extra.py").write_text('def shout(s):\n    return s.upper() + "!"\n\nX = 1\n')
    git(repo, "add", "acme/extra.py")
    proc = git_proc(repo, "commit", "-q", "-m", "fine")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ect: error" not in proc.stdout + proc.stderr  # post-commit is silent whatever happens
    assert git(repo, "rev-list", "--count", "HEAD").strip() == "2"


def test_existing_hook_is_chained_and_restored(make_repo, ran_log) -> None:
    repo = make_repo()
    hooks = repo / ".git" / "hooks"
    marker = repo / "user-hook-ran"
    original = f"#!/bin/sh\necho ran > {marker}\nexit 0\n"
    (hooks / "pre-commit").write_text(original)
    (hooks / "pre-commit").chmod(0o755)

    assert run_ect(repo, "hooks", "install").returncode == 0
    assert (hooks / "pre-commit.pre-ect").read_text() == original
    (repo / "acme/extra.py").write_text('def shout(s):\n    return s.upper() + "!"\n# note\n')
    git(repo, "add", "-A")
    proc = git_proc(repo, "commit", "-q", "-m", "ok")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert marker.exists(), "the user's own hook must still run"
    assert ran_log() == ["test_extra"]

    # a failing chained hook blocks the commit before ect runs
    (hooks / "pre-commit.pre-ect").write_text("#!/bin/sh\nexit 3\n")
    (repo / "acme/extra.py").write_text('def shout(s):\n    return s.upper() + "!"\n# note 2\n')
    git(repo, "add", "-A")
    assert git_proc(repo, "commit", "-q", "-m", "no").returncode != 0
    assert ran_log() == []
    (hooks / "pre-commit.pre-ect").write_text(original)

    # installing twice does not chain ect to itself
    assert run_ect(repo, "hooks", "install").returncode == 0
    assert (hooks / "pre-commit.pre-ect").read_text() == original

    proc = run_ect(repo, "hooks", "uninstall")
    assert proc.returncode == 0, proc.stderr
    assert "previous hook restored" in proc.stdout
    assert (hooks / "pre-commit").read_text() == original
    assert not (hooks / "pre-commit.pre-ect").exists()
    assert not (hooks / "post-commit").exists()
    assert "no ect hooks" in run_ect(repo, "hooks", "uninstall").stdout  # second time: nothing to do
    assert "pre-commit: other" in run_ect(repo, "hooks", "status").stdout


def test_core_hooks_path_is_respected(make_repo, ran_log) -> None:
    repo = make_repo()
    git(repo, "config", "core.hooksPath", "githooks")
    assert run_ect(repo, "hooks", "install").returncode == 0
    assert (repo / "githooks" / "pre-commit").is_file()
    assert not (repo / ".git" / "hooks" / "pre-commit").exists()
    _break_extra(repo)
    assert git_proc(repo, "commit", "-q", "-m", "break").returncode != 0
    assert ran_log() == ["test_extra"]
    assert run_ect(repo, "hooks", "uninstall").returncode == 0
    assert not (repo / "githooks" / "pre-commit").exists()


def test_pre_push_blocks_a_breaking_push_into_a_bare_repository(make_repo, ran_log, tmp_path) -> None:
    repo = make_repo()
    bare = tmp_path / "central.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    git(repo, "remote", "add", "origin", str(bare))
    git(repo, "push", "-q", "origin", "main")
    assert run_ect(repo, "hooks", "install", "--pre-push").returncode == 0
    hooks = repo / ".git" / "hooks"
    (hooks / "pre-commit").unlink()  # commit freely; only the push is checked here

    (repo / "acme/util.py").write_text((repo / "acme/util.py").read_text() + "\nY = 2\n")
    git(repo, "commit", "-qam", "fine")
    proc = subprocess.run(
        ["git", "push", "-q", "origin", "main"],
        cwd=repo,
        capture_output=True,
        text=True,
        env={**os.environ, **GIT_ENV},
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert ran_log() == ["test_util"]

    _break_extra(repo)
    git(repo, "commit", "-qm", "break")
    proc = subprocess.run(
        ["git", "push", "-q", "origin", "main"],
        cwd=repo,
        capture_output=True,
        text=True,
        env={**os.environ, **GIT_ENV},
        check=False,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "push blocked" in proc.stderr
    assert ran_log() == ["test_extra"]
    assert git(bare, "rev-parse", "main").strip() != git(repo, "rev-parse", "HEAD").strip()

    # a new branch: its commits not on the remote are checked
    git(repo, "checkout", "-q", "-b", "topic")
    proc = subprocess.run(
        ["git", "push", "-q", "origin", "topic"],
        cwd=repo,
        capture_output=True,
        text=True,
        env={**os.environ, **GIT_ENV},
        check=False,
        timeout=120,
    )
    assert proc.returncode != 0
    assert ran_log() == ["test_extra"]


def test_server_option_installs_the_gate_in_a_bare_repository(tmp_path) -> None:
    bare = tmp_path / "central.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    proc = run_ect(tmp_path, "hooks", "install", "--server", str(bare))
    assert proc.returncode == 0, proc.stderr
    assert os.access(bare / "hooks" / "pre-receive", os.X_OK)


def test_outside_a_repository_is_a_one_line_error(tmp_path) -> None:
    proc = run_ect(tmp_path, "hooks", "install")
    assert proc.returncode == 2
    assert proc.stderr.startswith("ect: error:") and "Traceback" not in proc.stderr
