"""Secret scrubbing: private keys, tokens, passwords and high-entropy literals are masked before training."""

from __future__ import annotations

import math
import re
from collections import Counter

MASK = "<secret>"

_PRIVATE_KEY = re.compile(
    r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
    r".*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----",
    re.DOTALL,
)
_TOKENS = re.compile(
    r"\b(?:"
    r"AKIA[0-9A-Z]{16}"  # AWS access key id
    r"|gh[pousr]_[A-Za-z0-9]{30,}"  # GitHub tokens
    r"|github_pat_[A-Za-z0-9_]{30,}"
    r"|xox[abprs]-[A-Za-z0-9-]{10,}"  # Slack
    r"|sk-[A-Za-z0-9_-]{20,}"  # API secret keys
    r"|AIza[0-9A-Za-z_-]{35}"  # Google API key
    r"|glpat-[A-Za-z0-9_-]{20,}"  # GitLab
    r"|eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}"  # JWT
    r")"
)
# `password = "hunter2"`, `API_KEY: "..."`, `token="..."`: the quoted value is masked.
_ASSIGNED = re.compile(
    r"""(?ix)
    (\b\w*(?:password|passwd|pwd|secret|token|api_?key|access_?key|private_?key|credentials?|auth_?token)
     ["']?\s*[:=]\s*[rbuf]?)
    (["'])([^"'\s]{4,})\2
    """
)
_URL_CREDENTIALS = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^/\s:@'\"]+:)([^@\s/'\"]{3,})(@)", re.I)
_LITERAL = re.compile(r"""(["'])([A-Za-z0-9+/=_\-.]{20,})\1""")
_PLACEHOLDER = re.compile(r"^(?:x+|\*+|\.+|<[^>]*>|\{[^}]*\}|%\(?\w*\)?s|changeme|password|secret)$", re.I)


def entropy(text: str) -> float:
    """Shannon entropy in bits per character."""
    if not text:
        return 0.0
    counts = Counter(text)
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def _high_entropy(value: str) -> bool:
    if len(value) < 20 or (value.isidentifier() and "_" in value):
        return False
    if not (any(c.isdigit() for c in value) and any(c.isalpha() for c in value)):
        return False
    hexish = all(c in "0123456789abcdefABCDEF" for c in value)
    return entropy(value) >= (3.0 if hexish else 4.2)


def scrub(text: str) -> tuple[str, int]:
    """Return `text` with secrets masked and how many were masked."""
    count = 0

    def mask_all(_: re.Match[str]) -> str:
        nonlocal count
        count += 1
        return MASK

    text = _PRIVATE_KEY.sub(mask_all, text)
    text = _TOKENS.sub(mask_all, text)

    def mask_assigned(m: re.Match[str]) -> str:
        nonlocal count
        value = m.group(3)
        if (
            _PLACEHOLDER.match(value)
            or value == MASK
            or (len(value) < 8 and not any(c.isdigit() for c in value))
        ):
            return m.group(0)
        count += 1
        return f"{m.group(1)}{m.group(2)}{MASK}{m.group(2)}"

    text = _ASSIGNED.sub(mask_assigned, text)

    def mask_url(m: re.Match[str]) -> str:
        nonlocal count
        if _PLACEHOLDER.match(m.group(2)):
            return m.group(0)
        count += 1
        return f"{m.group(1)}{MASK}{m.group(3)}"

    text = _URL_CREDENTIALS.sub(mask_url, text)

    def mask_literal(m: re.Match[str]) -> str:
        nonlocal count
        if not _high_entropy(m.group(2)):
            return m.group(0)
        count += 1
        return f"{m.group(1)}{MASK}{m.group(1)}"

    text = _LITERAL.sub(mask_literal, text)
    return text, count
