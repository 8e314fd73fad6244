"""The local state directory (`.ect/` by default): created on demand, ignores itself."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ect.errors import StateDirError

IGNORE_ALL = "# created by ect: its local state never shows up as a change\n*\n"


def ensure_state_dir(path: Path) -> Path:
    """Create `path` with a `.gitignore` holding `*`, as pytest's cache does (a damaged one is rewritten).

    A path that is not a directory or cannot be created is a one-line `EctError`; a state
    directory that exists but cannot be written raises OSError (callers treat state as optional).
    """
    gitignore = path / ".gitignore"
    try:
        if "\n*\n" in "\n" + gitignore.read_text(encoding="utf-8", errors="replace"):
            return path
    except OSError:
        pass  # missing, damaged or unreadable: checked and rebuilt below
    if path.exists() and not path.is_dir():
        raise StateDirError(f"ect's state directory {path} is not a directory: remove it or set state_dir")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StateDirError(
            f"cannot create ect's state directory {path}: {exc.strerror} (set state_dir)"
        ) from None
    if gitignore.is_dir():
        return path
    tmp = gitignore.with_name(".gitignore.ect-tmp")
    tmp.write_text(IGNORE_ALL)
    os.replace(tmp, gitignore)
    return path


def state_writable(path: Path) -> bool:
    """Whether ect can keep state in `path` (a read-only one: runs still work, without state)."""
    try:
        ensure_state_dir(path)
    except StateDirError:
        raise
    except OSError:
        return False
    return os.access(path, os.W_OK)


def read_json(path: Path) -> Any | None:
    """Read a JSON state file; a missing or corrupt one reads as None (callers rebuild)."""
    import json

    try:
        with path.open("rb") as fh:
            return json.loads(fh.read())
    except (OSError, ValueError):
        return None


def write_json(path: Path, data: Any) -> None:
    """Atomically replace `path` with `data` as JSON (safe against concurrent readers)."""
    import contextlib
    import json
    import tempfile

    ensure_state_dir(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=path.name, dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(data, separators=(",", ":")))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
