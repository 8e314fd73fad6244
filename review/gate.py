"""Gate evaluation: may REV enter a stage? Pure reads of git and the review notes.

Into the first stage (code review): a trusted bot check of REV's tree that covers the
whole change, no unresolved blocking finding, enough valid approvals (CODEOWNERS
included), no standing rejection, and a fast-forward of the stage branch. Into a later
stage: the previous stage holds REV, its bake time (server receive times) has passed, the
stage's own approvals, and a fast-forward.

Trust (see review/README.md): with `require_signed` (always on the server) a fact counts
only when signed by an allowed signer in the right role, or written by the server itself.
The authors of a change are every author and committer of its commits, plus the pusher
when the server knows who pushes; none of them can approve it or vouch for its checks.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ect.review import codeowners, signing
from ect.review.diff import EMPTY_TREE, Change, base_for, compute
from ect.review.gitcmd import Git
from ect.review.policy import Policy
from ect.review.records import Record, signed_payload
from ect.review.settings import Stage
from ect.review.store import Store

DECISIONS = ("approval", "rejection", "withdrawal", "dismissal")


@dataclass
class Decision:
    """One approval, rejection, withdrawal or dismissal, judged for the change."""

    record: Record
    kind: str  # approval | rejection | withdrawal | dismissal
    by: str
    state: str  # valid | stale | unsigned | bad-signature | self | carried | not-allowed
    reason: str = ""
    key: str = ""  # the verified signing key's fingerprint

    @property
    def counts(self) -> bool:
        return self.state in ("valid", "carried")


@dataclass
class GateResult:
    stage: str
    rev: str
    unmet: list[str] = field(default_factory=list)
    met: list[str] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    already: bool = False

    @property
    def ok(self) -> bool:
        return not self.unmet


@dataclass
class Trust:
    """Who may vouch for what: the policy plus what the server knows about this push."""

    policy: Policy
    pusher: frozenset[str] = frozenset()  # identities of whoever pushes (server side)
    server_times: bool = False  # bake time from the server's receive log
    server_only: bool = False  # ... and from nothing else (the server itself)
    _verified: dict[str, str | None] = field(default_factory=dict)

    @property
    def strict(self) -> bool:
        return bool(self.policy.settings.review["require_signed"])

    def key_of(self, r: Record) -> str | None:
        """The fingerprint of the allowed key that signed `r` for its `by` principal, else None."""
        sig = r.get("sig")
        by = r.get("by")
        if not isinstance(sig, str) or not isinstance(by, str) or not self.policy.signers:
            return None
        payload = signed_payload(r.data)
        ident = hashlib.sha256(b"\0".join((payload, sig.encode(), by.encode()))).hexdigest()
        if ident not in self._verified:  # cached by everything verified: payload, signature, principal
            self._verified[ident] = signing.verify_key(payload, sig, by, self.policy.signers)
        return self._verified[ident]

    def in_role(self, principal: str, members: list[str]) -> bool:
        users = self.policy.settings.review["users"]
        teams = self.policy.settings.review["teams"]
        return any(codeowners.matches(m, principal, teams, users) for m in members)

    def is_author(self, principal: str, change: Change) -> bool:
        low = principal.strip().lower()
        return low in change.authors or low in {p.lower() for p in self.pusher}


def comment_state(store: Store, change: Change) -> tuple[dict[str, Record], dict[str, Record]]:
    """(open, resolved) bot comments of the change, by fingerprint: the latest record per fp wins."""
    commits = set(change.commits)
    latest: dict[str, Record] = {}
    for r in store.of_type("comment", "resolve"):
        if r.commit in commits:
            fp = str(r.get("fp"))
            if fp not in latest or r.ts >= latest[fp].ts:
                latest[fp] = r
    comments = {r.get("fp"): r for r in store.of_type("comment") if r.commit in commits}
    open_: dict[str, Record] = {}
    resolved: dict[str, Record] = {}
    for fp, r in latest.items():
        if r.type == "comment":
            open_[fp] = r
        elif fp in comments:
            resolved[fp] = comments[fp]
    return open_, resolved


def latest_check(store: Store, tree: str, policy: Policy | None = None) -> Record | None:
    """The newest bot check of `tree` (any author: for display and the bot's own de-duplication)."""
    found = [r for r in store.of_type("check") if r.get("tree") == tree]
    return found[-1] if found else None


def trusted_check(git: Git, store: Store, trust: Trust, change: Change) -> tuple[Record | None, str]:
    """The newest check of the head's tree that covers the whole change and that the policy trusts:
    signed by a trusted checker (or, without `trusted_checkers`, by an allowed signer who is not
    an author) when signatures are required. Returns (check, why none when None)."""
    tree = git.tree(change.head)
    checkers = trust.policy.settings.review["trusted_checkers"]
    why = ""
    for r in reversed([r for r in store.of_type("check") if r.get("tree") == tree]):
        by = str(r.get("by", ""))
        if trust.strict or checkers:
            if checkers and not trust.in_role(by, checkers):
                why = why or f"check by {by} (not a trusted checker)"
                continue
            if trust.is_author(by, change):
                why = why or f"check by {by} (an author of the change)"
                continue
            if trust.key_of(r) is None:
                why = why or f"check by {by} (not signed by an allowed key)"
                continue
        if not _covers(git, r, change):
            why = why or f"check by {by} covers {str(r.get('base', '?'))[:12]}.., not the whole change"
            continue
        return r, ""
    return None, why


def _covers(git: Git, check: Record, change: Change) -> bool:
    """Whether the check ran over a range holding the whole change (its base at or below ours)."""
    base = check.get("base")
    if not isinstance(base, str) or len(base) != 40:
        return False
    if change.base == EMPTY_TREE:
        return base != change.head and git.is_ancestor(base, change.head)
    return base == change.base or git.is_ancestor(base, change.base)


def _relevant(
    git: Git, r: Record, change: Change, head_pid: Callable[[], str], commits: set[str]
) -> str | None:
    """'valid' (about the head), 'carried' (an identical diff), 'earlier' (an earlier commit of the
    change) or None (about something else)."""
    if r.commit == change.head:
        return "valid"
    hinted = r.get("patch_id") == head_pid() and bool(head_pid())
    if hinted and git.maybe_rev(r.commit):
        rbase = git.merge_base(r.commit, change.base) if change.base != EMPTY_TREE else None
        if git.patch_id(rbase or change.base, r.commit) == head_pid():
            return "carried"
    if r.commit in commits:
        return "earlier"
    return None


def judge_decisions(
    git: Git, store: Store, policy: Policy | Trust, change: Change, stage: str | None
) -> list[Decision]:
    """Decisions about this change (its head, an identical diff, or an earlier commit), each judged."""
    trust = policy if isinstance(policy, Trust) else Trust(policy)
    review = trust.policy.settings.review
    pid: list[str] = []

    def head_pid() -> str:
        if not pid:
            pid.append(git.patch_id(change.base, change.head))
        return pid[0]

    commits = set(change.commits)
    out: list[Decision] = []
    for r in store.of_type(*DECISIONS):
        if (r.get("stage") or None) != stage:
            continue
        where = _relevant(git, r, change, head_pid, commits)
        if where is None:
            continue
        by = str(r.get("by", ""))
        state, reason, key = where, "", ""
        if where == "earlier":
            if r.type == "approval":
                state, reason = "stale", f"made for {r.commit[:12]}, the change has new commits since"
            else:
                state = "valid"  # a rejection (or its withdrawal) holds for the whole change
        if state in ("valid", "carried") and trust.strict:
            if not r.get("sig"):
                state, reason = "unsigned", "not signed (review.require_signed)"
            elif trust.policy.signers is None:
                state, reason = "bad-signature", "no allowed-signers file to verify against"
            else:
                key = trust.key_of(r) or ""
                if not key:
                    state, reason = "bad-signature", f"signature does not verify for {by}"
        if state in ("valid", "carried"):
            if trust.is_author(by, change):
                state, reason = "self", "an author, committer or the pusher cannot decide on their own change"
            elif r.type == "dismissal" and not trust.in_role(by, review["maintainers"]):
                state, reason = "not-allowed", f"{by} is not a maintainer (review.maintainers)"
            elif review["reviewers"] and not trust.in_role(by, review["reviewers"] + review["maintainers"]):
                state, reason = "not-allowed", f"{by} is not a reviewer (review.reviewers)"
        out.append(Decision(r, r.type, by, state, reason, key))
    return out


def standing(decisions: list[Decision]) -> tuple[dict[str, Decision], dict[str, Decision]]:
    """(approvals, rejections) that stand, by reviewer: each reviewer's latest own decision wins
    (their signed times order only their own records); a rejection stands until its author
    approves the change or withdraws, or a maintainer dismisses it."""
    latest: dict[str, Decision] = {}
    dismissed: dict[str, float] = {}
    for d in sorted((d for d in decisions if d.counts), key=lambda d: d.record.ts):
        if d.kind == "dismissal":
            target = str(d.record.get("target", ""))
            dismissed[target] = max(dismissed.get(target, 0.0), d.record.ts)
        elif d.kind == "withdrawal":
            latest.pop(d.by, None)
        else:
            latest[d.by] = d
    approvals: dict[str, Decision] = {}
    rejections: dict[str, Decision] = {}
    keys: set[str] = set()
    for by, d in sorted(latest.items()):
        if d.kind == "rejection":
            if dismissed.get(by, -1.0) < d.record.ts:
                rejections[by] = d
        elif d.state in ("valid", "carried") and (not d.key or d.key not in keys):
            approvals[by] = d  # one key, one approval: two principals sharing a key count once
            if d.key:
                keys.add(d.key)
    return approvals, rejections


def _approval_conditions(
    result: GateResult, decisions: list[Decision], change: Change, trust: Trust, required: int, owners: bool
) -> None:
    policy = trust.policy
    approved, rejecters = standing(decisions)
    approvers = sorted(approved)
    for by, d in sorted(rejecters.items()):
        msg = d.record.get("message") or ""
        result.unmet.append(f"rejected by {by}" + (f": {msg}" if msg else ""))
    ignored = [d for d in decisions if not d.counts and d.kind == "approval"]
    for d in ignored:
        result.met.append(f"ignored approval by {d.by or '?'} ({d.state}: {d.reason})")
    if len(approvers) < required:
        have = f"{len(approvers)} of {required}"
        result.unmet.append(
            f"approvals: {have} valid approval(s) for {change.head[:12]}"
            + (f" ({', '.join(approvers)})" if approvers else "")
            + "".join(f"; ignored {d.by or '?'}: {d.state}, {d.reason}" for d in ignored)
        )
    elif required:
        result.met.append(f"approvals: {len(approvers)} of {required} ({', '.join(approvers)})")
    if owners and policy.owners:
        needed: dict[tuple[str, ...], list[str]] = {}
        for fc in change.files.values():
            for path in {fc.path, fc.old_path} - {None}:
                owner_set = codeowners.owners_of(policy.owners, str(path))
                if owner_set:
                    needed.setdefault(owner_set, []).append(str(path))
        teams = policy.settings.review["teams"]
        users = policy.settings.review["users"]
        for owner_set, paths in sorted(needed.items()):
            if not any(codeowners.matches(o, a, teams, users) for o in owner_set for a in approvers):
                shown = ", ".join(sorted(paths)[:3]) + (" ..." if len(paths) > 3 else "")
                result.unmet.append(f"CODEOWNERS: {shown} needs approval from {' or '.join(owner_set)}")
            else:
                result.met.append(f"CODEOWNERS: {' / '.join(owner_set)} approved")


def evaluate(
    git: Git,
    store: Store,
    policy: Policy,
    rev: str,
    stage_name: str,
    tip_of: Callable[[str], str | None],
    now: float | None = None,
    *,
    trust: Trust | None = None,
    mainline: str | None = None,
) -> GateResult:
    """Check stage `stage_name`'s gate for commit `rev`; `tip_of(branch)` gives a stage branch's sha.
    `trust` carries what the server knows (pusher, server times); `mainline` is the protected
    commit a stage's first promotion is judged against (the server's policy commit)."""
    trust = trust or Trust(policy)
    settings = policy.settings
    index, stage = settings.stage(stage_name)
    head = git.rev(rev)
    result = GateResult(stage.name, head)
    tip = tip_of(stage.branch)
    if tip is not None and git.is_ancestor(head, tip):
        result.already = True
        result.met.append(f"{stage.branch} already holds {head[:12]}")
        return result
    if tip is not None and not git.is_ancestor(tip, head):
        result.unmet.append(
            f"not a fast-forward: {stage.branch} ({tip[:12]}) is not an ancestor of {head[:12]}"
        )
    base = change_base(git, policy, head, tip, mainline)
    if index == 0:
        _review_gate(git, store, trust, head, base, result)
    else:
        _later_gate(git, store, trust, head, index, stage, tip_of, base, result, now or time.time())
    return result


def change_base(git: Git, policy: Policy, head: str, tip: str | None, mainline: str | None) -> str:
    """What a promotion of `head` is judged against: the stage's tip; for a stage's first promotion
    the merge base with the protected main line (`mainline`, else the usual base refs). Never an
    empty change: when that base is `head` itself, the whole history is the change."""
    base: str | None = git.merge_base(tip, head) if tip else None
    if base is None:
        if mainline is not None:
            base = git.merge_base(mainline, head)
        else:
            try:
                base = base_for(git, policy.settings, head)
            except Exception:
                base = None
    if base is None or base == head:
        return EMPTY_TREE
    return base


def _review_gate(git: Git, store: Store, trust: Trust, head: str, base: str, result: GateResult) -> None:
    policy = trust.policy
    change = compute(git, base, head, lines=False)
    store.focus(change.commits, {"approvals": git.patch_id(change.base, head), "reviews": git.tree(head)})
    check, why = trusted_check(git, store, trust, change)
    trusted = policy.settings.review["trusted_checkers"]
    signed = trust.strict or bool(trusted)
    if check is None:
        who = (
            f" signed by {' or '.join(trusted)}" if trusted else (" signed by a non-author" if signed else "")
        )
        result.unmet.append(
            f"no bot check{who} for {head[:12]}: run `ect review bot {head[:12]}`"
            + (f" (ignored: {why})" if why else "")
        )
    elif not check.get("tests_run", False):
        result.unmet.append(f"tests were not run for {head[:12]}: run `ect review bot` without --no-tests")
    elif check.get("checks") != "pass":
        result.unmet.append(f"checks failed for {head[:12]}: {check.get('summary', 'see `ect review show`')}")
    elif signed and check.get("outcome") != "pass":
        # a signed verdict vouches for the bot's blocking findings (comments are unsigned)
        result.unmet.append(
            f"the trusted bot check of {head[:12]} has {check.get('blocking')} blocking finding(s)"
        )
    else:
        result.met.append(f"checks passed ({check.get('summary', '')})".replace(" ()", ""))
    if not signed:
        open_, _ = comment_state(store, change)
        blocking = [r for r in open_.values() if r.get("severity") == "blocking"]
        for r in blocking[:5]:
            where = f"{r.get('path')}:{r.get('line')}" if r.get("line") else (r.get("path") or "summary")
            result.unmet.append(f"unresolved blocking comment at {where}: {r.get('message')}")
        if len(blocking) > 5:
            result.unmet.append(f"... and {len(blocking) - 5} more unresolved blocking comments")
    decisions = judge_decisions(git, store, trust, change, None)
    result.decisions = decisions
    _approval_conditions(result, decisions, change, trust, policy.settings.review["required_approvals"], True)


def _later_gate(
    git: Git,
    store: Store,
    trust: Trust,
    head: str,
    index: int,
    stage: Stage,
    tip_of: Callable[[str], str | None],
    base: str,
    result: GateResult,
    now: float,
) -> None:
    policy = trust.policy
    prev = policy.settings.stages[index - 1]
    prev_tip = tip_of(prev.branch)
    if prev_tip is None or not git.is_ancestor(head, prev_tip):
        result.unmet.append(f"previous stage '{prev.name}' does not hold {head[:12]}: promote it there first")
    else:
        result.met.append(f"'{prev.name}' holds {head[:12]}")
        if stage.bake_minutes > 0:
            since = _reached(git, store, prev, head, trust)
            if since is None:
                result.unmet.append(f"bake time: no record of when {head[:12]} reached '{prev.name}'")
            else:
                baked = (now - since) / 60
                if baked < stage.bake_minutes:
                    result.unmet.append(
                        f"bake time: {baked:.1f} of {stage.bake_minutes:g} min on '{prev.name}'"
                    )
                else:
                    result.met.append(f"bake time: {baked:.1f} min on '{prev.name}'")
    if stage.required_approvals:
        change = compute(git, base, head, lines=False)
        store.focus(change.commits, {"approvals": git.patch_id(change.base, head)})
        decisions = judge_decisions(git, store, trust, change, stage.name)
        result.decisions = decisions
        _approval_conditions(result, decisions, change, trust, stage.required_approvals, False)


def _reached(git: Git, store: Store, prev: Stage, head: str, trust: Trust) -> float | None:
    """When `head` reached stage `prev`: from the server's receive log, and (except on the server
    itself) from the local promotion records when the log has none (a repository without a
    server gate; the client's answer is advisory, the server's is final)."""
    times: list[float] = []
    if trust.server_times or trust.server_only:
        found = [r for r in store.server_log() if r.type == "received" and r.get("stage") == prev.name]
        times = [r.ts for r in found if r.commit == head or git.is_ancestor(head, r.commit)]
    if not times and not trust.server_only:
        found = [r for r in store.of_type("promotion") if r.get("stage") == prev.name]
        times = [r.ts for r in found if r.commit == head or git.is_ancestor(head, r.commit)]
    return min(times) if times else None


def evaluate_policy_update(git: Git, store: Store, trust: Trust, old: str, new: str) -> list[str]:
    """Why the policy ref may not move from `old` to `new` (empty: it may): a fast-forward whose
    change has `review.policy_approvals` signed approvals (stage "policy") from maintainers (or,
    without maintainers, allowed signers), none of them an author, plus its CODEOWNERS."""
    policy = trust.policy
    if not git.is_ancestor(old, new):
        return ["the policy only moves forward (a fast-forward of its current commit)"]
    change = compute(git, old, new, lines=False)
    decisions = judge_decisions(git, store, trust, change, "policy")
    maintainers = policy.settings.review["maintainers"]
    if maintainers:
        for d in decisions:
            if d.counts and d.kind == "approval" and not trust.in_role(d.by, maintainers):
                d.state, d.reason = "not-allowed", f"{d.by} is not a maintainer"
    result = GateResult("policy", new)
    _approval_conditions(
        result, decisions, change, trust, max(1, policy.settings.review["policy_approvals"]), True
    )
    return result.unmet


def as_dict(result: GateResult) -> dict[str, Any]:
    return {
        "stage": result.stage,
        "rev": result.rev,
        "ok": result.ok,
        "already": result.already,
        "unmet": result.unmet,
        "met": result.met,
        "decisions": [
            {
                "type": d.kind,
                "by": d.by,
                "commit": d.record.commit,
                "state": d.state,
                "reason": d.reason,
                "ts": d.record.ts,
            }
            for d in result.decisions
        ],
    }
