"""Run mypy over ect as it is installed: review/ and models/ as ect.review and ect.models.

The repository keeps review/ and models/ at the top (pyproject maps them into `ect` at build time),
which mypy cannot follow; this lays out a tree of symlinks in the installed shape (at a fixed place
under .mypy_cache, so mypy's incremental cache is reused) and checks that.
Usage: python scripts/typecheck.py [mypy args...]
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAPPED = {"review": "review", "models": "models"}  # ect.<name> -> repository folder


def main() -> int:
    shape = ROOT / ".mypy_cache" / "installed-shape"
    shutil.rmtree(shape, ignore_errors=True)
    pkg = shape / "ect"
    pkg.mkdir(parents=True)
    for entry in (ROOT / "ect").iterdir():
        if entry.name != "__pycache__":
            (pkg / entry.name).symlink_to(entry)
    for name, folder in MAPPED.items():
        (pkg / name).symlink_to(ROOT / folder)
    config = ["--config-file", str(ROOT / "pyproject.toml"), "--cache-dir", str(ROOT / ".mypy_cache")]
    return subprocess.call([sys.executable, "-m", "mypy", *config, *sys.argv[1:], "ect"], cwd=shape)


if __name__ == "__main__":
    sys.exit(main())
