"""The server-side gate: install or check the `pre-receive` and `post-receive` hooks of a bare
repository.

`ect hooks install --server` calls `install_server_hook(bare_repo)`; the hooks run
`python -m ect.review.pre_receive` with the interpreter ect is installed in. Installing
also pins the protected policy: `git config ect.policyRef refs/ect/policy` and, when that
ref does not exist yet, `refs/ect/policy` at the current HEAD commit (the administrator's
act of installing is what approves the first policy). Until a policy ref exists every
push is refused.
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


POLICY_REF = "refs/ect/policy"
HOOKS = {"pre-receive": "", "post-receive": " --post"}


def hook_text(python: str | None = None, extra: str = "") -> str:
    exe = shlex.quote(python or sys.executable)
    return f'#!/bin/sh\n{MARKER}\nexec {exe} -m ect.review.pre_receive{extra} "$@"\n'


def _git(bare_repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *args], cwd=bare_repo, capture_output=True, text=True, check=False, timeout=60
    )


def pin_policy(bare_repo: Path) -> str | None:
    """Set `ect.policyRef` (when unset) and create the policy ref at HEAD (when missing and HEAD is
    born); returns the policy commit, or None when there is none yet."""
    ref = _git(bare_repo, "config", "--get", "ect.policyRef").stdout.strip()
    if not ref:
        ref = POLICY_REF
        _git(bare_repo, "config", "ect.policyRef", ref)
    have = _git(bare_repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").stdout.strip()
    if have:
        return have
    head = _git(bare_repo, "rev-parse", "--verify", "--quiet", "HEAD^{commit}").stdout.strip()
    if not head:
        return None
    _git(bare_repo, "update-ref", ref, head, "")
    return head


def install_server_hook(bare_repo: Path, *, force: bool = False, python: str | None = None) -> Path:
    """Write `hooks/pre-receive` (and `post-receive`) in `bare_repo` and pin the policy; refuse to
    overwrite a foreign hook unless `force`."""
    hooks = _hooks_dir(bare_repo)
    for name in HOOKS:
        hook = hooks / name
        if hook.exists() and MARKER not in hook.read_text(errors="replace") and not force:
            raise EctError(f"{hook} exists and was not installed by ect (use --force to replace it)")
    hooks.mkdir(parents=True, exist_ok=True)
    for name, extra in HOOKS.items():
        hook = hooks / name
        hook.write_text(hook_text(python, extra))
        os.chmod(hook, 0o755)
    pin_policy(bare_repo)
    return hooks / "pre-receive"


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
    """Remove the hooks ect installed; returns whether one was removed."""
    removed = False
    for name in HOOKS:
        hook = _hooks_dir(bare_repo) / name
        if hook.exists() and MARKER in hook.read_text(errors="replace"):
            hook.unlink()
            removed = True
    return removed
