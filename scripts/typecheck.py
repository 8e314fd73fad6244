"""Run mypy over ect as it is installed: review/ and models/ as ect.review and ect.models.

The repository keeps review/ and models/ at the top (pyproject maps them into `ect` at build time),
which mypy cannot follow; this lays out a tree of symlinks in the installed shape and checks that.
Usage: python scripts/typecheck.py [mypy args...]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAPPED = {"review": "review", "models": "models"}  # ect.<name> -> repository folder


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="ect-typecheck-") as tmp:
        pkg = Path(tmp) / "ect"
        pkg.mkdir()
        for entry in (ROOT / "ect").iterdir():
            if entry.name != "__pycache__":
                (pkg / entry.name).symlink_to(entry)
        for name, folder in MAPPED.items():
            (pkg / name).symlink_to(ROOT / folder)
        cmd = [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            *sys.argv[1:],
            "ect",
        ]
        return subprocess.call(cmd, cwd=tmp)


if __name__ == "__main__":
    sys.exit(main())
