"""`ect review ...` and `ect promote ...`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from ect.review.gitcmd import Git
from ect.review.policy import Policy, from_worktree

from ect import events
from ect.config import Config, load_config
from ect.errors import EctError
from ect.repo import find_root


def _setup() -> tuple[Path, Config, Git, Policy]:
    root = find_root()
    cfg = load_config(root)
    git = Git(root)
    return root, cfg, git, from_worktree(git, root, cfg)


def _write_sarif(target: str, findings: list[dict[str, Any]]) -> None:
    from ect.review.sarif import to_sarif

    text = json.dumps(to_sarif(findings), indent=2)
    if target == "-":
        click.echo(text)
        return
    try:
        Path(target).write_text(text + "\n")
    except OSError as exc:
        raise EctError(f"cannot write {target}: {exc.strerror}") from None


def _remote(git: Git, policy: Policy, remote: str | None) -> str:
    name = remote or policy.settings.review["remote"]
    if not name:
        raise EctError("no remote given and review.remote is empty")
    return str(name)


@click.group()
def review() -> None:
    """Review bot, comments and approvals stored in git notes (refs/notes/ect/*)."""


@review.command()
@click.argument("rev_range", required=False)
@click.option("--no-tests", is_flag=True, help="Only compile and apply rules; do not run tests.")
@click.option("--dry-run", is_flag=True, help="Report findings without recording them.")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@click.option("--sarif", "sarif", metavar="FILE", help="Also write the findings as SARIF ('-': stdout).")
@click.option(
    "--key", default=None, help="Sign the check record with this SSH key (review.trusted_checkers)."
)
def bot(
    rev_range: str | None, no_tests: bool, dry_run: bool, as_json: bool, sarif: str | None, key: str | None
) -> int:
    """Review RANGE (default: this branch against the first stage or default branch).

    Exits 1 when a blocking finding or a failing check remains.
    """
    from ect.review.approvals import signing_key
    from ect.review.bot import run_bot

    root, cfg, git, policy = _setup()
    key_path = signing_key(git, key) if key or policy.settings.review["trusted_checkers"] else None
    report = run_bot(root, cfg, policy, rev_range, run_tests=not no_tests, post=not dry_run, key=key_path)
    items = [
        {
            "fp": f.fp,
            "rule": f.rule,
            "severity": f.severity,
            "message": f.message,
            "path": f.path,
            "line": f.line,
            "inline": f in report.inline,
            "new": f.fp in report.posted,
        }
        for f in report.findings
    ]
    if sarif:
        _write_sarif(sarif, items)
    check = report.check
    failed = bool(report.blocking) or (check is not None and check.outcome != "pass")
    if as_json:
        click.echo(
            json.dumps(
                {
                    "head": report.change.head,
                    "base": report.change.base,
                    "findings": items,
                    "posted": report.posted,
                    "resolved": report.resolved,
                    "checks": None if check is None else check.outcome,
                    "duration_ms": round(report.duration_ms, 1),
                    "checks_ms": round(report.checks_ms, 1),
                },
                indent=2,
            )
        )
        return 1 if failed else 0
    change = report.change
    click.echo(
        f"reviewed {change.head[:12]} against {change.base[:12]}: {len(change.files)} file(s), "
        f"+{change.line_count} line(s)"
    )
    if check is not None:
        click.echo(
            f"checks: {check.outcome} ({len(check.compile_errors)} compile error(s), "
            f"{len(check.tests_failed)} failing test(s))"
        )
    for f in report.inline:
        new = "new " if f.fp in report.posted else ""
        click.echo(f"  {f.path}:{f.line}: {new}{f.severity}: [{f.rule}] {f.message}")
    if report.summary:
        click.echo(f"summary: {len(report.summary)} more finding(s)")
        for f in report.summary:
            where = f"{f.path}:{f.line}" if f.line else (f.path or "-")
            click.echo(f"  {where}: {f.severity}: [{f.rule}] {f.message}")
    verb = "would post" if dry_run else "posted"
    click.echo(
        f"{verb} {len(report.posted)} new comment(s), resolved {len(report.resolved)}, "
        f"{len(report.blocking)} blocking, {report.duration_ms / 1000:.2f}s"
    )
    return 1 if failed else 0


def _decide(
    kind: str,
    rev: str | None,
    message: str,
    stage: str | None,
    key: str | None,
    push: bool,
    target: str | None = None,
) -> int:
    from ect.review.approvals import make_decision, signing_key
    from ect.review.diff import base_for, compute
    from ect.review.store import Store
    from ect.review.store import push as push_notes

    _, cfg, git, policy = _setup()
    if stage is not None and stage != "policy":  # "policy": a change to the protected policy ref
        policy.settings.stage(stage)
    head = git.rev(rev or "HEAD")
    change = compute(git, base_for(git, policy.settings, head), head)
    key_path = signing_key(git, key)
    if key_path is None and policy.settings.review["require_signed"]:
        raise EctError(
            "review.require_signed is on: pass --key, set $ECT_REVIEW_KEY or git's user.signingKey"
        )
    data = make_decision(git, change, kind, message, stage, key_path, target=target)
    Store(git).append(data)
    kind_event = {"approval": "review.approved", "rejection": "review.rejected"}.get(kind, f"review.{kind}")
    events.record(
        cfg.state_path,
        kind_event,
        source="review",
        commit_sha=head,
        author=data["by"],
        stage=stage,
        signed="sig" in data,
        first_commit_ts=change.first_commit_ts,
    )
    what = {"approval": "approved", "rejection": "rejected", "withdrawal": "withdrew your decision on"}.get(
        kind, "dismissed a rejection of"
    )
    click.echo(f"{what} {head[:12]} as {data['by']}" + (" (signed)" if "sig" in data else ""))
    if push:
        remote = _remote(git, policy, None)
        push_notes(git, remote)
        click.echo(f"pushed review records to {remote}")
    return 0


@review.command()
@click.argument("rev", required=False)
@click.option("-m", "--message", default="", help="A note for the author.")
@click.option(
    "--stage", default=None, help="Approve for a later stage's gate, or 'policy' (default: code review)."
)
@click.option(
    "--key", default=None, help="SSH private key to sign with (default: $ECT_REVIEW_KEY or user.signingKey)."
)
@click.option("--push", is_flag=True, help="Push review records to the remote afterwards.")
def approve(rev: str | None, message: str, stage: str | None, key: str | None, push: bool) -> int:
    """Approve REV (default HEAD): binds to that exact commit."""
    return _decide("approval", rev, message, stage, key, push)


@review.command()
@click.argument("rev", required=False)
@click.option("-m", "--message", required=True, help="What must change.")
@click.option("--stage", default=None, help="Reject for a later stage's gate (default: code review).")
@click.option("--key", default=None, help="SSH private key to sign with.")
@click.option("--push", is_flag=True, help="Push review records to the remote afterwards.")
def reject(rev: str | None, message: str, stage: str | None, key: str | None, push: bool) -> int:
    """Reject REV (default HEAD) until you approve a later commit."""
    return _decide("rejection", rev, message, stage, key, push)


@review.command()
@click.argument("rev", required=False)
@click.option("-m", "--message", default="", help="Why.")
@click.option("--stage", default=None, help="For a later stage's gate (default: code review).")
@click.option("--key", default=None, help="SSH private key to sign with.")
@click.option("--push", is_flag=True, help="Push review records to the remote afterwards.")
def withdraw(rev: str | None, message: str, stage: str | None, key: str | None, push: bool) -> int:
    """Withdraw your own approval or rejection of REV's change (default HEAD)."""
    return _decide("withdrawal", rev, message, stage, key, push)


@review.command()
@click.argument("rev", required=False)
@click.option("--reviewer", required=True, help="The reviewer whose rejection is dismissed (exact identity).")
@click.option("-m", "--message", required=True, help="Why the rejection no longer holds.")
@click.option("--stage", default=None, help="For a later stage's gate (default: code review).")
@click.option("--key", default=None, help="SSH private key to sign with.")
@click.option("--push", is_flag=True, help="Push review records to the remote afterwards.")
def dismiss(
    rev: str | None, reviewer: str, message: str, stage: str | None, key: str | None, push: bool
) -> int:
    """As a maintainer (review.maintainers), dismiss REVIEWER's rejection of REV's change."""
    return _decide("dismissal", rev, message, stage, key, push, target=reviewer)


@review.command()
@click.argument("rev", required=False)
@click.option("--stage", default=None, help="Show this stage's gate (default: the first stage).")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.option(
    "--sarif", "sarif", metavar="FILE", help="Write open and resolved findings as SARIF ('-': stdout)."
)
def show(rev: str | None, stage: str | None, as_json: bool, sarif: str | None) -> int:
    """Show comments, approvals and the gate for REV (default HEAD)."""
    from ect.review.diff import compute, resolve_range
    from ect.review.gate import evaluate
    from ect.review.promote import configured_remote, tip_reader
    from ect.review.show import gather, render
    from ect.review.store import Store

    _, _, git, policy = _setup()
    stage_name = stage or policy.settings.stages[0].name
    policy.settings.stage(stage_name)
    base, head = resolve_range(git, policy.settings, rev)
    change = compute(git, base, head)
    store = Store(git)
    result = evaluate(git, store, policy, head, stage_name, tip_reader(git, configured_remote(git, policy)))
    data = gather(git, store, change, result)
    if sarif:
        _write_sarif(sarif, data["comments"] + data["resolved"])
        if sarif == "-":
            return 0
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        render(data, policy.settings.review["max_inline"])
    return 0


@review.command()
@click.argument("remote", required=False)
def push(remote: str | None) -> int:
    """Merge and push review records (refs/notes/ect/*) to REMOTE (default: review.remote)."""
    from ect.review.store import push as push_notes

    _, _, git, policy = _setup()
    name = _remote(git, policy, remote)
    push_notes(git, name)
    click.echo(f"review records pushed to {name}")
    return 0


@review.command()
@click.argument("remote", required=False)
def pull(remote: str | None) -> int:
    """Fetch review records from REMOTE and merge them (union, no conflicts)."""
    from ect.review.store import Store
    from ect.review.store import pull as pull_notes

    _, _, git, policy = _setup()
    name = _remote(git, policy, remote)
    merged = pull_notes(git, name)
    click.echo(f"review records pulled from {name}: {len(merged)} ref(s) updated")
    for problem in Store(git).problems if merged else []:
        click.echo(f"warning: {problem}", err=True)
    return 0


@review.command()
def check() -> int:
    """Check the review records for corrupt or unknown-version entries."""
    from ect.review.records import REFS
    from ect.review.store import Store

    _, _, git, _ = _setup()
    store = Store(git)
    total = sum(len(store.records(ref)) for ref in REFS)
    for problem in store.problems:
        click.echo(f"warning: {problem}", err=True)
    click.echo(f"{total} valid record(s), {len(store.problems)} skipped")
    return 1 if store.problems else 0


def _echo_flush(line: str) -> None:
    click.echo(line)
    sys.stdout.flush()


@click.command()
@click.argument("rev")
@click.option("--to", "stage", required=True, help="The stage to promote into.")
@click.option("--wait", is_flag=True, help="Keep pulling review records until the gate opens.")
@click.option("--timeout", type=float, default=600.0, show_default=True, help="Seconds to wait at most.")
@click.option("--dry-run", is_flag=True, help="Only check the gate.")
def promote(rev: str, stage: str, wait: bool, timeout: float, dry_run: bool) -> int:
    """Promote REV into STAGE through its gate; prints each unmet condition and exits 1 if refused."""
    from ect.review.promote import promote as do_promote

    if timeout < 0:
        raise EctError("--timeout must be >= 0")
    root, cfg, _, _ = _setup()
    return do_promote(
        root,
        cfg,
        rev,
        stage,
        wait=wait,
        timeout=timeout,
        dry_run=dry_run,
        echo=_echo_flush,
    )
