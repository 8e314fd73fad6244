"""A scratch copy of the working tree where candidate fixes are tried without touching the real files."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SKIP_DIRS = {
    ".git",
    ".hg",
    ".svn",
    ".venv",
    "venv",
    ".tox",
    ".nox",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    "node_modules",
    ".ect",
    ".eggs",
}


def scratch_dir_for(root: Path, state_dir_name: str = ".ect") -> Path:
    """Inside the (git-ignored) state dir when it is in the repository, else under the temp dir."""
    state = root / state_dir_name
    if not Path(state_dir_name).is_absolute() and ".." not in Path(state_dir_name).parts:
        return state / "fix-scratch"
    digest = hashlib.blake2b(str(root.resolve()).encode(), digest_size=6).hexdigest()
    return Path(tempfile.gettempdir()) / f"ect-fix-{os.getuid()}" / f"{root.name}-{digest}"


class Scratch:
    """Mirror of `root` (minus VCS, caches and virtualenvs), kept in sync incrementally by mtime and size."""

    def __init__(self, root: Path, state_dir_name: str = ".ect") -> None:
        self.root = root.resolve()
        self.path = scratch_dir_for(self.root, state_dir_name)
        if self.path.parent.name == state_dir_name:
            from ect.state import ensure_state_dir

            ensure_state_dir(self.path.parent)  # creates the `.gitignore` that hides it from git
        self.skip = SKIP_DIRS | {state_dir_name}
        self._copied: dict[str, tuple[int, int]] = {}
        self._bump = 0

    def _walk(self, base: Path) -> Iterator[tuple[str, os.stat_result]]:
        for dirpath, dirnames, filenames in os.walk(base):
            here = Path(dirpath)
            dirnames[:] = [
                d
                for d in dirnames
                if d not in self.skip
                and not d.endswith(".egg-info")
                and not (here / d / "pyvenv.cfg").exists()
            ]
            for name in filenames:
                full = here / name
                try:
                    st = full.lstat()
                except OSError:
                    continue
                if full.is_symlink() or not full.is_file():
                    continue
                yield full.relative_to(base).as_posix(), st

    def sync(self, overrides: dict[str, str] | None = None) -> None:
        """Bring the copy up to date with the working tree (`overrides`: unsaved editor buffers)."""
        self.path.mkdir(parents=True, exist_ok=True)
        seen: set[str] = set()
        for rel, st in self._walk(self.root):
            seen.add(rel)
            sig = (st.st_mtime_ns, st.st_size)
            if self._copied.get(rel) == sig and not (overrides and rel in overrides):
                continue
            dest = self.path / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(self.root / rel, dest)
            self._copied[rel] = sig
        if not self._copied or len(seen) != len(self._copied):
            for rel, _ in list(self._walk(self.path)):
                if rel not in seen and not rel.startswith(".ect/"):
                    (self.path / rel).unlink(missing_ok=True)
                    self._copied.pop(rel, None)
        for rel, text in (overrides or {}).items():
            self.write(rel, text)
            self._copied.pop(rel, None)

    def write(self, rel: str, text: str) -> None:
        """Write a file with a fresh, unique mtime (so no stale bytecode is ever reused)."""
        dest = self.path / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(text, encoding="utf-8")
        self._bump += 1
        stamp = int(time.time()) + self._bump
        os.utime(dest, (stamp, stamp))

    def read(self, rel: str) -> str:
        return (self.path / rel).read_text(encoding="utf-8")

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Serialise users of the same scratch copy (the CLI and an editor's server)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
