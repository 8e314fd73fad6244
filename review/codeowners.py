"""CODEOWNERS (GitHub syntax): `pattern owner...` lines, the last matching line wins.

Owners are `@user`, `@org/team` or e-mail addresses. An approver (a signer principal,
verified by signature when `require_signed` is on) matches an owner only by exact
identity: an e-mail owner when it is the same address (the domain compared without case,
the local part exactly), `@user` when `review.users` maps that handle to the approver's
address, `@org/team` when `review.teams` lists the approver (by address or mapped
handle). A handle nobody mapped matches nobody: the gate fails closed.
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


def same_identity(a: str, b: str) -> bool:
    """Two e-mail identities are the same: local part exactly, domain without case."""
    la, _, da = a.strip().rpartition("@")
    lb, _, db = b.strip().rpartition("@")
    return bool(la) and la == lb and da.lower() == db.lower()


def identities(owner: str, users: dict[str, list[str]] | None) -> list[str]:
    """The exact identities a `@user` handle or an e-mail owner stands for."""
    if not owner.startswith("@"):
        return [owner]
    users = users or {}
    return list(users.get(owner) or users.get(owner[1:]) or [])


def matches(
    owner: str,
    principal: str,
    teams: dict[str, list[str]] | None = None,
    users: dict[str, list[str]] | None = None,
) -> bool:
    """Whether approver `principal` satisfies `owner` (an e-mail, `@user` or `@org/team`)."""
    if owner.startswith("@") and "/" in owner:
        members = (teams or {}).get(owner) or (teams or {}).get(owner[1:]) or []
        return any(matches(m, principal, None, users) for m in members if "/" not in m)
    return any(same_identity(ident, principal) for ident in identities(owner, users))
