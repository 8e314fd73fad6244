"""Gate evaluation: may REV enter a stage? Pure reads of git and the review notes.

Into the first stage (code review): a passing bot check recorded for REV's tree, no
unresolved blocking bot comment, enough fresh and valid approvals (CODEOWNERS
included), no standing rejection, and a fast-forward of the stage branch. Into a later
stage: the previous stage holds REV, its bake time has passed, the stage's own
approvals, and a fast-forward.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ect.review import codeowners, signing
from ect.review.diff import Change, base_for, compute
from ect.review.gitcmd import Git
from ect.review.policy import Policy
from ect.review.records import Record, signed_payload
from ect.review.settings import Stage
from ect.review.store import Store


@dataclass
class Decision:
    """One approval or rejection, judged for the change."""

    record: Record
    kind: str  # approval | rejection
    by: str
    state: str  # valid | stale | unsigned | bad-signature | self | carried
    reason: str = ""

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
    """The newest bot check of `tree`; with `review.trusted_checkers`, only one signed by them."""
    found = [r for r in store.of_type("check") if r.get("tree") == tree]
    trusted = [p.lower() for p in policy.settings.review["trusted_checkers"]] if policy else []
    if trusted:
        found = [r for r in found if str(r.get("by", "")).lower() in trusted and _signed_by(r, policy)]
    return found[-1] if found else None


def _signed_by(r: Record, policy: Policy | None) -> bool:
    sig = r.get("sig")
    if not sig or policy is None or policy.signers is None:
        return False
    return signing.verify(signed_payload(r.data), str(sig), str(r.get("by", "")), policy.signers)


def judge_decisions(
    git: Git, store: Store, policy: Policy, change: Change, stage: str | None
) -> list[Decision]:
    """Approvals/rejections about this change (its head, or an identical diff), each judged."""
    require_signed = policy.settings.review["require_signed"]
    head_pid: str | None = None
    commits = set(change.commits)
    out: list[Decision] = []
    for r in store.of_type("approval", "rejection"):
        if (r.get("stage") or None) != stage:
            continue
        by = str(r.get("by", "")).lower()
        if r.commit == change.head:
            state = "valid"
        else:
            if head_pid is None:
                head_pid = git.patch_id(change.base, change.head)
            hinted = r.get("patch_id") == head_pid
            if r.commit not in commits and not hinted:
                continue  # about another change
            state = "stale"
            if hinted and git.maybe_rev(r.commit):
                rbase = git.merge_base(r.commit, change.base) or change.base
                if git.patch_id(rbase, r.commit) == head_pid and head_pid:
                    state = "carried"
        reason = ""
        if state == "stale":
            reason = f"made for {r.commit[:12]}, the change has new commits since"
        if state in ("valid", "carried"):
            if require_signed:
                sig = r.get("sig")
                if not sig:
                    state, reason = "unsigned", "not signed (review.require_signed)"
                elif policy.signers is None:
                    state, reason = "bad-signature", "no allowed-signers file to verify against"
                elif not signing.verify(
                    signed_payload(r.data), str(sig), str(r.get("by", "")), policy.signers
                ):
                    state, reason = "bad-signature", f"signature does not verify for {by}"
            if state in ("valid", "carried") and by in change.authors:
                state, reason = "self", "the author cannot approve their own change"
        out.append(Decision(r, r.type, by, state, reason))
    return out


def _approval_conditions(
    result: GateResult, decisions: list[Decision], change: Change, policy: Policy, required: int, owners: bool
) -> None:
    latest: dict[str, Decision] = {}
    for d in decisions:
        if d.counts and (d.by not in latest or d.record.ts >= latest[d.by].record.ts):
            latest[d.by] = d
    approvers = sorted(by for by, d in latest.items() if d.kind == "approval")
    rejecters = {by: d for by, d in latest.items() if d.kind == "rejection"}
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
        for owner_set, paths in sorted(needed.items()):
            teams = policy.settings.review["teams"]
            if not any(codeowners.matches(o, a, teams) for o in owner_set for a in approvers):
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
) -> GateResult:
    """Check stage `stage_name`'s gate for commit `rev`; `tip_of(branch)` gives a stage branch's sha."""
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
    if index == 0:
        _review_gate(git, store, policy, head, tip, result)
    else:
        _later_gate(git, store, policy, head, index, stage, tip_of, result, now or time.time())
    return result


def _review_gate(
    git: Git, store: Store, policy: Policy, head: str, tip: str | None, result: GateResult
) -> None:
    store.preload("reviews", "comments", "approvals")
    base = git.merge_base(tip, head) if tip else None
    change = compute(git, base or base_for(git, policy.settings, head), head, lines=False)
    check = latest_check(store, git.tree(head), policy)
    if check is None:
        trusted = policy.settings.review["trusted_checkers"]
        who = f" signed by {' or '.join(trusted)}" if trusted else ""
        result.unmet.append(f"no bot check{who} for {head[:12]}: run `ect review bot {head[:12]}`")
    elif not check.get("tests_run", False):
        result.unmet.append(f"tests were not run for {head[:12]}: run `ect review bot` without --no-tests")
    elif check.get("checks") != "pass":
        result.unmet.append(f"checks failed for {head[:12]}: {check.get('summary', 'see `ect review show`')}")
    elif policy.settings.review["trusted_checkers"] and check.get("outcome") != "pass":
        # a signed verdict also vouches for the bot's blocking findings (comments are unsigned)
        result.unmet.append(
            f"the trusted bot check of {head[:12]} has {check.get('blocking')} blocking finding(s)"
        )
    else:
        result.met.append(f"checks passed ({check.get('summary', '')})".replace(" ()", ""))
    open_, _ = comment_state(store, change)
    blocking = [r for r in open_.values() if r.get("severity") == "blocking"]
    for r in blocking[:5]:
        where = f"{r.get('path')}:{r.get('line')}" if r.get("line") else (r.get("path") or "summary")
        result.unmet.append(f"unresolved blocking comment at {where}: {r.get('message')}")
    if len(blocking) > 5:
        result.unmet.append(f"... and {len(blocking) - 5} more unresolved blocking comments")
    decisions = judge_decisions(git, store, policy, change, None)
    result.decisions = decisions
    _approval_conditions(
        result, decisions, change, policy, policy.settings.review["required_approvals"], True
    )


def _later_gate(
    git: Git,
    store: Store,
    policy: Policy,
    head: str,
    index: int,
    stage: Stage,
    tip_of: Callable[[str], str | None],
    result: GateResult,
    now: float,
) -> None:
    prev = policy.settings.stages[index - 1]
    prev_tip = tip_of(prev.branch)
    if prev_tip is None or not git.is_ancestor(head, prev_tip):
        result.unmet.append(f"previous stage '{prev.name}' does not hold {head[:12]}: promote it there first")
    else:
        result.met.append(f"'{prev.name}' holds {head[:12]}")
        if stage.bake_minutes > 0:
            since = _reached(git, store, prev.name, head)
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
        own_tip = tip_of(stage.branch)
        base = git.merge_base(own_tip, head) if own_tip else None
        change = compute(git, base or base_for(git, policy.settings, head), head, lines=False)
        decisions = judge_decisions(git, store, policy, change, stage.name)
        result.decisions = decisions
        _approval_conditions(result, decisions, change, policy, stage.required_approvals, False)


def _reached(git: Git, store: Store, stage: str, head: str) -> float | None:
    times = [
        r.ts
        for r in store.of_type("promotion")
        if r.get("stage") == stage and (r.commit == head or git.is_ancestor(head, r.commit))
    ]
    return min(times) if times else None


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
