"""The local state directory (`.ect/` by default): created on demand, ignores itself."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def ensure_state_dir(path: Path) -> Path:
    """Create `path` with a `.gitignore` holding `*`, as pytest's cache does."""
    gitignore = path / ".gitignore"
    if not gitignore.exists():
        path.mkdir(parents=True, exist_ok=True)
        gitignore.write_text("# created by ect: its local state never shows up as a change\n*\n")
    return path


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
            json.dump(data, fh, separators=(",", ":"))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
