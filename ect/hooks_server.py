"""The server-side gate: install or check the `pre-receive` hook of a bare repository.

`ect hooks install --server` calls `install_server_hook(bare_repo)`; the hook runs
`python -m ect.review.pre_receive` with the interpreter ect is installed in.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

from ect.errors import EctError

MARKER = "# installed by ect: review promotion gate"


def _hooks_dir(bare_repo: Path) -> Path:
    try:
        proc = subprocess.run(
            ["git", "rev-parse", "--is-bare-repository", "--git-path", "hooks"],
            cwd=bare_repo,
            capture_output=True,
            text=True,
            check=False,
        )
    except (FileNotFoundError, NotADirectoryError):
        raise EctError(f"not a git repository: {bare_repo}") from None
    lines = proc.stdout.split()
    if proc.returncode != 0 or len(lines) < 2:
        raise EctError(f"not a git repository: {bare_repo}")
    if lines[0] != "true":
        raise EctError(
            f"{bare_repo} is not a bare repository (the server-side gate belongs in the central one)"
        )
    hooks = Path(lines[1])
    return hooks if hooks.is_absolute() else bare_repo / hooks


def hook_text(python: str | None = None) -> str:
    exe = shlex.quote(python or sys.executable)
    return f'#!/bin/sh\n{MARKER}\nexec {exe} -m ect.review.pre_receive "$@"\n'


def install_server_hook(bare_repo: Path, *, force: bool = False, python: str | None = None) -> Path:
    """Write `hooks/pre-receive` in `bare_repo`; refuse to overwrite a foreign hook unless `force`."""
    hook = _hooks_dir(bare_repo) / "pre-receive"
    if hook.exists() and MARKER not in hook.read_text(errors="replace") and not force:
        raise EctError(f"{hook} exists and was not installed by ect (use --force to replace it)")
    hook.parent.mkdir(parents=True, exist_ok=True)
    hook.write_text(hook_text(python))
    os.chmod(hook, 0o755)
    return hook


def check_server_hook(bare_repo: Path) -> str | None:
    """None when the gate hook is installed and runnable, else what is wrong."""
    hook = _hooks_dir(bare_repo) / "pre-receive"
    if not hook.exists():
        return f"{hook} is missing"
    text = hook.read_text(errors="replace")
    if MARKER not in text:
        return f"{hook} was not installed by ect"
    if not os.access(hook, os.X_OK):
        return f"{hook} is not executable"
    return None


def uninstall_server_hook(bare_repo: Path) -> bool:
    """Remove the hook if ect installed it; returns whether one was removed."""
    hook = _hooks_dir(bare_repo) / "pre-receive"
    if hook.exists() and MARKER in hook.read_text(errors="replace"):
        hook.unlink()
        return True
    return False
