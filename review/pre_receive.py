"""The server-side `pre-receive` hook: stage branches only move to commits that pass their gate.

Run as `python -m ect.review.pre_receive` in a bare repository (installed by
`ect hooks install --server`). It reads `<old> <new> <ref>` lines on stdin, judges
every stage-branch update with the notes stored in this repository, keeps
`refs/notes/ect/*` append-only, and exits 1 (rejecting the whole push) on any failure.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path

from ect.review.gate import evaluate
from ect.review.gitcmd import ZERO_SHA, Git
from ect.review.policy import from_commit
from ect.review.records import NOTES_PREFIX
from ect.review.store import Store

from ect.errors import EctError


def judge(git: Git, updates: Iterable[tuple[str, str, str]]) -> list[str]:
    """Reasons to reject the push (empty: accept)."""
    policy = from_commit(git, git.maybe_rev("HEAD"))
    store = Store(git)
    out = git.out("for-each-ref", "--format=%(objectname) %(refname)", "refs/heads/")
    heads = {
        name[len("refs/heads/") :]: sha for sha, name in (ln.split(" ", 1) for ln in out.splitlines() if ln)
    }
    errors: list[str] = []
    for old, new, ref in updates:
        if ref.startswith(NOTES_PREFIX):
            if old != ZERO_SHA and (new == ZERO_SHA or not git.is_ancestor(old, new)):
                errors.append(f"{ref}: review records are append-only (no deletion or force-push)")
            continue
        if not ref.startswith("refs/heads/"):
            continue
        found = policy.settings.stage_for_branch(ref[len("refs/heads/") :])
        if found is None:
            continue
        _, stage = found
        if new == ZERO_SHA:
            errors.append(f"{ref}: stage branches cannot be deleted")
            continue
        result = evaluate(git, store, policy, new, stage.name, heads.get)
        if not result.ok:
            errors.append(f"{ref}: {new[:12]} does not pass the '{stage.name}' gate:")
            errors += [f"  - {item}" for item in result.unmet]
    return errors


def main(argv: list[str] | None = None) -> int:
    git = Git(Path.cwd())
    updates = []
    for line in sys.stdin.read().splitlines():
        parts = line.split()
        if len(parts) == 3:
            updates.append((parts[0], parts[1], parts[2]))
    try:
        errors = judge(git, updates)
    except EctError as exc:
        errors = [f"ect gate error: {exc}"]
    except Exception as exc:  # a broken gate must fail closed, with a message, not a traceback
        errors = [f"ect gate error: {type(exc).__name__}: {exc}"]
    if errors:
        print("ect: push rejected by the promotion gate", file=sys.stderr)
        for error in errors:
            print(error, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
