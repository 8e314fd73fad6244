"""Review records: one JSON object per line, schema-versioned, append-only.

Kinds and the notes ref each lives in:
  request, check              -> refs/notes/ect/reviews
  comment, resolve            -> refs/notes/ect/comments
  approval, rejection         -> refs/notes/ect/approvals
  promotion                   -> refs/notes/ect/promotions
  withdrawal, dismissal       -> refs/notes/ect/approvals
The server itself writes `received` records (server time) to `refs/notes/ect-server/log`,
a ref clients cannot push. A record always carries `v`, `type`, `commit` (the commit it is about, the one the
note is attached to) and `ts`. Lines that are not JSON objects, carry an unknown
schema version or type, or miss required fields are reported and skipped.

Parsing is bounded: a note over MAX_NOTE_BYTES is not read, a line over MAX_LINE_BYTES,
nesting deeper than MAX_DEPTH, numbers that are not finite or too long, and timestamps
out of range are reported and skipped; parsing never raises.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

SCHEMA_VERSION = 1
NOTES_PREFIX = "refs/notes/ect/"
SERVER_PREFIX = "refs/notes/ect-server/"
SERVER_LOG = SERVER_PREFIX + "log"
MAX_NOTE_BYTES = 1 << 20  # one note (all records about one commit)
MAX_LINE_BYTES = 16 << 10  # one record
MAX_DEPTH = 4  # record -> field -> list/table -> value
MAX_TS = 1e11  # year 5138: beyond it a timestamp is a forgery or garbage
REF_FOR_TYPE = {
    "request": "reviews",
    "check": "reviews",
    "comment": "comments",
    "resolve": "comments",
    "approval": "approvals",
    "rejection": "approvals",
    "promotion": "promotions",
    "withdrawal": "approvals",
    "dismissal": "approvals",
    "received": "ect-server",
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
    "withdrawal": ("by",),
    "dismissal": ("by", "target"),
    "received": ("stage", "ref"),
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


def _bad_number(text: str) -> float:
    raise ValueError(f"non-finite number {text}")


def _bounded_int(text: str) -> int:
    if len(text) > 20:
        raise ValueError("number too long")
    return int(text)


def _bounded_float(text: str) -> float:
    value = float(text)
    if len(text) > 40 or not math.isfinite(value):
        raise ValueError("number out of range")
    return value


def _depth(value: Any, limit: int) -> bool:
    """Whether `value` nests at most `limit` levels (a scalar is level 0)."""
    if isinstance(value, dict):
        return limit > 0 and all(_depth(v, limit - 1) for v in value.values())
    if isinstance(value, list):
        return limit > 0 and all(_depth(v, limit - 1) for v in value)
    return True


def loads(line: str) -> Any:
    """`json.loads` with bounded numbers; raises ValueError (or RecursionError) on bad input."""
    return json.loads(line, parse_int=_bounded_int, parse_float=_bounded_float, parse_constant=_bad_number)


def parse_note(text: str, note_commit: str, where: str) -> tuple[list[Record], list[str]]:
    """Parse one note's lines: (records, problems). Never raises."""
    records: list[Record] = []
    problems: list[str] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        label = f"{where} note on {note_commit[:12]} line {lineno}"
        if len(line) > MAX_LINE_BYTES:
            problems.append(f"{label}: record over {MAX_LINE_BYTES} bytes, skipped")
            continue
        try:
            data = loads(line)
        except (ValueError, RecursionError):
            problems.append(f"{label}: not JSON (or numbers/nesting out of bounds), skipped")
            continue
        if isinstance(data, dict) and not all(
            _depth(v, MAX_DEPTH - 1) for v in data.values() if isinstance(v, (dict, list))
        ):
            problems.append(f"{label}: nested deeper than {MAX_DEPTH}, skipped")
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
        ts = data.get("ts")
        bad_ts = "ts" in data and (
            isinstance(ts, bool) or not isinstance(ts, (int, float)) or not 0 <= ts < MAX_TS
        )
        bad_ts = bad_ts or any(
            not isinstance(data.get(k), str)
            for k in REQUIRED[kind]
            if k in data and k in ("by", "stage", "fp", "tree", "target")
        )
        if missing or bad_ts or not isinstance(data.get("commit"), str):
            what = f"missing {', '.join(missing)}" if missing else "bad field types"
            problems.append(f"{label}: {kind} record {what}, skipped")
            continue
        if data["commit"] != note_commit:
            problems.append(f"{label}: record is about {data['commit'][:12]} but attached elsewhere, skipped")
            continue
        records.append(Record(data, note_commit))
    return records, problems
