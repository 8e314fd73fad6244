"""Locating the git repository that ect works on."""

from __future__ import annotations

import os
from pathlib import Path

from ect.errors import NotARepoError


def find_root(start: Path | None = None) -> Path:
    """The top of the git work tree containing `start` (default: cwd).

    Walks up looking for `.git` (a directory, or a file in worktrees/submodules):
    no subprocess, so it costs microseconds on the hook path.
    """
    here = Path(os.path.abspath(start or os.getcwd()))
    for candidate in (here, *here.parents):
        if (candidate / ".git").exists():
            return candidate
    raise NotARepoError(f"not a git repository: {here}")
