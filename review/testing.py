"""Throw-away review scenarios for tests and benchmarks: a bare central repository,
clones with their own identities and SSH keys, and a tiny Python project to review.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

PYPROJECT = """\
[project]
name = "demo"
version = "0"

[tool.pytest.ini_options]
testpaths = ["tests"]

[tool.ect.review]
required_approvals = 1
poll_seconds = 0.2
{review}
"""
CORE = "def add(a, b):\n    return a + b\n"
TEST = "from pkg.core import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n"


@dataclass
class Scenario:
    root: Path
    central: Path
    clones: dict[str, Path] = field(default_factory=dict)
    keys: dict[str, Path] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    def git_proc(self, who: str, *args: str) -> subprocess.CompletedProcess[str]:
        """Run git in a clone (or in the directory `who`), whatever its exit status."""
        cwd = self.clones[who] if who in self.clones else Path(who)
        return subprocess.run(
            ["git", *args], cwd=cwd, env=self.env, capture_output=True, text=True, check=False
        )

    def git(self, who: str, *args: str, check: bool = True) -> str:
        proc = self.git_proc(who, *args)
        if check and proc.returncode != 0:
            raise RuntimeError(f"git {' '.join(args)} failed in {who}: {proc.stderr.strip()}")
        return proc.stdout.strip()

    def ect(self, who: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ect", *args],
            cwd=self.clones[who],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )

    def commit(self, who: str, files: dict[str, str], message: str) -> str:
        for rel, text in files.items():
            path = self.clones[who] / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        self.git(who, "add", "-A")
        self.git(who, "commit", "-q", "-m", message)
        return self.git(who, "rev-parse", "HEAD")


def isolated_env(home: Path) -> dict[str, str]:
    """An environment where no user or system git config leaks in."""
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "ECT_"))}
    env.update(HOME=str(home), GIT_CONFIG_NOSYSTEM="1", GIT_TERMINAL_PROMPT="0", XDG_CONFIG_HOME=str(home))
    return env


def keygen(path: Path, comment: str) -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return path


def make_scenario(
    root: Path,
    people: tuple[str, ...] = ("alice", "bob"),
    review: str = "",
    hook: bool = True,
    extra_files: dict[str, str] | None = None,
) -> Scenario:
    """Central bare repo (with the gate hook) holding `main`, and one clone per person."""
    from ect.hooks_server import install_server_hook

    env = isolated_env(root / "home")
    sc = Scenario(root, root / "central.git", env=env)
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(sc.central)], check=True, env=env)
    keydir = root / "keys"
    keydir.mkdir()
    signers = []
    for who in people:
        sc.keys[who] = keygen(keydir / who, f"{who}@example.com")
        pub = (keydir / f"{who}.pub").read_text().split()
        signers.append(f"{who}@example.com {pub[0]} {pub[1]}")
    (keydir / "allowed_signers").write_text("\n".join(signers) + "\n")
    for who in people:
        clone = root / who
        subprocess.run(
            ["git", "clone", "-q", str(sc.central), str(clone)], check=True, env=env, capture_output=True
        )
        sc.clones[who] = clone
        sc.git(who, "config", "user.email", f"{who}@example.com")
        sc.git(who, "config", "user.name", who.capitalize())
        sc.git(who, "checkout", "-q", "-B", "main")
    first = people[0]
    files = {
        "pyproject.toml": PYPROJECT.format(review=review),
        "allowed_signers": "\n".join(signers) + "\n",
        "pkg/__init__.py": "",
        "pkg/core.py": CORE,
        "tests/test_core.py": TEST,
        ".gitignore": ".ect/\n__pycache__/\n",
        **(extra_files or {}),
    }
    sc.commit(first, files, "initial")
    sc.git(first, "push", "-q", "origin", "main")
    for who in people[1:]:
        sc.git(who, "pull", "-q", "origin", "main")
    if hook:
        # the administrator's server-side copy of the allowed signers (clients cannot change it)
        subprocess.run(
            ["git", "config", "ect.allowedSignersFile", str(keydir / "allowed_signers")],
            cwd=sc.central,
            check=True,
            env=env,
        )
        install_server_hook(sc.central)
    return sc
