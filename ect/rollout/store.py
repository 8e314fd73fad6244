"""Rollout state in git, where every machine sees it: `refs/ect/rollout/<stage>` in the central
repository (the review remote), as a chain of commits whose tree holds `state.json`.

Each write is a compare-and-swap: the new commit's parent is the state it was based on, and the
push to the central repository is a plain (fast-forward only) push, so two machines racing for a
stage cannot both win. Without a remote the local ref is the store (`update-ref` with the old value).
The commit chain doubles as the audit log of every step.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ect.errors import EctError
from ect.review.gitcmd import ZERO_SHA, Git

PREFIX = "refs/ect/rollout/"
MAX_STATE = 1 << 20
IDENTITY = {
    "GIT_AUTHOR_NAME": "ect rollout",
    "GIT_AUTHOR_EMAIL": "ect-rollout@localhost",
    "GIT_COMMITTER_NAME": "ect rollout",
    "GIT_COMMITTER_EMAIL": "ect-rollout@localhost",
}


class Conflict(EctError):
    """Someone else changed the stage's rollout state since we read it."""


@dataclass
class Snapshot:
    state: dict[str, Any] | None
    commit: str | None


class RolloutStore:
    def __init__(self, git: Git, stage: str, remote: str | None) -> None:
        self.git = git
        self.stage = stage
        self.remote = remote
        self.ref = PREFIX + stage
        if not git.ok("check-ref-format", self.ref):
            raise EctError(f"stage name '{stage}' cannot name a git ref")

    def _remote_sha(self) -> str | None:
        assert self.remote is not None
        proc = self.git.run("ls-remote", "--refs", self.remote, self.ref, check=False)
        if proc.returncode != 0:
            last = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["?"]
            raise EctError(f"cannot read rollout state from '{self.remote}': {last[0]}")
        for line in proc.stdout.decode().splitlines():
            sha, _, name = line.partition("\t")
            if name == self.ref:
                return sha
        return None

    def read(self) -> Snapshot:
        """The stage's current state (fetched from the central repository when there is one)."""
        if self.remote is not None:
            sha = self._remote_sha()
            local = self.git.maybe_rev(self.ref)
            if sha is None:
                if local is not None:
                    self.git.run("update-ref", "-d", self.ref)
                return Snapshot(None, None)
            if sha != local:
                self.git.run("fetch", "--quiet", "--no-tags", self.remote, f"+{self.ref}:{self.ref}")
        commit = self.git.maybe_rev(self.ref)
        if commit is None:
            return Snapshot(None, None)
        proc = self.git.run("cat-file", "blob", f"{commit}:state.json", check=False)
        if proc.returncode != 0 or len(proc.stdout) > MAX_STATE:
            raise EctError(f"{self.ref}: unreadable rollout state (commit {commit[:12]})")
        try:
            state = json.loads(proc.stdout)
        except ValueError:
            raise EctError(f"{self.ref}: corrupt rollout state (commit {commit[:12]})") from None
        if not isinstance(state, dict):
            raise EctError(f"{self.ref}: corrupt rollout state (commit {commit[:12]})")
        return Snapshot(state, commit)

    def write(self, state: dict[str, Any], message: str, base: str | None) -> str:
        """Store `state` on top of `base`; `Conflict` if the stage's state moved meanwhile."""
        blob = self.git.out(
            "hash-object", "-w", "--stdin", input=json.dumps(state, indent=1).encode()
        ).strip()
        tree = self.git.out("mktree", input=f"100644 blob {blob}\tstate.json\n".encode()).strip()
        parents = ["-p", base] if base else []
        commit = (
            self.git.run("commit-tree", tree, *parents, "-m", message, env=IDENTITY).stdout.decode().strip()
        )
        if self.remote is not None:
            proc = self.git.run(
                "push", "--quiet", "--no-verify", self.remote, f"{commit}:{self.ref}", check=False
            )
            if proc.returncode != 0:
                err = proc.stderr.decode("utf-8", "replace")
                if "rejected" in err or "fetch first" in err or "non-fast-forward" in err:
                    raise Conflict(f"the {self.stage} rollout state changed on '{self.remote}' meanwhile")
                last = err.strip().splitlines()[-1:] or ["?"]
                raise EctError(f"cannot store rollout state on '{self.remote}': {last[0]}")
        proc = self.git.run("update-ref", self.ref, commit, base or ZERO_SHA, check=False)
        if proc.returncode != 0:
            if self.remote is not None:  # the central copy is the truth: follow it
                self.git.run("update-ref", self.ref, commit)
            else:
                raise Conflict(f"the {self.stage} rollout state changed meanwhile")
        return commit

    def history(self, limit: int = 50) -> list[tuple[str, float, str]]:
        """(commit, time, message) of the latest state changes, newest first."""
        if self.git.maybe_rev(self.ref) is None:
            return []
        out = self.git.out("log", f"-{limit}", "--format=%H %ct %s", self.ref)
        rows = []
        for line in out.splitlines():
            sha, ts, msg = line.split(" ", 2)
            rows.append((sha, float(ts), msg))
        return rows
