"""The installed hooks check exactly what is committed and pushed, never the working tree."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from ect_testutil import git, git_proc, run_ect

from ect.hooks_cmd import install_hook

GOOD_EXTRA = 'def shout(s):\n    return s.upper() + "!"\n'


def _stage_then_restore(repo: Path, rel: str, staged: str) -> None:
    """Stage `staged` as the content of `rel`, then put the committed content back on disk."""
    path = repo / rel
    original = path.read_text()
    path.write_text(staged)
    git(repo, "add", rel)
    path.write_text(original)


def test_commit_of_a_staged_syntax_error_is_blocked_with_a_clean_working_tree(make_repo, ran_log) -> None:
    repo = make_repo()
    assert run_ect(repo, "hooks", "install").returncode == 0
    _stage_then_restore(repo, "acme/extra.py", 'def shout(s)\n    return s.upper() + "!"\n')
    assert git(repo, "diff", "--name-only") == "acme/extra.py\n"  # the disk holds the good version
    proc = git_proc(repo, "commit", "-q", "-m", "broken")
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "SyntaxError" in proc.stderr  # git shows a hook's output on stderr
    assert "--no-verify" in proc.stderr
    assert git(repo, "rev-list", "--count", "HEAD").strip() == "1"


def test_commit_of_a_staged_test_failure_is_blocked_and_a_staged_fix_passes(make_repo, ran_log) -> None:
    repo = make_repo()
    assert run_ect(repo, "hooks", "install").returncode == 0
    _stage_then_restore(repo, "acme/extra.py", 'def shout(s):\n    return s.upper() + "?"\n')
    proc = git_proc(repo, "commit", "-q", "-m", "breaks test_shout")
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "temporary checkout" in proc.stderr
    assert "FAILED tests/test_extra.py::test_shout" in proc.stderr
    assert ran_log() == ["test_extra"]
    assert git(repo, "rev-list", "--count", "HEAD").strip() == "1"
    # the opposite: broken on disk, good in the index -> the commit goes through
    (repo / "acme/extra.py").write_text(GOOD_EXTRA + "# reviewed\n")
    git(repo, "add", "acme/extra.py")
    (repo / "acme/extra.py").write_text("def shout(s)\n")
    proc = git_proc(repo, "commit", "-q", "-m", "fine")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert ran_log() == ["test_extra"]
    assert (repo / "acme/extra.py").read_text() == "def shout(s)\n"  # the working tree is untouched


def test_push_of_a_broken_commit_is_blocked_though_the_working_tree_is_fixed(
    make_repo, ran_log, tmp_path
) -> None:
    repo = make_repo()
    bare = tmp_path / "central.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    git(repo, "remote", "add", "origin", str(bare))
    git(repo, "push", "-q", "origin", "main")
    assert run_ect(repo, "hooks", "install", "--pre-push").returncode == 0
    (repo / ".git" / "hooks" / "pre-commit").unlink()  # commit freely; only the push is checked here
    (repo / "acme/extra.py").write_text('def shout(s):\n    return s.upper() + "?"\n')
    git(repo, "commit", "-qam", "break")
    (repo / "acme/extra.py").write_text(GOOD_EXTRA)  # fixed on disk, not committed
    proc = git_proc(repo, "push", "-q", "origin", "main")
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "push blocked" in proc.stderr
    assert "FAILED tests/test_extra.py::test_shout" in proc.stdout + proc.stderr
    assert git(bare, "rev-parse", "main") != git(repo, "rev-parse", "HEAD")
    # `ect check --range` (what CI and the hook run) agrees, and does not touch the working tree
    proc = run_ect(repo, "check", "--range", "HEAD~1..HEAD")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert (repo / "acme/extra.py").read_text() == GOOD_EXTRA
    assert git(repo, "status", "--porcelain") == " M acme/extra.py\n"


def test_a_moved_virtualenv_gives_one_line_with_the_fix(make_repo, tmp_path) -> None:
    repo = make_repo()
    hooks = repo / ".git" / "hooks"
    install_hook(hooks, "pre-commit", python=str(tmp_path / "gone" / "bin" / "python3"))
    (repo / "acme/extra.py").write_text(GOOD_EXTRA + "\n")
    git(repo, "add", "acme/extra.py")
    proc = git_proc(repo, "commit", "-q", "-m", "x")
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "ect hooks install" in lines[0] and "--no-verify" in lines[0]
    # a Python that exists but has no ect (a rebuilt virtualenv): one line too
    other = shutil.which("python3", path="/usr/bin:/bin")
    if other is not None and subprocess.run([other, "-c", "import ect"], capture_output=True).returncode:
        install_hook(hooks, "pre-commit", python=other)
        proc = git_proc(repo, "commit", "-q", "-m", "x")
        assert proc.returncode != 0
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert "not installed" in proc.stderr and "--no-verify" in proc.stderr
    proc = git_proc(repo, "commit", "-q", "--no-verify", "-m", "x")
    assert proc.returncode == 0
