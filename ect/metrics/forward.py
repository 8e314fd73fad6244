"""Forwarding local events to the team database: SQLite is the outbox.

Rows past the per-target watermark (`forward_state.last_id`) are copied in batches into
PostgreSQL with `ON CONFLICT (uid) DO NOTHING`; the watermark moves only after the remote
commit, so a crash or an unreachable server re-sends (idempotently) and never loses.
`python -m ect.metrics.forward STATE_DIR` is the detached forwarder `ect.events.record`
starts in team mode: it takes a lock, drains, backs off when the server is down.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import signal
import sqlite3
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ect import events
from ect.errors import EctError
from ect.metrics import pg

BATCH = 20_000
FORWARDED_COLUMNS = ("uid", "ts", "kind", *events.COLUMNS, "data", "attempt", *events.PHASES, *events.NUMBERS)
BACKOFF_FILE = "forward.json"


@dataclass
class SyncResult:
    sent: int  # rows sent this time (duplicates on the server included)
    pending: int  # rows still waiting locally
    target: str
    new: int = 0  # rows the server did not have yet


def target_key(url: str) -> str:
    """A stable key for the watermark of one team database (no password stored)."""
    return hashlib.sha256(pg.redact(url).encode()).hexdigest()[:16]


def pending_count(conn: sqlite3.Connection, url: str) -> int:
    return int(conn.execute("SELECT count(*) FROM events WHERE id > ?", (_mark(conn, url),)).fetchone()[0])


def _mark(conn: sqlite3.Connection, url: str) -> int:
    row = conn.execute("SELECT last_id FROM forward_state WHERE target = ?", (target_key(url),)).fetchone()
    return int(row[0]) if row else 0


def reset_mark(state_dir: Path, url: str) -> None:
    """Forget what was sent to `url`: the next sync sends everything (duplicates are skipped there)."""
    with events.opened(state_dir) as conn:
        conn.execute("DELETE FROM forward_state WHERE target = ?", (target_key(url),))


def forwarded_mark(conn: sqlite3.Connection, url: str) -> int:
    """The highest local id known to be in the team database."""
    return _mark(conn, url)


def sync(state_dir: Path, url: str, timeout: int = pg.CONNECT_TIMEOUT_S, remote: Any = None) -> SyncResult:
    """Forward every pending local event; raises EctError when the server is unreachable.

    `remote`: an open connection to reuse (the caller closes it); else one is opened and closed here.
    """
    sent = new = 0
    own = remote is None
    with events.opened(state_dir) as local:
        if remote is None:
            remote = pg.connect(url, timeout=timeout)
        try:
            while True:
                mark = _mark(local, url)
                rows = local.execute(
                    f"SELECT id, {', '.join(FORWARDED_COLUMNS)} FROM events WHERE id > ? ORDER BY id LIMIT ?",
                    (mark, BATCH),
                ).fetchall()
                if not rows:
                    break
                new += _send(remote, [r[1:] for r in rows])
                local.execute(
                    "INSERT INTO forward_state (target, last_id, updated) VALUES (?, ?, ?)"
                    " ON CONFLICT (target) DO UPDATE SET last_id = excluded.last_id,"
                    " updated = excluded.updated",
                    (target_key(url), rows[-1][0], time.time()),
                )
                sent += len(rows)
        except Exception as exc:
            import psycopg

            if isinstance(exc, psycopg.Error):
                raise EctError(
                    f"team database {pg.redact(url)} failed mid-sync ({type(exc).__name__}); "
                    f"{sent} events forwarded, the rest stay queued locally"
                ) from None
            raise
        finally:
            if own:
                remote.close()
        pending = pending_count(local, url)
    return SyncResult(sent=sent, pending=pending, target=pg.redact(url), new=new)


def _send(remote: Any, rows: list[tuple[Any, ...]]) -> int:
    """COPY a batch into a temp table, then insert what the server does not have yet (how many)."""
    cols = ", ".join(FORWARDED_COLUMNS)
    with remote.transaction(), remote.cursor() as cur:
        cur.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS ect_in (LIKE {pg.TABLE} INCLUDING DEFAULTS)"
            " ON COMMIT DELETE ROWS"
        )
        with cur.copy(f"COPY ect_in ({cols}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        cur.execute(f"INSERT INTO {pg.TABLE} ({cols}) SELECT {cols} FROM ect_in ON CONFLICT (uid) DO NOTHING")
        return max(int(cur.rowcount), 0)


def _backoff(state_dir: Path, failed: bool) -> None:
    """After a failure wait 10 s, doubling up to 10 min, before `record` spawns the next forwarder."""
    path = state_dir / BACKOFF_FILE
    try:
        fails = int(json.loads(path.read_text()).get("fails", 0)) if path.exists() else 0
    except (OSError, ValueError, AttributeError):
        fails = 0
    fails = fails + 1 if failed else 0
    try:
        path.write_text(json.dumps({"fails": fails, "at": time.time()}))
        delay = min(600.0, 10.0 * 2 ** (fails - 1)) if failed else 0.0
        marker = state_dir / events.FORWARD_NEXT
        marker.touch()
        now = time.time()
        os.utime(marker, (now, now + delay))
    except OSError:
        pass


def _next_spawn(state_dir: Path) -> float:
    try:
        return (state_dir / events.FORWARD_NEXT).stat().st_mtime
    except OSError:
        return 0.0


MAX_LIFETIME_S = 300  # a forwarder ends itself after this long, hung or not (SIGALRM)
STALE_S = 90.0  # a lock whose holder has not shown progress for this long is taken over
LOCK_FILE = "forward.lock"


def _heartbeat(lock: Any) -> None:
    """Say in the lock file who holds it and that it is still making progress."""
    with contextlib.suppress(OSError):
        lock.seek(0)
        lock.truncate()
        lock.write(f"{os.getpid()} {time.time():.3f}\n")
        lock.flush()


def _holder(path: Path) -> tuple[int, float] | None:
    try:
        pid_text, beat_text = path.read_text().split()[:2]
        return int(pid_text), float(beat_text)
    except (OSError, ValueError):
        return None


def _is_forwarder(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"ect.metrics.forward" in cmdline


def _take_lock(lock: Any, path: Path, stale_s: float) -> bool:
    """The forwarder lock; a holder silent for `stale_s` (hung on a dead network) is ended first."""
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        pass
    holder = _holder(path)
    if holder is None or time.time() - holder[1] < stale_s or not _is_forwarder(holder[0]):
        return False  # another forwarder is at work
    with contextlib.suppress(OSError):
        os.kill(holder[0], signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError:
            time.sleep(0.05)
    return False


def run_forwarder(
    state_dir: Path, url: str, linger_s: float = 2.0, max_s: float | None = None, stale_s: float = STALE_S
) -> int:
    """Drain the outbox under an exclusive lock; keep draining while events keep coming.

    Never hangs: the connection has keepalives and a statement timeout (`pg.connect`), the
    process ends itself after `max_s` (SIGALRM, whatever it is blocked in; `main` sets
    `MAX_LIFETIME_S`), and a successor takes over a lock whose holder has shown no progress for
    `stale_s`.
    """
    if max_s is not None:
        signal.alarm(max(1, math.ceil(max_s)))
    lock_path = state_dir / LOCK_FILE
    with open(lock_path, "a+") as lock:
        if not _take_lock(lock, lock_path, stale_s):
            return 0
        _heartbeat(lock)
        try:
            remote = pg.connect(url)
        except EctError:
            _backoff(state_dir, failed=True)
            return 1
        idle_since = time.monotonic()
        try:
            # drain at least once, then linger while events keep coming, and at least until
            # `record` may spawn a successor
            first = True
            while (
                first
                or time.monotonic() - idle_since < linger_s
                or time.time() < _next_spawn(state_dir) + 0.5
            ):
                first = False
                try:
                    result = sync(state_dir, url, remote=remote)
                except EctError:
                    _backoff(state_dir, failed=True)
                    return 1
                _heartbeat(lock)
                if result.sent:
                    idle_since = time.monotonic()
                time.sleep(0.2)
        finally:
            remote.close()
        _backoff(state_dir, failed=False)
    return 0


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m ect.metrics.forward STATE_DIR", file=sys.stderr)
        return 2
    state_dir = Path(argv[0])
    try:
        url = pg.team_url()
    except EctError:
        _backoff(state_dir, failed=True)  # a malformed URL: don't be respawned on every event
        return 2
    if not url:
        return 0
    return run_forwarder(state_dir, url, max_s=MAX_LIFETIME_S)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
