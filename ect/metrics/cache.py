"""Partial results of the report kept between runs (local SQLite store only).

A day's loop cube and counted-kind rows, and a week's (or day's) exact loop p50, depend only on
the events with a timestamp in that day or week. Each is kept under a key naming its day (`D<n>|`)
or week (`W<n>|`), and the file records which events it has seen: the store's id, its count of
deleted events (kept by a trigger) and the highest event id (a high-water mark; ids only grow).
On load, a different store or any deletion (prune) drops everything; events past the mark drop
only the days they fall in and the weeks holding those days, found from the new rows alone (a
rowid range). Only whole days and weeks are kept. The file (`report-cache.json` in the state
directory) is a best effort: unreadable, foreign or unwritable means no cache, never a wrong figure.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

CACHE_NAME = "report-cache.json"
MAX_BYTES = 16 << 20  # a bigger file is not read (and is rewritten)
MAX_ENTRIES = 4000
WEEK_OFFSET_DAYS = 4  # 1970-01-01 was a Thursday: weeks start on Monday (UTC)


def week_of_day(day: int) -> int:
    return (day - WEEK_OFFSET_DAYS) // 7


def day_key(day: float, what: str) -> str:
    return f"D{int(day)}|{what}"


def week_key(week: float, what: str) -> str:
    return f"W{int(week)}|{what}"


class ReportCache:
    """{key: value}; `salt` names the code that made the values (a change drops them).

    `store`: what identifies the store's contents apart from new events (its id and deletion
    count); `high_water`: the highest event id now; `new_days(mark)`: the UTC day numbers of the
    events with an id above `mark`.
    """

    def __init__(
        self,
        path: Path,
        salt: str,
        store: list[Any],
        high_water: int,
        new_days: Callable[[int], Iterable[int]],
    ) -> None:
        self.path = path
        self.salt = salt
        self.store = store
        self.high_water = high_water
        self.entries: dict[str, Any] = {}
        self.changed = True  # the mark moved, or the file is new: written at `save`
        self.hits = self.misses = 0
        try:
            if path.stat().st_size <= MAX_BYTES:
                data = json.loads(path.read_text(encoding="utf-8"))
                if (
                    isinstance(data, dict)
                    and data.get("salt") == salt
                    and data.get("store") == store
                    and isinstance(data.get("high_water"), int)
                    and data["high_water"] <= high_water
                    and isinstance(data.get("entries"), dict)
                ):
                    self.entries = data["entries"]
                    if data["high_water"] < high_water:
                        self._drop(new_days(data["high_water"]))
                    else:
                        self.changed = False
        except (OSError, ValueError):
            pass

    def _drop(self, days: Iterable[int]) -> None:
        """Forget what depends on these days: the days themselves and the weeks holding them."""
        stale = set()
        for day in days:
            stale.add(day_key(day, ""))
            stale.add(week_key(week_of_day(day), ""))
        self.entries = {k: v for k, v in self.entries.items() if k.split("|", 1)[0] + "|" not in stale}

    def get(self, key: str) -> Any:
        if key in self.entries:
            self.hits += 1
            return self.entries[key]
        self.misses += 1
        return None

    def put(self, key: str, value: Any) -> None:
        self.entries.pop(key, None)
        self.entries[key] = value
        self.changed = True

    def save(self) -> None:
        """Write atomically (a temp file renamed over the old one); keep the newest `MAX_ENTRIES`."""
        if not self.changed:
            return
        keep = dict(list(self.entries.items())[-MAX_ENTRIES:])
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        data = {"salt": self.salt, "store": self.store, "high_water": self.high_water, "entries": keep}
        try:
            tmp.write_text(json.dumps(data), encoding="utf-8")
            os.replace(tmp, self.path)
            self.changed = False
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
