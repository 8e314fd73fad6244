"""The rules a gate applies: settings, allowed signers and CODEOWNERS, from a work tree or a commit.

In a work tree they come from the checked-out files (advisory: the server decides). In
the server-side hook they come only from a protected place: the commit at the policy ref
named by the bare repository's own `git config ect.policyRef` (normally `refs/ect/policy`,
which changes only through its own gate: owners' signed approvals), as it was before the
push. `git config ect.allowedSignersFile` there overrides the allowed-signers file. No
policy ref, an unreadable policy or no allowed signers: every gated push is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ect.review import codeowners
from ect.review.gitcmd import Git
from ect.review.settings import Settings, parse, sections_from_toml

from ect.config import Config
from ect.errors import ConfigError, EctError

DEFAULT_POLICY_REF = "refs/ect/policy"


class PolicyError(EctError):
    """The protected policy is missing or unreadable: the server gate fails closed."""


@dataclass
class Policy:
    settings: Settings
    signers: bytes | None = None
    owners: list[codeowners.Rule] = field(default_factory=list)
    signers_source: str = ""
    commit: str | None = None  # the policy commit (server side)


def from_worktree(git: Git, root: Path, cfg: Config) -> Policy:
    settings = parse(cfg.sections, cfg.source if cfg.source != "defaults" else "config")
    signers, source = None, ""
    rel = settings.review["allowed_signers"] or git.config("gpg.ssh.allowedSignersFile") or ""
    if rel:
        path = Path(rel).expanduser()
        path = path if path.is_absolute() else root / path
        try:
            signers, source = path.read_bytes(), str(path)
        except OSError:
            signers, source = None, str(path)
    owners_text = _read_owners(settings, lambda p: _read(root / p))
    return Policy(settings, signers, codeowners.parse(owners_text) if owners_text else [], source)


def from_commit(git: Git, commit: str | None) -> Policy:
    def show(path: str) -> bytes | None:
        return git.show_file(commit, path) if commit else None

    sections, where = sections_from_toml(show("pyproject.toml"), show("ect.toml"))
    settings = parse(sections, where)
    signers, source = None, ""
    override = git.config("ect.allowedSignersFile")
    if override:
        signers, source = _read(Path(override)), override
    elif settings.review["allowed_signers"]:
        source = f"{(commit or '')[:12]}:{settings.review['allowed_signers']}"
        signers = show(settings.review["allowed_signers"])
    owners_text = _read_owners(settings, show)
    return Policy(settings, signers, codeowners.parse(owners_text) if owners_text else [], source)


def policy_ref(git: Git) -> str | None:
    """The policy ref the bare repository's own config names (None: not configured)."""
    return git.config("ect.policyRef")


def from_server(git: Git) -> Policy:
    """The policy of the central repository, from its protected policy ref; raises PolicyError."""
    ref = policy_ref(git)
    if not ref:
        raise PolicyError(
            "no protected policy: set `git config ect.policyRef refs/ect/policy` in the central repository"
        )
    if not ref.startswith("refs/ect/"):
        raise PolicyError(f"ect.policyRef must be under refs/ect/ (a namespace clients cannot push): {ref}")
    commit = git.maybe_rev(ref)
    if commit is None:
        raise PolicyError(f"the policy ref {ref} does not exist in the central repository")
    try:
        policy = from_commit(git, commit)
    except ConfigError as exc:
        raise PolicyError(f"the policy at {ref} is unreadable: {exc}") from None
    if policy.signers is None or not policy.signers.strip():
        where = policy.signers_source or "review.allowed_signers"
        raise PolicyError(f"the policy at {ref} has no allowed signers ({where}): nothing can be trusted")
    policy.settings.review["require_signed"] = True  # the server trusts signed or server-made facts only
    policy.commit = commit
    return policy


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _read_owners(settings: Settings, reader: Callable[[str], bytes | None]) -> str:
    paths = [settings.review["codeowners"]] if settings.review["codeowners"] else list(codeowners.LOCATIONS)
    for rel in paths:
        data = reader(rel)
        if data is not None:
            return data.decode("utf-8", "replace")
    return ""
