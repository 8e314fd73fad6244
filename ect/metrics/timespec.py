"""`--since` / `--until` values: a duration back from now (`30d`, `12h`, `2w`) or a date/time."""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone

from ect.errors import EctError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
EARLIEST = 0.0  # the epoch: no event is older
LATEST = 253402300799.0  # 9999-12-31T23:59:59Z, the last instant a date label can show
HELP = "a duration back from now (90m, 12h, 30d, 4w), a date (2026-11-01) or a date-time (2026-11-01T09:00)"


def parse_time(value: str, option: str, now: float | None = None) -> float:
    """Epoch seconds for `value`, clamped to [1970, 9999] (any duration is accepted: `--since 99999999d`
    means "from the beginning"); a bad value is an EctError naming the option and the accepted forms."""
    now = time.time() if now is None else now
    text = value.strip()
    if text == "now":
        return now
    m = _DURATION.match(text.lower())
    if m:
        return _clamp(now - float(m.group(1)) * _UNITS[m.group(2)])
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise EctError(f"{option}: cannot read {value!r}: use {HELP}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    try:
        return _clamp(parsed.timestamp())
    except (OverflowError, ValueError):
        raise EctError(f"{option}: cannot read {value!r}: use {HELP}") from None


def _clamp(ts: float) -> float:
    return min(max(ts, EARLIEST), LATEST)


def window(since: str, until: str | None, now: float | None = None) -> tuple[float, float]:
    """(start, end) epoch seconds, checked to be a non-empty range."""
    now = time.time() if now is None else now
    start = parse_time(since, "--since", now)
    end = parse_time(until, "--until", now) if until else now
    if end <= start:
        if until:
            raise EctError(f"--until ({until}) must be after --since ({since})")
        raise EctError(f"--since ({since}) must be in the past")
    return start, end
