"""The few git facts training and the team model need: HEAD, files changed since a commit, distance."""

from __future__ import annotations

import subprocess
from pathlib import Path

GIT_TIMEOUT_S = 30


def _git(root: Path, *args: str) -> str | None:
    try:
        proc = subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, timeout=GIT_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None


def head_commit(root: Path) -> str | None:
    """The commit checked out in `root`, or None (no git, no commit yet)."""
    out = _git(root, "rev-parse", "--verify", "-q", "HEAD^{commit}")
    return out.strip() if out and out.strip() else None


def commits_behind(root: Path, commit: str) -> int | None:
    """How many commits HEAD is ahead of `commit`; None when `commit` is unknown here or not an ancestor
    of HEAD (a model trained on another branch's code does not match this one)."""
    if not commit or _git(root, "merge-base", "--is-ancestor", commit, "HEAD") is None:
        return None
    out = _git(root, "rev-list", "--count", f"{commit}..HEAD")
    try:
        return int(out.strip()) if out is not None else None
    except ValueError:
        return None


def changed_since(root: Path, commit: str) -> set[str] | None:
    """Repo-relative paths changed (committed, staged or not) since `commit`; None when it is unknown."""
    if not commit or _git(root, "cat-file", "-e", f"{commit}^{{commit}}") is None:
        return None
    out = _git(root, "diff", "--name-only", "--no-renames", "-z", commit, "--")
    if out is None:
        return None
    return {p for p in out.split("\0") if p}
