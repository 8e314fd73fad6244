"""What changed: the working tree, the index, a revision range, or explicit paths.

The hot paths (working tree, staged) read `git status`/`git diff` porcelain output
directly: one git process, no GitPython import (~50 ms), so a no-op hook stays fast.
Revision ranges use `git diff --name-status -M` between the resolved commits.
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


GIT_TIMEOUT = 120  # seconds; a status on a huge tree with a cold cache takes a few


def _git(root: Path, *args: str) -> str:
    try:
        proc = subprocess.run(
            ["git", *args],
            cwd=root,
            capture_output=True,
            check=False,
            env={**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"},
            timeout=GIT_TIMEOUT,
        )
    except FileNotFoundError:
        raise EctError("git is not installed or not on PATH") from None
    except subprocess.TimeoutExpired:
        raise EctError(f"git {args[0]} did not finish within {GIT_TIMEOUT} s") from None
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


def resolve_commit(root: Path, rev: str, whole: str | None = None) -> str:
    """The commit `rev` names, or a one-line error (a shallow clone says how to get the history)."""
    what = f"bad revision range {whole!r}" if whole and whole != rev else f"bad revision {rev!r}"
    if not rev or rev.startswith("-"):
        raise EctError(what)
    proc = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}"],
        cwd=root,
        capture_output=True,
        check=False,
        env={**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"},
    )
    sha = proc.stdout.decode().strip()
    if proc.returncode == 0 and sha:
        return sha
    if _git(root, "rev-parse", "--is-shallow-repository").strip() == "true":
        raise EctError(
            f"{rev!r} is not in this shallow clone: fetch more history "
            "(git fetch --deepen=50, or git fetch --unshallow)"
        )
    if _git_ok(root, "rev-parse", "--verify", "--quiet", "HEAD") is False:
        raise EctError(f"{what}: this repository has no commits yet")
    raise EctError(f"{what}: no such commit {rev!r}")


def _git_ok(root: Path, *args: str) -> bool:
    try:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, check=False).returncode == 0
    except OSError:
        return False


def range_ends(root: Path, rev_range: str) -> tuple[str | None, str]:
    """(base, head) commits of `A..B`, `A...B` (base: their merge base) or a single commit `X`
    (base: its first parent; None for a root commit)."""
    if "..." in rev_range:
        a, b = rev_range.split("...", 1)
        head = resolve_commit(root, b or "HEAD", rev_range)
        other = resolve_commit(root, a or "HEAD", rev_range)
        proc = subprocess.run(["git", "merge-base", other, head], cwd=root, capture_output=True, check=False)
        if proc.returncode != 0 or not proc.stdout.strip():
            raise EctError(f"no merge base for range {rev_range!r}")
        return proc.stdout.decode().split()[0], head
    if ".." in rev_range:
        a, b = rev_range.split("..", 1)
        return resolve_commit(root, a or "HEAD", rev_range), resolve_commit(root, b or "HEAD", rev_range)
    head = resolve_commit(root, rev_range)
    parent = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{head}^1"], cwd=root, capture_output=True, check=False
    )
    if parent.returncode == 0:
        return parent.stdout.decode().strip(), head
    if "\nparent " in _git(root, "cat-file", "commit", head):  # it has a parent, but not here
        raise EctError(
            f"the parent of {rev_range!r} is not in this shallow clone: fetch more history "
            "(git fetch --deepen=50, or git fetch --unshallow)"
        )
    return None, head


def range_changes(root: Path, rev_range: str) -> list[Change]:
    """Files changed in `A..B` (or `A...B`: since their merge base), with renames."""
    base, head = range_ends(root, rev_range)
    if base is None:
        out = _git(root, "diff-tree", "--root", "-r", "--no-commit-id", "--name-status", "-z", "-M", head)
    else:
        out = _git(root, "diff", "--name-status", "-z", "-M", "--no-ext-diff", base, head)
    return _from_name_status(out)


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
        elif full.exists():
            changes.append(Change(rel, "M"))
        elif _known_to_git(root, rel):
            changes.append(Change(rel, "D"))  # a tracked file that was deleted
        else:
            raise EctError(f"no such file: {raw} (neither on disk nor known to git)")
    return changes


def _known_to_git(root: Path, rel: str) -> bool:
    if _git_ok(root, "cat-file", "-e", f"HEAD:{rel}"):
        return True
    return bool(_git(root, "ls-files", "-z", "--", rel).strip("\0"))


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
