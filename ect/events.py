"""The event log: one embedded SQLite database (WAL) in the state directory.

Every part of ect appends events here (loop runs, completions, fixes, reviews,
promotions). A write never fails its caller: a broken database is moved aside and
rebuilt, a locked one is skipped, and either is reported once on stderr.
The schema is versioned; `MIGRATIONS[i]` upgrades version i to i+1.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ect.state import ensure_state_dir

DB_NAME = "events.db"

MIGRATIONS: list[str] = [
    # 0 -> 1: the event table. Common fields are columns; the rest is JSON in `data`.
    """
    CREATE TABLE IF NOT EXISTS events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts REAL NOT NULL,
        kind TEXT NOT NULL,
        source TEXT,
        repo TEXT,
        author TEXT,
        commit_sha TEXT,
        duration_ms REAL,
        outcome TEXT,
        data TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX IF NOT EXISTS events_kind_ts ON events(kind, ts);
    CREATE INDEX IF NOT EXISTS events_ts ON events(ts);
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)
COLUMNS = ("source", "repo", "author", "commit_sha", "duration_ms", "outcome")

_warned = False


def _warn(message: str) -> None:
    global _warned
    if not _warned:
        _warned = True
        print(f"ect: warning: event log: {message}", file=sys.stderr)


def migrate(conn: sqlite3.Connection) -> None:
    """Bring the database to `SCHEMA_VERSION` (idempotent)."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise sqlite3.DatabaseError(f"schema version {version} is newer than this ect ({SCHEMA_VERSION})")
    for step in range(version, SCHEMA_VERSION):
        conn.executescript(f"BEGIN; {MIGRATIONS[step]}; PRAGMA user_version = {step + 1}; COMMIT;")


def connect(state_dir: Path, timeout: float = 0.5) -> sqlite3.Connection:
    """Open (creating and migrating) the event database."""
    ensure_state_dir(state_dir)
    conn = sqlite3.connect(state_dir / DB_NAME, timeout=timeout, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    if conn.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
        migrate(conn)
    return conn


@contextmanager
def opened(state_dir: Path) -> Iterator[sqlite3.Connection]:
    """`connect` as a context manager that closes the connection."""
    conn = connect(state_dir)
    try:
        yield conn
    finally:
        conn.close()


def _row(kind: str, fields: dict[str, Any], ts: float | None) -> tuple[Any, ...]:
    cols = [fields.pop(c, None) for c in COLUMNS]
    return (ts if ts is not None else time.time(), kind, *cols, json.dumps(fields, default=str))


def record(state_dir: Path, kind: str, ts: float | None = None, **fields: Any) -> bool:
    """Append one event; never raises. Returns whether it was stored."""
    row = _row(kind, dict(fields), ts)
    for attempt in (1, 2):
        try:
            conn = connect(state_dir)
            try:
                conn.execute(
                    "INSERT INTO events (ts, kind, source, repo, author, commit_sha, duration_ms, outcome, data)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    row,
                )
            finally:
                conn.close()
            return True
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                _warn(f"database busy, event skipped ({exc})")
                return False
            if attempt == 1 and _quarantine(state_dir, exc):
                continue
            _warn(f"cannot write ({exc})")
            return False
        except sqlite3.DatabaseError as exc:
            if attempt == 1 and _quarantine(state_dir, exc):
                continue
            _warn(f"cannot write ({exc})")
            return False
        except OSError as exc:
            _warn(f"cannot write ({exc})")
            return False
    return False


def _quarantine(state_dir: Path, exc: Exception) -> bool:
    """Move a corrupt database aside (kept for inspection) so a fresh one is created."""
    db = state_dir / DB_NAME
    if not db.exists() or "newer than" in str(exc):
        return False
    stamp = time.strftime("%Y%m%d-%H%M%S")
    try:
        os.replace(db, db.with_name(f"{DB_NAME}.corrupt-{stamp}"))
        for suffix in ("-wal", "-shm"):
            side = db.with_name(DB_NAME + suffix)
            if side.exists():
                side.unlink()
    except OSError:
        return False
    _warn(f"database was corrupt ({exc}); moved aside and rebuilt")
    return True


def query(state_dir: Path, kind: str | None = None, since: float | None = None) -> list[dict[str, Any]]:
    """Read events back as dicts (oldest first); an unreadable database reads as empty."""
    sql = "SELECT id, ts, kind, source, repo, author, commit_sha, duration_ms, outcome, data FROM events"
    where, args = [], []
    if kind is not None:
        where.append("kind = ?")
        args.append(kind)
    if since is not None:
        where.append("ts >= ?")
        args.append(since)
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY ts, id"
    if not (state_dir / DB_NAME).exists():
        return []
    try:
        with opened(state_dir) as conn:
            rows = conn.execute(sql, args).fetchall()
    except sqlite3.DatabaseError as exc:
        _warn(f"cannot read ({exc})")
        return []
    out = []
    for rid, ts, k, source, repo, author, sha, dur, outcome, data in rows:
        event = {"id": rid, "ts": ts, "kind": k, "source": source, "repo": repo, "author": author,
                 "commit_sha": sha, "duration_ms": dur, "outcome": outcome}
        try:
            event.update(json.loads(data))
        except ValueError:
            pass
        out.append(event)
    return out
