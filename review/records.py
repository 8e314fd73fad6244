"""Review records: one JSON object per line, schema-versioned, append-only.

Kinds and the notes ref each lives in:
  request, check              -> refs/notes/ect/reviews
  comment, resolve            -> refs/notes/ect/comments
  approval, rejection         -> refs/notes/ect/approvals
  promotion                   -> refs/notes/ect/promotions
A record always carries `v`, `type`, `commit` (the commit it is about, the one the
note is attached to) and `ts`. Lines that are not JSON objects, carry an unknown
schema version or type, or miss required fields are reported and skipped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

SCHEMA_VERSION = 1
NOTES_PREFIX = "refs/notes/ect/"
REF_FOR_TYPE = {
    "request": "reviews",
    "check": "reviews",
    "comment": "comments",
    "resolve": "comments",
    "approval": "approvals",
    "rejection": "approvals",
    "promotion": "promotions",
}
REFS = ("reviews", "comments", "approvals", "promotions")
REQUIRED: dict[str, tuple[str, ...]] = {
    "request": ("base", "by"),
    "check": ("tree", "outcome"),
    "comment": ("fp", "rule", "severity", "message"),
    "resolve": ("fp",),
    "approval": ("by",),
    "rejection": ("by",),
    "promotion": ("stage", "by"),
}


@dataclass(frozen=True)
class Record:
    """One parsed record; `data` is the full JSON object."""

    data: dict[str, Any]
    note_commit: str

    @property
    def type(self) -> str:
        return str(self.data["type"])

    @property
    def commit(self) -> str:
        return str(self.data["commit"])

    @property
    def ts(self) -> float:
        return float(self.data["ts"])

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)


def dumps(data: dict[str, Any]) -> str:
    """The one-line serialisation stored in notes (sorted keys: stable under merges)."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def signed_payload(data: dict[str, Any]) -> bytes:
    """The bytes a signature covers: the record without its `sig` field."""
    return dumps({k: v for k, v in data.items() if k != "sig"}).encode()


def make(kind: str, commit: str, ts: float, **fields: Any) -> dict[str, Any]:
    return {"v": SCHEMA_VERSION, "type": kind, "commit": commit, "ts": round(ts, 3), **fields}


def parse_note(text: str, note_commit: str, where: str) -> tuple[list[Record], list[str]]:
    """Parse one note's lines: (records, problems)."""
    records: list[Record] = []
    problems: list[str] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        label = f"{where} note on {note_commit[:12]} line {lineno}"
        try:
            data = json.loads(line)
        except ValueError:
            problems.append(f"{label}: not JSON, skipped")
            continue
        if not isinstance(data, dict):
            problems.append(f"{label}: not a JSON object, skipped")
            continue
        if data.get("v") != SCHEMA_VERSION:
            problems.append(f"{label}: unknown schema version {data.get('v')!r}, skipped")
            continue
        kind = data.get("type")
        if kind not in REQUIRED or REF_FOR_TYPE[kind] != where:
            problems.append(f"{label}: unknown record type {kind!r}, skipped")
            continue
        missing = [k for k in ("commit", "ts", *REQUIRED[kind]) if k not in data]
        bad_ts = "ts" in data and not isinstance(data["ts"], (int, float))
        if missing or bad_ts or not isinstance(data.get("commit"), str):
            what = f"missing {', '.join(missing)}" if missing else "bad field types"
            problems.append(f"{label}: {kind} record {what}, skipped")
            continue
        if data["commit"] != note_commit:
            problems.append(f"{label}: record is about {data['commit'][:12]} but attached elsewhere, skipped")
            continue
        records.append(Record(data, note_commit))
    return records, problems
