"""Bot findings and their fingerprints.

A fingerprint identifies a finding across re-runs and new commits: it hashes the rule,
the file, the normalised text of the flagged line and the message (not the line
number, so moving code does not re-post it), plus an occurrence index for identical
lines in one file.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Finding:
    rule: str
    severity: str  # "blocking" | "advisory"
    message: str
    path: str | None = None
    line: int | None = None
    snippet: str = ""
    fix: str | None = None
    fp: str = field(default="", compare=False)

    @property
    def blocking(self) -> bool:
        return self.severity == "blocking"


def fingerprint_all(findings: list[Finding]) -> list[Finding]:
    """Set `fp` on each finding, unique within the list; duplicates (same fp) are dropped."""
    seen: Counter[str] = Counter()
    out: list[Finding] = []
    done: set[str] = set()
    for f in sorted(findings, key=lambda f: (f.path or "", f.line or 0, f.rule, f.message)):
        key = "\0".join([f.rule, f.path or "", " ".join(f.snippet.split()), f.message])
        seen[key] += 1
        f.fp = hashlib.sha1(f"{key}\0{seen[key]}".encode()).hexdigest()[:20]
        if f.fp not in done:
            done.add(f.fp)
            out.append(f)
    return out
