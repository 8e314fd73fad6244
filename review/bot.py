"""The review bot: checks and rules on a change, posted as fingerprinted comments.

A re-run never posts a finding twice (its fingerprint is already open on the change),
findings that a later commit removed are resolved, only added/modified lines get inline
comments (at most `max_inline`; the rest go to the summary), and each finding is
blocking or advisory. The run ends with a `check` record bound to the head's tree,
which the promotion gate reads.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ect.review import records, rules, signing
from ect.review.checks import CheckResult, run_checks
from ect.review.diff import Change, compute, resolve_range
from ect.review.findings import Finding, fingerprint_all
from ect.review.gate import comment_state, latest_check
from ect.review.gitcmd import Git
from ect.review.policy import Policy
from ect.review.store import Store

from ect import events
from ect.config import Config

BOT = "ect-bot"


@dataclass
class BotReport:
    change: Change
    findings: list[Finding]
    inline: list[Finding]
    summary: list[Finding]
    posted: list[str] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)
    check: CheckResult | None = None
    duration_ms: float = 0.0
    checks_ms: float = 0.0

    @property
    def blocking(self) -> list[Finding]:
        return [f for f in self.findings if f.blocking]


def _check_findings(check: CheckResult, change: Change, severity: str) -> list[Finding]:
    out: list[Finding] = []
    if severity != "off":
        for e in check.compile_errors:
            line = e.line if e.line in change.added_lines(e.path) else None
            out.append(
                Finding(f"compile/{e.step}", severity, e.message, e.path, line, f"{e.line}:{e.message}")
            )
    for node in check.tests_failed:
        out.append(
            Finding("test-failed", "blocking", f"test fails: {node}", node.split("::", 1)[0], None, node)
        )
    if check.detail:
        out.append(Finding("test-run", "blocking", check.detail, None, None, check.detail))
    return out


def _fix_findings(check: CheckResult, change: Change) -> list[Finding]:
    """Verified fixes from the fix engine, as advisory comments on changed lines."""
    out = []
    for fix in check.fixes:
        line = fix.line if fix.line in change.added_lines(fix.path) else None
        out.append(
            Finding(
                "verified-fix", "advisory", f"verified fix: {fix.title}", fix.path, line, fix.title, fix.diff
            )
        )
    return out


def collect_findings(
    git: Git, root: Path, cfg: Config, policy: Policy, change: Change, run_tests: bool
) -> tuple[list[Finding], CheckResult | None]:
    review = policy.settings.review
    findings: list[Finding] = []
    check = None
    if change.files:
        check = run_checks(
            git, root, cfg, change.base, change.head, run_tests and review["run_tests"], review["use_fixes"]
        )
        findings += _check_findings(check, change, review["compile_severity"])
        findings += _fix_findings(check, change)
    py = [p for p, fc in change.files.items() if p.endswith(".py") and fc.status != "D" and fc.added]
    blobs = git.cat_batch([f"{change.head}:{p}" for p in py])
    for path in py:
        text = blobs.get(f"{change.head}:{path}", b"").decode("utf-8", "replace")
        added = change.added_lines(path)
        findings += rules.api_findings(
            path, text, added, review["forbidden"], "forbidden-api", review["forbidden_severity"]
        )
        findings += rules.api_findings(
            path, text, added, review["deprecated"], "deprecated-api", review["deprecated_severity"]
        )
    findings += rules.untested_findings(git, change, cfg, review["untested_module"])
    findings += rules.prfaq_findings(git, change, review["prfaq"], review["service_dirs"])
    return fingerprint_all(findings), check


def split_inline(findings: list[Finding], cap: int) -> tuple[list[Finding], list[Finding]]:
    """At most `cap` anchored findings inline (blocking first); the rest go to the summary."""
    ranked = sorted(findings, key=lambda f: (not f.blocking, f.path or "", f.line or 0, f.fp))
    anchored = [f for f in ranked if f.line is not None]
    inline = anchored[:cap]
    chosen = {f.fp for f in inline}
    return inline, [f for f in ranked if f.fp not in chosen]


def run_bot(
    root: Path,
    cfg: Config,
    policy: Policy,
    spec: str | None,
    *,
    run_tests: bool = True,
    post: bool = True,
    key: Path | None = None,
) -> BotReport:
    """Review `spec`; with `key`, the check record is signed (for `review.trusted_checkers`)."""
    t0 = time.perf_counter()
    git = Git(root)
    base, head = resolve_range(git, policy.settings, spec)
    change = compute(git, base, head)
    findings, check = collect_findings(git, root, cfg, policy, change, run_tests)
    inline, summary = split_inline(findings, policy.settings.review["max_inline"])
    report = BotReport(
        change, findings, inline, summary, check=check, checks_ms=check.duration_ms if check else 0.0
    )
    if post:
        _post(git, cfg, change, report, run_tests and policy.settings.review["run_tests"], key)
    report.duration_ms = (time.perf_counter() - t0) * 1000
    return report


def _post(
    git: Git, cfg: Config, change: Change, report: BotReport, tests_run: bool, key: Path | None = None
) -> None:
    store = Store(git)
    now = time.time()
    commits = set(change.commits)
    if not any(r.commit in commits for r in store.of_type("request")):
        store.append(records.make("request", change.head, now, base=change.base, by=_who(git)))
        events.record(
            cfg.state_path,
            "review.requested",
            source="review",
            commit_sha=change.head,
            author=_who(git),
            first_commit_ts=change.first_commit_ts,
        )
    open_, _ = comment_state(store, change)
    inline = {f.fp for f in report.inline}
    current = {f.fp for f in report.findings}
    for f in report.findings:
        if f.fp in open_:
            continue
        data: dict[str, Any] = records.make(
            "comment",
            change.head,
            now,
            fp=f.fp,
            rule=f.rule,
            severity=f.severity,
            message=f.message,
            path=f.path,
            line=f.line,
            inline=f.fp in inline,
            by=BOT,
        )
        if f.fix:
            data["fix"] = f.fix
        store.append(data)
        report.posted.append(f.fp)
        events.record(
            cfg.state_path,
            "review.comment",
            source="review",
            commit_sha=change.head,
            author=BOT,
            rule=f.rule,
            severity=f.severity,
            fp=f.fp,
        )
    for fp in sorted(set(open_) - current):
        store.append(
            records.make(
                "resolve", change.head, now, fp=fp, by=BOT, reason=f"no longer found at {change.head[:12]}"
            )
        )
        report.resolved.append(fp)
    check = report.check
    checks_ok = check is None or check.outcome == "pass"
    record = records.make(
        "check",
        change.head,
        now,
        tree=git.tree(change.head),
        base=change.base,
        outcome="pass" if checks_ok and not report.blocking else "fail",
        checks="pass" if checks_ok else "fail",
        # an empty range (`HEAD..HEAD`) ran nothing: it vouches for no tests
        tests_run=(tests_run or not change.files) and bool(change.commits),
        summary=_summary(check),
        blocking=len(report.blocking),
        advisory=len(report.findings) - len(report.blocking),
        duration_ms=round(check.duration_ms if check else 0.0, 1),
        by=BOT,
    )
    if key is not None:
        record["by"] = _who(git)
        record["sig"] = signing.sign(records.signed_payload(record), key)
    previous = latest_check(store, str(record["tree"]))
    if previous is None or any(previous.get(k) != record.get(k) for k in CHECK_KEYS):
        store.append(record)  # an identical verdict for the same tree is not stored again


CHECK_KEYS = ("base", "outcome", "checks", "tests_run", "summary", "blocking", "advisory", "by", "sig")


def _summary(check: CheckResult | None) -> str:
    if check is None:
        return "no files changed"
    parts = [f"{len(check.compile_errors)} compile error(s)", f"{len(check.tests_failed)} failing test(s)"]
    if check.tests_selected >= 0:
        parts.append(f"{check.tests_selected} test file(s) run")
    if check.detail:
        parts.append(check.detail)
    return ", ".join(parts)


def _who(git: Git) -> str:
    return git.config("user.email") or "unknown"  # exact: signer principals are case-sensitive
