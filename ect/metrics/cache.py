"""Partial results of the report kept between runs (local SQLite store only).

A day's loop cube and counted-kind rows, and a week's exact loop p50, depend only on the events
with a timestamp in that day or week. Each is kept with a fingerprint of those events (their
count and highest id, read from the `ts` index alone) and reused while the fingerprint is the
same: an event added late (spool, sync) or pruned changes it, and the part is computed again.
Only whole days and weeks are kept. The file (`report-cache.json` in the state directory) is a
best effort: unreadable, foreign or unwritable means no cache, never a wrong figure.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

CACHE_NAME = "report-cache.json"
MAX_BYTES = 16 << 20  # a bigger file is not read (and is rewritten)
MAX_ENTRIES = 4000


class ReportCache:
    """{key: [fingerprint, value]}; `salt` names the code that made the values (a change drops them)."""

    def __init__(self, path: Path, salt: str) -> None:
        self.path = path
        self.salt = salt
        self.entries: dict[str, list[Any]] = {}
        self.changed = False
        self.hits = self.misses = 0
        try:
            if path.stat().st_size <= MAX_BYTES:
                data = json.loads(path.read_text(encoding="utf-8"))
                if (
                    isinstance(data, dict)
                    and data.get("salt") == salt
                    and isinstance(data.get("entries"), dict)
                ):
                    self.entries = data["entries"]
        except (OSError, ValueError):
            pass

    def get(self, key: str, fp: list[Any]) -> Any:
        entry = self.entries.get(key)
        if isinstance(entry, list) and len(entry) == 2 and entry[0] == fp:
            self.hits += 1
            return entry[1]
        self.misses += 1
        return None

    def put(self, key: str, fp: list[Any], value: Any) -> None:
        self.entries.pop(key, None)
        self.entries[key] = [fp, value]
        self.changed = True

    def save(self) -> None:
        """Write atomically (a temp file renamed over the old one); keep the newest `MAX_ENTRIES`."""
        if not self.changed:
            return
        keep = dict(list(self.entries.items())[-MAX_ENTRIES:])
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps({"salt": self.salt, "entries": keep}), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
