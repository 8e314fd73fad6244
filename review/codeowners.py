"""CODEOWNERS (GitHub syntax): `pattern owner...` lines, the last matching line wins.

Owners are `@user`, `@org/team` or e-mail addresses. An approver (an e-mail, verified
by signature when `require_signed` is on) matches an owner when the e-mail is equal, or
when `@user` equals the e-mail's local part (case-insensitive); `@org/team` matches
its members as listed in `review.teams`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

LOCATIONS = ("CODEOWNERS", ".github/CODEOWNERS", "docs/CODEOWNERS")


@dataclass(frozen=True)
class Rule:
    pattern: str
    owners: tuple[str, ...]
    spec: Any  # a pathspec.GitIgnoreSpec


def parse(text: str) -> list[Rule]:
    import pathspec  # only when a CODEOWNERS file exists

    rules = []
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not line:
            continue
        parts = line.split()
        pattern = parts[0]
        rules.append(Rule(pattern, tuple(parts[1:]), pathspec.GitIgnoreSpec.from_lines([pattern])))
    return rules


def owners_of(rules: list[Rule], path: str) -> tuple[str, ...] | None:
    """Owners of `path` (last matching rule); None when no rule matches or it names no owner."""
    found: tuple[str, ...] | None = None
    for rule in rules:
        if rule.spec.match_file(path):
            found = rule.owners
    return found or None


def matches(owner: str, email: str, teams: dict[str, list[str]] | None = None) -> bool:
    """Whether approver `email` satisfies `owner` (an e-mail, `@user`, or `@org/team` via `teams`)."""
    owner_l = owner.lower()
    if "/" in owner_l:
        members = (teams or {}).get(owner) or (teams or {}).get(owner.lstrip("@")) or []
        return any(matches(m, email) for m in members if "/" not in m)
    email_l = email.lower()
    if "@" in owner_l and not owner_l.startswith("@"):
        return owner_l == email_l
    handle = owner_l.lstrip("@")
    return handle == email_l.split("@", 1)[0]
