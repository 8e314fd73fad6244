"""What changed: the working tree, the index, a revision range, or explicit paths.

The hot paths (working tree, staged) read `git status`/`git diff` porcelain output
directly: one git process, no GitPython import (~50 ms), so a no-op hook stays fast.
Revision ranges use GitPython's commit diff, which also resolves renames.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from ect.errors import EctError

MODES = ("worktree", "staged", "all", "range", "paths")


@dataclass(frozen=True)
class Scope:
    """Which changes a loop run looks at."""

    mode: str = "worktree"
    rev_range: str | None = None
    paths: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Change:
    """One changed file, repo-relative posix path. status: A, M, D or R (old_path set)."""

    path: str
    status: str
    old_path: str | None = None

    @property
    def deleted(self) -> bool:
        return self.status == "D"


def _git(root: Path, *args: str) -> str:
    try:
        proc = subprocess.run(
            ["git", *args],
            cwd=root,
            capture_output=True,
            check=False,
            env={**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"},
        )
    except FileNotFoundError:
        raise EctError("git is not installed or not on PATH") from None
    if proc.returncode != 0:
        message = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise EctError(f"git {args[0]} failed: {message[-1] if message else proc.returncode}")
    return proc.stdout.decode("utf-8", "surrogateescape")


def _from_status(out: str) -> list[Change]:
    """Parse `git status --porcelain=v1 -z` output."""
    changes: list[Change] = []
    parts = out.split("\0")
    i = 0
    while i < len(parts):
        entry = parts[i]
        i += 1
        if len(entry) < 4:
            continue
        xy, path = entry[:2], entry[3:]
        if "R" in xy or "C" in xy:
            old = parts[i]
            i += 1
            changes.append(Change(path, "R", old) if "R" in xy else Change(path, "A"))
        elif "D" in xy and not os.path.lexists(path):
            changes.append(Change(path, "D"))
        elif xy in ("??", "A ", "AM", "AD") or xy[0] == "A":
            changes.append(Change(path, "A"))
        else:
            changes.append(Change(path, "M"))
    return changes


def _from_name_status(out: str) -> list[Change]:
    """Parse `git diff --name-status -z` output."""
    changes: list[Change] = []
    parts = out.split("\0")
    i = 0
    while i < len(parts) - 1:
        status = parts[i]
        i += 1
        if not status:
            continue
        if status[0] in "RC":
            old, new = parts[i], parts[i + 1]
            i += 2
            changes.append(Change(new, "R", old) if status[0] == "R" else Change(new, "A"))
        else:
            path = parts[i]
            i += 1
            changes.append(Change(path, status[0] if status[0] in "ADM" else "M"))
    return changes


def worktree_changes(root: Path) -> list[Change]:
    """Staged, unstaged and untracked files against HEAD."""
    out = _git(root, "status", "--porcelain=v1", "-z", "--untracked-files=all", "--no-renames")
    cwd = os.getcwd()
    try:
        os.chdir(root)  # porcelain paths are relative to the top; lexists() needs it
        return _from_status(out)
    finally:
        os.chdir(cwd)


def staged_changes(root: Path) -> list[Change]:
    """What the next commit would contain (the pre-commit case)."""
    return _from_name_status(_git(root, "diff", "--cached", "--name-status", "-z", "-M", "--no-ext-diff"))


def range_changes(root: Path, rev_range: str) -> list[Change]:
    """Files changed in `A..B` (or `A...B`: since their merge base), with renames."""
    import git  # GitPython: imported only for ranges

    base: git.Commit | None
    try:
        repo = git.Repo(root)
        if "..." in rev_range:
            a, b = rev_range.split("...", 1)
            head = repo.commit(b or "HEAD")
            bases = repo.merge_base(repo.commit(a or "HEAD"), head)
            if not bases:
                raise EctError(f"no merge base for range {rev_range!r}")
            base = repo.commit(bases[0])
        elif ".." in rev_range:
            a, b = rev_range.split("..", 1)
            base, head = repo.commit(a or "HEAD"), repo.commit(b or "HEAD")
        else:
            head = repo.commit(rev_range)
            base = head.parents[0] if head.parents else None
        diffs = base.diff(head, M=True) if base is not None else head.diff(git.NULL_TREE, R=True)
    except (git.BadName, ValueError, git.GitCommandError) as exc:
        raise EctError(f"bad revision range {rev_range!r}: {str(exc).strip().splitlines()[0]}") from None
    changes = []
    for d in diffs:
        a_path, b_path = d.a_path or "", d.b_path or ""
        kind = d.change_type
        if kind == "R":
            changes.append(Change(b_path, "R", a_path))
        elif kind == "D":
            changes.append(Change(a_path, "D"))
        elif kind == "A":
            changes.append(Change(b_path, "A"))
        else:
            changes.append(Change(b_path or a_path, "M"))
    return changes


def path_changes(root: Path, paths: tuple[str, ...]) -> list[Change]:
    """Explicit paths, treated as modified (or deleted when they no longer exist)."""
    changes = []
    for raw in paths:
        full = Path(os.path.abspath(raw))
        try:
            rel = full.relative_to(root).as_posix()
        except ValueError:
            raise EctError(f"path is outside the repository: {raw}") from None
        if full.is_dir():
            for sub in sorted(full.rglob("*")):
                if sub.is_file() and not any(p.startswith(".") for p in sub.relative_to(root).parts):
                    changes.append(Change(sub.relative_to(root).as_posix(), "M"))
        else:
            changes.append(Change(rel, "M" if full.exists() else "D"))
    return changes


def collect(root: Path, scope: Scope) -> list[Change]:
    """The changes in `scope`, deduplicated, in path order."""
    if scope.mode == "worktree":
        found = worktree_changes(root)
    elif scope.mode == "staged":
        found = staged_changes(root)
    elif scope.mode == "range":
        found = range_changes(root, scope.rev_range or "HEAD")
    elif scope.mode == "paths":
        found = path_changes(root, scope.paths)
    elif scope.mode == "all":
        found = []
    else:
        raise EctError(f"unknown change mode {scope.mode!r}")
    seen: dict[str, Change] = {}
    for change in found:
        seen[change.path] = change
    return [seen[p] for p in sorted(seen)]
