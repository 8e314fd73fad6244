"""The content a check must test: the index (`--staged`) or a commit (`--range`, pre-push).

When that content is the working tree's (the usual case) the loop runs in place. When they
differ, the content is checked out into a temporary directory outside the working tree
(`git checkout-index` from the index, or from a temporary index that `git read-tree` filled
with the commit) and the loop runs there. The copy gets a `.git` file pointing at the real
git directory, so git commands see the right files; files whose content is the same as in
the working tree keep its modification times, so the import-graph cache still applies.
Submodules are linked to the working tree's checkout when it is at the recorded commit and
unchanged, and checked out at that commit otherwise (`ect.submodules`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from ect.changes import Scope, range_ends
from ect.errors import EctError
from ect.submodules import GITLINK, TIMEOUT_S, SubmoduleError, check_out, matches_working_tree


def _git(root: Path, *args: str, env: dict[str, str] | None = None, ok: tuple[int, ...] = (0,)) -> bytes:
    proc = subprocess.run(
        ["git", *args],
        cwd=root,
        capture_output=True,
        check=False,
        env={**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C", **(env or {})},
    )
    if proc.returncode not in ok:
        lines = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise EctError(f"git {args[0]} failed: {lines[-1] if lines else proc.returncode}")
    return proc.stdout


def _differs_from_index(root: Path) -> tuple[bool, list[str]]:
    """(whether untracked files exist, tracked files whose working-tree content differs from the index)."""
    untracked = _git(
        root, "ls-files", "-z", "--others", "--exclude-standard", "--directory", "--no-empty-directory"
    )
    # a submodule checked out at another commit than the index records, or with changed files in it
    out = _git(root, "diff", "--name-only", "-z", "--no-ext-diff", "--ignore-submodules=untracked")
    return bool(untracked), [p for p in out.decode("utf-8", "surrogateescape").split("\0") if p]


def target_commit(root: Path, scope: Scope) -> str:
    """The commit a `range` scope checks (its newer end)."""
    return range_ends(root, scope.rev_range or "HEAD")[1]


@contextlib.contextmanager
def content_root(root: Path, scope: Scope) -> Iterator[Path | None]:
    """A temporary checkout of what `scope` checks, or None when the working tree already holds it."""
    if scope.mode not in ("staged", "range") and not (scope.mode == "all" and scope.rev_range):
        yield None  # `all` with a revision: the whole suite at that commit (a first push)
        return
    index_env: dict[str, str] = {}
    scratch: Path | None = None
    saved_index = os.environ.get("GIT_INDEX_FILE")
    try:
        if scope.mode == "staged":
            untracked, differing = _differs_from_index(root)
            if not untracked and not differing:
                yield None
                return
        else:
            commit = target_commit(root, scope)
            head = _git(root, "rev-parse", "--verify", "--quiet", "HEAD", ok=(0, 1)).decode().strip()
            clean = not _git(root, "status", "--porcelain=v1", "-z", "--untracked-files=all")
            if clean and head == commit:
                yield None
                return
            scratch = Path(tempfile.mkdtemp(prefix="ect-commit-"))
            index_env = {"GIT_INDEX_FILE": str(scratch / "index")}
            _git(root, "read-tree", commit, env=index_env)
            out = _git(root, "diff", "--name-only", "-z", "--no-ext-diff", "--ignore-submodules=all", commit)
            differing = [p for p in out.decode("utf-8", "surrogateescape").split("\0") if p]
        if scratch is None:
            scratch = Path(tempfile.mkdtemp(prefix="ect-staged-"))
        tree = scratch / "tree"
        tree.mkdir()
        _git(root, "checkout-index", "-a", f"--prefix={tree}/", env=index_env)
        gitdir = _git(root, "rev-parse", "--absolute-git-dir").decode().strip()
        (tree / ".git").write_text(f"gitdir: {gitdir}\n")
        _submodules(root, tree, index_env)
        _keep_mtimes(root, tree, set(differing), index_env)
        # git commands run in the copy must read this index (a hook's GIT_INDEX_FILE may be relative)
        os.environ["GIT_INDEX_FILE"] = index_env.get("GIT_INDEX_FILE") or _index_path(root)
        yield tree
    finally:
        if saved_index is None:
            os.environ.pop("GIT_INDEX_FILE", None)
        else:
            os.environ["GIT_INDEX_FILE"] = saved_index
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def _index_path(root: Path) -> str:
    """The absolute path of the index git uses here (`$GIT_INDEX_FILE` resolved, or the default)."""
    current = os.environ.get("GIT_INDEX_FILE")
    if current:
        return str(root / current) if not os.path.isabs(current) else current
    return _git(root, "rev-parse", "--path-format=absolute", "--git-path", "index").decode().strip()


def _entries(root: Path, env: dict[str, str]) -> Iterator[tuple[str, str, str]]:
    """(mode, object, path) of each index entry."""
    out = _git(root, "ls-files", "--stage", "-z", env=env).decode("utf-8", "surrogateescape")
    for entry in out.split("\0"):
        if entry:
            meta, _, path = entry.partition("\t")
            fields = meta.split(" ")
            yield fields[0], fields[1] if len(fields) > 1 else "", path


def _submodules(root: Path, tree: Path, env: dict[str, str]) -> None:
    """Submodules are not checked out by checkout-index. One whose working-tree checkout is at the
    recorded commit, unchanged, is linked to it (cheap, the usual case); any other is checked out
    at that commit from local data (`ect.submodules`). When that commit is not available locally,
    the working tree's checkout is linked, as a plain run would test it, with a note."""
    deadline = time.monotonic() + TIMEOUT_S
    for mode, commit, path in _entries(root, env):
        if mode != GITLINK:
            continue
        if not matches_working_tree(root, path, commit, deadline):
            try:
                check_out(root, tree, [(path, commit)], deadline)
                continue
            except SubmoduleError as exc:
                sys.stderr.write(f"ect: note: {exc}; testing what the working tree holds there\n")
        if (root / path).is_dir():
            target = tree / path
            target.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(OSError):
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target)
                os.symlink(root / path, target)


def _keep_mtimes(root: Path, tree: Path, differing: set[str], env: dict[str, str]) -> None:
    """Give unchanged Python files the working tree's mtimes (graph cache hits)."""
    for mode, _, path in _entries(root, env):
        if mode == GITLINK or not path.endswith(".py") or path in differing:
            continue
        with contextlib.suppress(OSError):
            st = os.stat(root / path)
            os.utime(tree / path, ns=(st.st_atime_ns, st.st_mtime_ns))
