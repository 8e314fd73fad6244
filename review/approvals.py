"""Recording approvals and rejections (optionally SSH-signed) for one commit."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from ect.review import records, signing
from ect.review.diff import Change
from ect.review.gitcmd import Git

from ect.errors import EctError


def identity(git: Git) -> tuple[str, str]:
    """(e-mail, name) of the reviewer from git config."""
    email = git.config("user.email")
    if not email:
        raise EctError("set your identity first: git config user.email you@example.com")
    return email, git.config("user.name") or ""  # exact: principals are compared as ssh-keygen does


def signing_key(git: Git, explicit: str | None) -> Path | None:
    """The private key to sign with: --key, $ECT_REVIEW_KEY, or git's user.signingKey (ssh format)."""
    raw = explicit or os.environ.get("ECT_REVIEW_KEY") or ""
    if not raw and (git.config("gpg.format") or "") == "ssh":
        raw = git.config("user.signingKey") or ""
        if raw.startswith("key::"):
            raise EctError("user.signingKey holds a literal key: pass the private key file with --key")
    if not raw:
        return None
    path = Path(raw).expanduser()
    if path.suffix == ".pub" and path.with_suffix("").is_file():
        path = path.with_suffix("")
    return path


def make_decision(
    git: Git,
    change: Change,
    kind: str,
    message: str,
    stage: str | None,
    key: Path | None,
    now: float | None = None,
    target: str | None = None,
) -> dict[str, Any]:
    """An approval/rejection/withdrawal/dismissal record for `change.head`, signed when a key is
    given; a dismissal names the reviewer whose rejection it dismisses (`target`)."""
    email, name = identity(git)
    if kind == "approval" and email.lower() in change.authors:
        raise EctError(f"{email} is an author of this change and cannot approve it", 1)
    data = records.make(
        kind,
        change.head,
        now or time.time(),
        by=email,
        name=name,
        base=change.base,
        patch_id=git.patch_id(change.base, change.head),
    )
    if message:
        data["message"] = message
    if target:
        data["target"] = target
    if stage:
        data["stage"] = stage
    if key is not None:
        data["sig"] = signing.sign(records.signed_payload(data), key)
    return data
