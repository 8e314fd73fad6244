"""A thin, fast runner for git plumbing (one subprocess per call, no GitPython import).

The gate must answer in well under 200 ms and runs inside a server-side hook, so the
review code talks to git through plumbing commands: notes, patch-id, merge-base and
refspec pushes have no GitPython API anyway.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from ect.errors import EctError

ZERO_SHA = "0" * 40


class GitError(EctError):
    """A git command failed; the message is git's last stderr line."""


class Git:
    """Run git in one repository (work tree or bare)."""

    def __init__(self, path: Path, env: dict[str, str] | None = None) -> None:
        self.path = path
        self.env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C", **(env or {})}
        self._remotes: list[str] | None = None
        self._patch_ids: dict[tuple[str, str], str] = {}

    def run(
        self, *args: str, input: bytes | None = None, check: bool = True, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        try:
            proc = subprocess.run(
                ["git", *args],
                cwd=self.path,
                input=input,
                capture_output=True,
                check=False,
                env={**self.env, **env} if env else self.env,
            )
        except FileNotFoundError:
            raise EctError("git is not installed or not on PATH") from None
        if check and proc.returncode != 0:
            lines = proc.stderr.decode("utf-8", "replace").strip().splitlines()
            raise GitError(f"git {args[0]} failed: {lines[-1] if lines else f'exit {proc.returncode}'}")
        return proc

    def out(self, *args: str, input: bytes | None = None) -> str:
        return self.run(*args, input=input).stdout.decode("utf-8", "surrogateescape")

    def ok(self, *args: str) -> bool:
        return self.run(*args, check=False).returncode == 0

    def rev(self, rev: str) -> str:
        """Full sha of a commit-ish; a clear error for an unknown one."""
        proc = self.run("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", check=False)
        if proc.returncode != 0:
            raise EctError(f"unknown revision: {rev}")
        return proc.stdout.decode().strip()

    def maybe_rev(self, rev: str) -> str | None:
        proc = self.run("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", check=False)
        return proc.stdout.decode().strip() if proc.returncode == 0 else None

    def tree(self, commit: str) -> str:
        return self.out("rev-parse", f"{commit}^{{tree}}").strip()

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        return self.ok("merge-base", "--is-ancestor", ancestor, descendant)

    def merge_base(self, a: str, b: str) -> str | None:
        proc = self.run("merge-base", a, b, check=False)
        return proc.stdout.decode().strip() or None if proc.returncode == 0 else None

    def rev_list(self, *args: str) -> list[str]:
        return self.out("rev-list", *args).split()

    def show_file(self, commit: str, path: str) -> bytes | None:
        proc = self.run("cat-file", "blob", f"{commit}:{path}", check=False)
        return proc.stdout if proc.returncode == 0 else None

    def config(self, key: str) -> str | None:
        proc = self.run("config", "--get", key, check=False)
        value = proc.stdout.decode("utf-8", "replace").strip()
        return value or None

    def remotes(self) -> list[str]:
        if self._remotes is None:
            self._remotes = self.out("remote").split()
        return self._remotes

    def is_bare(self) -> bool:
        return self.out("rev-parse", "--is-bare-repository").strip() == "true"

    def patch_id(self, base: str, head: str) -> str:
        """`git patch-id --verbatim` of the whole change base..head (empty string for no diff):
        whitespace counts, so a re-indented line is a different change."""
        if (base, head) in self._patch_ids:
            return self._patch_ids[(base, head)]
        self._patch_ids[(base, head)] = pid = self._patch_id(base, head)
        return pid

    def _patch_id(self, base: str, head: str) -> str:
        diff = self.run("diff", "--no-color", "--no-ext-diff", "--full-index", base, head).stdout
        if not diff:
            return ""
        out = self.run("patch-id", "--verbatim", input=diff).stdout.decode().split()
        return out[0] if out else ""

    def sizes(self, objects: Sequence[str]) -> dict[str, int]:
        """Object sizes with one `git cat-file --batch-check` (missing objects left out)."""
        if not objects:
            return {}
        raw = self.run("cat-file", "--batch-check", input="".join(f"{o}\n" for o in objects).encode())
        out: dict[str, int] = {}
        for name, line in zip(objects, raw.stdout.decode().splitlines(), strict=False):
            parts = line.split()
            if len(parts) == 3 and parts[2].isdigit():
                out[name] = int(parts[2])
        return out

    def cat_batch(self, objects: Sequence[str]) -> dict[str, bytes]:
        """Read many blobs with one `git cat-file --batch`."""
        if not objects:
            return {}
        raw = self.run("cat-file", "--batch", input="".join(f"{o}\n" for o in objects).encode()).stdout
        result: dict[str, bytes] = {}
        pos = 0
        for name in objects:
            eol = raw.index(b"\n", pos)
            header = raw[pos:eol].decode().split()
            pos = eol + 1
            if len(header) < 3 or header[1] == "missing":
                continue
            size = int(header[2])
            result[name] = raw[pos : pos + size]
            pos += size + 1
        return result
