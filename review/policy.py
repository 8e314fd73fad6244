"""The rules a gate applies: settings, allowed signers and CODEOWNERS, from a work tree or a commit.

In a work tree they come from the checked-out files. In the server-side hook they come
from the tip of the bare repository's HEAD branch as it was before the push (so a push
cannot relax the rules it is judged by); `git config ect.allowedSignersFile` in the bare
repository overrides the allowed-signers file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ect.review import codeowners
from ect.review.gitcmd import Git
from ect.review.settings import Settings, parse, sections_from_toml

from ect.config import Config


@dataclass
class Policy:
    settings: Settings
    signers: bytes | None = None
    owners: list[codeowners.Rule] = field(default_factory=list)
    signers_source: str = ""


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
