"""Percentiles and confidence intervals against textbook values; the SQLite histogram path's accuracy."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from ect import events
from ect.metrics import stats, store


def test_quantiles_interpolate_like_percentile_cont() -> None:
    assert stats.quantiles([1, 2, 3, 4], [0.5, 0.75, 0.9]) == [2.5, 3.25, pytest.approx(3.7)]
    assert stats.quantiles([], [0.5]) == [None]
    assert stats.quantiles([7], [0.1, 0.9]) == [7.0, 7.0]


def test_welch_interval_matches_a_hand_computed_example() -> None:
    a, b = [10.0, 12.0, 14.0, 16.0], [8.0, 9.0, 10.0, 11.0, 12.0]
    d = stats.welch(a, b)
    # means 13 and 10; variances 6.667 and 2.5; se = sqrt(1.6667 + 0.5) = 1.4720; df = 4.69 -> t(4) = 2.776
    assert (d.a, d.b, d.diff) == (13.0, 10.0, 3.0)
    assert d.low == pytest.approx(3.0 - 2.776 * 1.47196, abs=1e-3)
    assert d.high == pytest.approx(3.0 + 2.776 * 1.47196, abs=1e-3)
    assert not d.significant
    assert d.relative[0] == pytest.approx(0.3)


def test_proportion_interval_is_newcombe_wilson() -> None:
    lo, hi = stats.wilson(8, 10)
    assert (lo, hi) == (pytest.approx(0.4902, abs=1e-4), pytest.approx(0.9433, abs=1e-4))
    d = stats.proportion_diff(80, 100, 50, 100)
    assert d.diff == pytest.approx(0.3)
    assert d.significant and 0.16 < d.low < 0.3 < d.high < 0.43
    assert stats.proportion_diff(0, 0, 1, 2).diff is None


def test_sqlite_sampled_percentiles_are_within_two_percent(tmp_path: Path) -> None:
    state = tmp_path / ".ect"
    rnd = random.Random(7)
    values = [rnd.lognormvariate(5, 1) for _ in range(3000)]
    now = time.time()
    with events.opened(state) as conn:
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO events (uid, ts, kind, duration_ms) VALUES (?, ?, 'loop.run', ?)",
            [(f"u{i}", now - i, v) for i, v in enumerate(values)],
        )
        conn.execute("COMMIT")
    s = store.SqliteStore(state)
    try:
        exact = s.quantiles(["duration_ms"], "kind = 'loop.run'", (), (0.5, 0.9))[None]["duration_ms"]
        old = store.EXACT_LIMIT
        store.EXACT_LIMIT = 1000  # force the sampled path: every 3rd row
        try:
            approx = s.quantiles(["duration_ms"], "kind = 'loop.run'", (), (0.5, 0.9))[None]["duration_ms"]
        finally:
            store.EXACT_LIMIT = old
    finally:
        s.close()
    assert exact == stats.quantiles(values, [0.5, 0.9])
    for e, a in zip(exact, approx, strict=True):
        assert e is not None and a is not None
        assert abs(a - e) / e < 0.02
