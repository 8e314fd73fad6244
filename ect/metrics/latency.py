"""Exact loop-latency percentiles over any window, from sorted values per day (local store).

Each whole UTC day's timed developer runs are kept as sorted arrays (total and phases) in
`report-values.db` in the state directory, validated like the report cache (`ect.metrics.cache`):
the store's id and deletion count, and the highest event id, so new events recompute only their
days and a prune recomputes everything. Partial days at the window's ends are read fresh. A
percentile over many days is found by selection across the sorted arrays (no merge, no sample),
with the same interpolation as `ect.metrics.stats.quantile`: exact, whatever the number of runs.
The file is a best effort: busy, damaged or unwritable means computing without it.
"""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

VALUES_NAME = "report-values.db"
Arrays = list["array[float]"]  # one sorted array('d') per column


def kth(arrays: Sequence[Sequence[float]], k: int) -> float:
    """The k-th smallest (0-based) value of the union of sorted arrays.

    Each round takes the weighted median of the remaining ranges' middle values as the pivot and
    keeps the side holding rank k: at least a quarter of what remains goes each round."""
    lo = [0] * len(arrays)
    hi = [len(a) for a in arrays]
    while True:
        mids = sorted((a[(b + e) // 2], e - b) for a, b, e in zip(arrays, lo, hi, strict=True) if e > b)
        half, acc, pivot = sum(w for _, w in mids) / 2, 0, mids[-1][0]
        for value, weight in mids:
            acc += weight
            if acc >= half:
                pivot = value
                break
        below = [bisect_left(a, pivot, b, e) for a, b, e in zip(arrays, lo, hi, strict=True)]
        upto = [bisect_right(a, pivot, b, e) for a, b, e in zip(arrays, lo, hi, strict=True)]
        if k < sum(below):
            hi = below
        elif k < sum(upto):
            return float(pivot)
        else:
            lo = upto


def quantile(arrays: Sequence[Sequence[float]], q: float) -> float | None:
    """`stats.quantile` of the union of sorted arrays."""
    arrays = [a for a in arrays if len(a)]
    n = sum(len(a) for a in arrays)
    if n == 0:
        return None
    pos = (n - 1) * q
    k = math.floor(pos)
    a = kth(arrays, k)
    b = kth(arrays, k + 1) if k + 1 < n else a
    return float(a + (b - a) * (pos - k))


def _sorted_columns(rows: Iterable[Sequence[float]], width: int) -> Arrays:
    cols: Arrays = [array("d") for _ in range(width)]
    for row in rows:
        for col, value in zip(cols, row, strict=True):
            col.append(value)
    return [array("d", sorted(c)) for c in cols]


class DayValues:
    """Sorted values per whole day: {day: one array per column}, kept in `report-values.db`."""

    def __init__(
        self,
        path: Path,
        salt: str,
        store: list[Any],
        high_water: int,
        new_days: Callable[[int], Iterable[int]],
    ) -> None:
        self.conn: sqlite3.Connection | None = None
        self.high_water = high_water
        for attempt in (1, 2):
            try:
                self._open(path, salt, store, high_water, new_days)
                return
            except sqlite3.DatabaseError as exc:
                busy = "locked" in str(exc) or "busy" in str(exc) or "readonly" in str(exc)
                if busy or attempt == 2:
                    return
                with contextlib.suppress(OSError):  # damaged: start it again
                    path.unlink()

    def _open(
        self,
        path: Path,
        salt: str,
        store: list[Any],
        high_water: int,
        new_days: Callable[[int], Iterable[int]],
    ) -> None:
        conn = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")  # a second report at once computes without the file
            conn.execute(
                "CREATE TABLE IF NOT EXISTS meta (id INTEGER PRIMARY KEY CHECK (id = 1), value TEXT)"
            )
            conn.execute("CREATE TABLE IF NOT EXISTS days (day INTEGER PRIMARY KEY, n INTEGER, data BLOB)")
            row = conn.execute("SELECT value FROM meta WHERE id = 1").fetchone()
            meta = json.loads(row[0]) if row else {}
            mark = meta.get("high_water") if isinstance(meta, dict) else None
            if (
                not isinstance(mark, int)
                or meta.get("salt") != salt
                or meta.get("store") != store
                or mark > high_water
            ):
                conn.execute("DELETE FROM days")
            elif mark < high_water:
                conn.executemany("DELETE FROM days WHERE day = ?", [(d,) for d in new_days(mark)])
            value = json.dumps({"salt": salt, "store": store, "high_water": high_water})
            conn.execute("INSERT OR REPLACE INTO meta VALUES (1, ?)", (value,))
            self.conn = conn
        except (sqlite3.Error, ValueError) as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
            if isinstance(exc, ValueError):
                raise sqlite3.DatabaseError(f"unreadable meta: {exc}") from None
            raise

    def get(self, day: int, width: int) -> Arrays | None:
        if self.conn is None:
            return None
        try:
            row = self.conn.execute("SELECT n, data FROM days WHERE day = ?", (day,)).fetchone()
        except sqlite3.Error:
            return None
        if row is None or len(row[1]) != row[0] * width * 8:
            return None
        flat = array("d")
        flat.frombytes(row[1])
        n = row[0]
        return [flat[i * n : (i + 1) * n] for i in range(width)]

    def put(self, day: int, arrays: Arrays) -> None:
        if self.conn is None:
            return
        n = len(arrays[0]) if arrays else 0
        blob = b"".join(a.tobytes() for a in arrays)
        with contextlib.suppress(sqlite3.Error):
            self.conn.execute("INSERT OR REPLACE INTO days VALUES (?, ?, ?)", (day, n, blob))

    def close(self) -> None:
        if self.conn is None:
            return
        with contextlib.suppress(sqlite3.Error):
            self.conn.execute("COMMIT")
        with contextlib.suppress(sqlite3.Error):
            self.conn.close()
        self.conn = None


def day_values(
    rows: Callable[[str, Sequence[Any]], list[tuple[Any, ...]]],
    select: str,
    where: str,
    slices: Sequence[tuple[float, float, float]],
    width: int,
    cache: DayValues | None,
) -> dict[int, Arrays]:
    """{day: sorted arrays} of `select` (width columns) over rows matching `where` (whose last two
    parameters are the slice's bounds), per (day, start, end) slice; whole days from and into `cache`."""
    out: dict[int, Arrays] = {}
    for day, lo, hi in slices:
        d = int(day)
        whole = lo == day * 86400 and hi == lo + 86400
        got = cache.get(d, width) if cache is not None and whole else None
        if got is None:
            got = _sorted_columns(rows(f"SELECT {select} FROM {{t}} WHERE {where}", (lo, hi)), width)
            if cache is not None and whole:
                cache.put(d, got)
        out[d] = got
    return out
