"""The server-side hooks: stage branches only move to commits that pass their gate.

`python -m ect.review.pre_receive` (installed as `pre-receive` by `ect hooks install
--server`) reads `<old> <new> <ref>` lines on stdin and rejects the whole push (exit 1) when
any update breaks a rule:
  - the policy comes from the protected policy ref (`git config ect.policyRef`); none, or an
    unreadable one: every push touching a stage branch, the policy or review notes fails;
  - stage branches are never deleted, only move forward, and only to commits that pass the
    stage's gate (judged with the notes as they were before this push);
  - no other ref (tag, branch, anything under refs/) may carry a stage's name;
  - `refs/notes/ect/*` are append-only by content (every record of the old notes is still
    in the new) and no note is over MAX_NOTE_BYTES;
  - `refs/ect/*` and the server's own `refs/notes/ect-server/*` cannot be pushed, except the
    policy ref, through its own gate (maintainers' signed approvals).
`python -m ect.review.pre_receive --post` (the `post-receive` hook) records, with the
server's clock, when each stage branch received which commit (`refs/notes/ect-server/log`);
bake times are measured from those records only.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from ect.review import records
from ect.review.gate import Trust, evaluate, evaluate_policy_update
from ect.review.gitcmd import ZERO_SHA, Git
from ect.review.policy import Policy, from_commit, from_server, policy_ref
from ect.review.settings import Settings
from ect.review.store import Store, list_notes

from ect.errors import EctError

PUSHER_VARS = ("ECT_PUSHER", "GL_USERNAME", "GITEA_PUSHER_EMAIL", "GITEA_PUSHER_NAME", "REMOTE_USER")
MAX_UPDATES = 1000


def pusher_identities(settings: Settings, environ: dict[str, str]) -> frozenset[str]:
    """Who is pushing, as the SSH/HTTP front end tells the hook (names mapped by `review.users`)."""
    out: set[str] = set()
    for var in PUSHER_VARS:
        value = environ.get(var, "").strip()
        if not value:
            continue
        out.add(value)
        out.update(settings.review["users"].get(value, []))
        out.update(settings.review["users"].get("@" + value, []))
    return frozenset(out)


def _shadows(ref: str, settings: Settings) -> str | None:
    """The stage `ref` would shadow (a tag or other ref spelled like a stage or its branch)."""
    if ref in {f"refs/heads/{s.branch}" for s in settings.stages}:
        return None
    short = ref
    for prefix in ("refs/heads/", "refs/tags/", "refs/remotes/", "refs/"):
        if ref.startswith(prefix):
            short = ref[len(prefix) :]
            break
    remote = ref.startswith("refs/remotes/")
    for stage in settings.stages:
        for name in (stage.name, stage.branch):
            if short == name or (remote and short.endswith("/" + name)):
                return stage.name
    return None


def _notes_append_only(git: Git, ref: str, old: str, new: str) -> list[str]:
    """Every record (line) of every note in `old` is still in that commit's note in `new`."""
    if new == ZERO_SHA:
        return [f"{ref}: review records are append-only (the notes ref cannot be deleted)"]
    if git.out("cat-file", "-t", new).strip() != "commit":
        return [f"{ref}: a notes ref must point to a commit"]
    errors: list[str] = []
    sizes_problems: list[str] = []
    new_notes = dict((c, b) for b, c in list_notes(git, new, sizes_problems))
    if sizes_problems:
        errors.append(f"{ref}: a note is over {records.MAX_NOTE_BYTES} bytes")
    if old == ZERO_SHA:
        return errors
    old_notes = dict((c, b) for b, c in list_notes(git, old))
    changed = [(c, b, new_notes.get(c)) for c, b in old_notes.items() if new_notes.get(c) != b]
    if not changed:
        return errors
    blobs = git.cat_batch(sorted({b for _, ob, nb in changed for b in (ob, nb) if b}))
    for commit, ob, nb in changed:
        if nb is None:
            errors.append(f"{ref}: the note on {commit[:12]} was removed (records are append-only)")
            continue
        kept = set(blobs.get(nb, b"").splitlines())
        lost = [ln for ln in blobs.get(ob, b"").splitlines() if ln.strip() and ln not in kept]
        if lost:
            errors.append(
                f"{ref}: {len(lost)} record(s) on {commit[:12]} removed or edited (records are append-only)"
            )
    return errors


def judge(
    git: Git, updates: Iterable[tuple[str, str, str]], environ: dict[str, str] | None = None
) -> list[str]:
    """Reasons to reject the push (empty: accept)."""
    updates = list(updates)
    environ = dict(os.environ) if environ is None else environ
    if len(updates) > MAX_UPDATES:
        return [f"more than {MAX_UPDATES} ref updates in one push"]
    pref = policy_ref(git)
    try:
        policy: Policy | None = from_server(git)
    except EctError as exc:
        policy, failure = None, str(exc)
    if policy is None:
        return [f"every push is refused until the policy is fixed: {failure}"]
    errors: list[str] = []
    settings = policy.settings
    trust = Trust(policy, pusher_identities(settings, environ), server_times=True, server_only=True)
    store = Store(git)
    out = git.out("for-each-ref", "--format=%(objectname) %(refname)", "refs/heads/")
    heads = {
        name[len("refs/heads/") :]: sha for sha, name in (ln.split(" ", 1) for ln in out.splitlines() if ln)
    }
    for old, new, ref in updates:
        if ref.startswith(records.SERVER_PREFIX):
            errors.append(f"{ref}: written by the server only")
            continue
        if ref.startswith(records.NOTES_PREFIX):
            if old != ZERO_SHA and new != ZERO_SHA and not git.is_ancestor(old, new):
                errors.append(f"{ref}: review records are append-only (no force-push)")
                continue
            errors += _notes_append_only(git, ref, old, new)
            continue
        if ref.startswith("refs/ect/"):
            if ref != pref:
                errors.append(f"{ref}: refs/ect/ belongs to the server")
            elif old == ZERO_SHA or new == ZERO_SHA:
                errors.append(f"{ref}: the policy ref is created and deleted on the server only")
            else:
                errors += _policy_update(git, store, trust, ref, old, new)
            continue
        shadowed = _shadows(ref, settings) if new != ZERO_SHA else None
        if shadowed is not None:
            errors.append(f"{ref}: would shadow the stage '{shadowed}' (stage names are reserved)")
            continue
        if not ref.startswith("refs/heads/"):
            continue
        found = settings.stage_for_branch(ref[len("refs/heads/") :])
        if found is None:
            continue
        _, stage = found
        if new == ZERO_SHA:
            errors.append(f"{ref}: stage branches cannot be deleted")
            continue
        if old != ZERO_SHA and not git.is_ancestor(old, new):
            errors.append(f"{ref}: stage branches only move forward ({new[:12]} does not contain {old[:12]})")
            continue
        result = evaluate(git, store, policy, new, stage.name, heads.get, trust=trust, mainline=policy.commit)
        if not result.ok:
            errors.append(f"{ref}: {new[:12]} does not pass the '{stage.name}' gate:")
            errors += [f"  - {item}" for item in result.unmet]
    for problem in store.problems[:5]:
        print(f"ect: warning: {problem}", file=sys.stderr)
    return errors


def _policy_update(git: Git, store: Store, trust: Trust, ref: str, old: str, new: str) -> list[str]:
    try:
        proposed = from_commit(git, new)
    except EctError as exc:
        return [f"{ref}: the proposed policy is unreadable: {exc}"]
    if not proposed.signers:
        return [f"{ref}: the proposed policy has no allowed signers"]
    return [f"{ref}: {why}" for why in evaluate_policy_update(git, store, trust, old, new)]


def record_received(git: Git, updates: Iterable[tuple[str, str, str]], now: float | None = None) -> int:
    """Post-receive: append a `received` record (server time) for every stage-branch update."""
    try:
        settings = from_server(git).settings
    except EctError:
        return 0
    env = {
        "GIT_AUTHOR_NAME": "ect-server",
        "GIT_AUTHOR_EMAIL": "ect-server@localhost",
        "GIT_COMMITTER_NAME": "ect-server",
        "GIT_COMMITTER_EMAIL": "ect-server@localhost",
    }
    count = 0
    for old, new, ref in updates:
        found = (
            settings.stage_for_branch(ref[len("refs/heads/") :]) if ref.startswith("refs/heads/") else None
        )
        if found is None or new == ZERO_SHA:
            continue
        data = records.make("received", new, now or time.time(), stage=found[1].name, ref=ref, old=old)
        note = git.run("notes", f"--ref={records.SERVER_LOG}", "show", new, check=False)
        text = note.stdout.decode("utf-8", "replace") if note.returncode == 0 else ""
        text = (text if not text or text.endswith("\n") else text + "\n") + records.dumps(data) + "\n"
        blob = git.out("hash-object", "-w", "--stdin", input=text.encode()).strip()
        git.run("notes", f"--ref={records.SERVER_LOG}", "add", "-f", "-C", blob, new, env=env)
        count += 1
    return count


def _read_updates() -> list[tuple[str, str, str]]:
    updates = []
    for line in sys.stdin.read(1 << 20).splitlines():
        parts = line.split()
        if len(parts) == 3:
            updates.append((parts[0], parts[1], parts[2]))
    return updates


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    git = Git(Path.cwd())
    updates = _read_updates()
    if "--post" in args:
        try:
            record_received(git, updates)
        except Exception as exc:  # the push is done: report, never fail it now
            print(f"ect: could not record the promotion: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 0
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
