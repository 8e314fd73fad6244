"""The event log: one embedded SQLite database (WAL) in the state directory.

Every part of ect appends events here (loop runs, completions, fixes, reviews,
promotions). A write never fails its caller and never waits long: a damaged database
is moved aside and rebuilt; a busy or read-only one makes the event go to an
append-only spool file (`events.spool`) that the next reader folds back in (the two
coordinate with flock, so no event is lost). A write never runs the WAL checkpoint
(an fsync): readers do, and writers start one in a background thread now and then.
The schema is versioned; `MIGRATIONS[i]` upgrades version i to i+1.

Each event carries a random `uid`, which makes forwarding to a team database
(`ECT_METRICS_URL`, see `ect.metrics.forward`) idempotent: SQLite is the outbox.
"""

from __future__ import annotations

import _thread
import fcntl
import json
import os
import sqlite3
import struct
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from ect.state import ensure_state_dir

DB_NAME = "events.db"
SPOOL_NAME = "events.spool"
URL_ENV = "ECT_METRICS_URL"
FORWARD_NEXT = "forward.next"  # its mtime: the earliest time a forwarder may be spawned again
FORWARD_EVERY_S = 5.0  # at most one forwarder start per this many seconds (it drains, lingers 2 s, exits)

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
    # 1 -> 2: a unique id per event (idempotent forwarding), the numbers the report aggregates
    # as real columns (SQL aggregation without JSON parsing), the loop's attempt counter, and
    # the forwarding watermark per team database.
    """
    ALTER TABLE events ADD COLUMN uid TEXT;
    ALTER TABLE events ADD COLUMN attempt INTEGER;
    ALTER TABLE events ADD COLUMN changes_ms REAL;
    ALTER TABLE events ADD COLUMN compile_ms REAL;
    ALTER TABLE events ADD COLUMN select_ms REAL;
    ALTER TABLE events ADD COLUMN tests_ms REAL;
    ALTER TABLE events ADD COLUMN files_selected INTEGER;
    ALTER TABLE events ADD COLUMN files_total INTEGER;
    ALTER TABLE events ADD COLUMN chars INTEGER;
    UPDATE events SET uid = lower(hex(randomblob(16))) WHERE uid IS NULL;
    UPDATE events SET
        changes_ms = coalesce(json_extract(data, '$.phases.changes'),
                              json_extract(data, '$.phases.changes_ms')),
        compile_ms = coalesce(json_extract(data, '$.phases.compile'),
                              json_extract(data, '$.phases.compile_ms')),
        select_ms = coalesce(json_extract(data, '$.phases.select'),
                              json_extract(data, '$.phases.select_ms')),
        tests_ms = coalesce(json_extract(data, '$.phases.tests'),
                              json_extract(data, '$.phases.tests_ms')),
        files_selected = json_extract(data, '$.test_files_selected'),
        files_total = json_extract(data, '$.test_files_total')
        WHERE kind = 'loop.run' AND json_valid(data);
    UPDATE events SET chars = json_extract(data, '$.chars')
        WHERE json_valid(data) AND json_type(data, '$.chars') = 'integer';
    CREATE UNIQUE INDEX IF NOT EXISTS events_uid ON events(uid);
    CREATE TABLE IF NOT EXISTS forward_state (
        target TEXT PRIMARY KEY,
        last_id INTEGER NOT NULL DEFAULT 0,
        updated REAL
    );
    """,
    # 2 -> 3: what the report reads of a commit (A/B figures, first parent, change key) as columns,
    # filled from `data` (which keeps them too) by a trigger on every insert, whoever writes, so the
    # report aggregates commits in SQL without decoding JSON; and `store_meta`: an id for this file
    # and a count of deleted events (a trigger), which with the highest event id validate the report
    # cache (`ect.metrics.cache`).
    """
    ALTER TABLE events ADD COLUMN accepted REAL;
    ALTER TABLE events ADD COLUMN loop_runs REAL;
    ALTER TABLE events ADD COLUMN first_run_ts REAL;
    ALTER TABLE events ADD COLUMN first_run_outcome TEXT;
    ALTER TABLE events ADD COLUMN parent TEXT;
    ALTER TABLE events ADD COLUMN change_key TEXT;
    UPDATE events SET {commit_columns} WHERE kind = 'git.commit' AND json_valid(data);
    CREATE INDEX IF NOT EXISTS events_change_key ON events(change_key) WHERE change_key IS NOT NULL;
    CREATE INDEX IF NOT EXISTS events_parent ON events(kind, ts, commit_sha, parent) WHERE parent IS NOT NULL;
    CREATE TRIGGER IF NOT EXISTS events_commit_columns AFTER INSERT ON events
        WHEN new.kind = 'git.commit' AND json_valid(new.data)
        BEGIN UPDATE events SET {new_commit_columns} WHERE id = new.id; END;
    CREATE TABLE IF NOT EXISTS store_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
    INSERT OR IGNORE INTO store_meta VALUES ('store_id', abs(random()));
    INSERT OR IGNORE INTO store_meta VALUES ('deleted', 0);
    CREATE TRIGGER IF NOT EXISTS events_deleted AFTER DELETE ON events
        BEGIN UPDATE store_meta SET value = value + 1 WHERE key = 'deleted'; END;
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)
COLUMNS = ("source", "repo", "author", "commit_sha", "duration_ms", "outcome")
# Loop phases stored as columns: column -> accepted keys in the `phases` dict.
PHASES = {
    "changes_ms": ("changes", "changes_ms"),
    "compile_ms": ("compile", "compile_ms"),
    "select_ms": ("select", "select_ms"),
    "tests_ms": ("tests", "tests_ms"),
}
# Other numbers stored as columns: column -> field name.
NUMBERS = {"files_selected": "test_files_selected", "files_total": "test_files_total", "chars": "chars"}
ALL_COLUMNS = ("uid", "ts", "kind", *COLUMNS, "data", "attempt", *PHASES, *NUMBERS)
_INSERT = (
    f"INSERT OR IGNORE INTO events ({', '.join(ALL_COLUMNS)}) VALUES ({', '.join('?' * len(ALL_COLUMNS))})"
)

_warned = False
_children: list[Any] = []


def _warn(message: str) -> None:
    global _warned
    if not _warned:
        _warned = True
        print(f"ect: warning: event log: {message}", file=sys.stderr)


def migrate(conn: sqlite3.Connection) -> None:
    """Bring the database to `SCHEMA_VERSION` (idempotent, safe against concurrent migrators)."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise sqlite3.DatabaseError(f"schema version {version} is newer than this ect ({SCHEMA_VERSION})")
    if version == SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        for step in range(version, SCHEMA_VERSION):
            for statement in _statements(_migration(step)):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {step + 1}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _statements(script: str) -> Iterator[str]:
    """The complete statements of `script` (a trigger's body holds semicolons of its own)."""
    part = ""
    for piece in script.split(";"):
        part += piece + ";"
        if sqlite3.complete_statement(part):
            if part.strip(" \n;"):
                yield part
            part = ""


def _migration(step: int) -> str:
    """MIGRATIONS[step] with the commit-column expressions filled in."""
    if step != 2:
        return MIGRATIONS[step]
    return MIGRATIONS[step].format(
        commit_columns=commit_columns_sql("data", "repo", "commit_sha"),
        new_commit_columns=commit_columns_sql("new.data", "new.repo", "new.commit_sha"),
    )


# A commit's columns from its JSON `data` (SQLite). Numbers must be JSON numbers and text JSON
# strings, else the column is NULL; the change key follows `ect.metrics.delivery.change_key` for
# string and integer names (the first non-empty of change, review, branch, with the repository),
# else the commit.
COMMIT_NUMBERS = ("accepted", "loop_runs", "first_run_ts")
CHANGE_FIELDS = ("change", "review", "branch")


def commit_columns_sql(data: str, repo: str, sha: str) -> str:
    """`col = expr, ...` filling the commit columns from `data` (for UPDATE ... SET)."""

    def num(path: str) -> str:
        kind = f"json_type({data}, '{path}')"
        return f"CASE WHEN {kind} IN ('integer', 'real') THEN json_extract({data}, '{path}') END"

    def text(path: str) -> str:
        return f"CASE WHEN json_type({data}, '{path}') = 'text' THEN json_extract({data}, '{path}') END"

    whens = " ".join(
        f"WHEN json_type({data}, '$.{f}') IN ('text', 'integer')"
        f" AND json_extract({data}, '$.{f}') NOT IN ('', 0)"
        f" THEN '{f}:' || coalesce({repo}, '') || ':' || json_extract({data}, '$.{f}')"
        for f in CHANGE_FIELDS
    )
    cols = [f"{c} = {num('$.' + c)}" for c in COMMIT_NUMBERS]
    cols.append(f"first_run_outcome = {text('$.first_run_outcome')}")
    cols.append(f"parent = {text('$.parents[0]')}")
    cols.append(f"change_key = CASE {whens} ELSE nullif({sha}, '') END")
    return ", ".join(cols)


def connect(
    state_dir: Path, timeout: float = 0.5, shared: bool = False, autocheckpoint: bool = True
) -> sqlite3.Connection:
    """Open (creating and migrating) the event database.

    `shared`: the connection may be used from several threads (callers serialise access).
    `autocheckpoint=False` (the cached writer): a commit never runs the WAL checkpoint (an fsync);
    readers checkpoint when they open, and writers start a background checkpoint past `WAL_LIMIT`.
    """
    ensure_state_dir(state_dir)
    conn = sqlite3.connect(
        state_dir / DB_NAME, timeout=timeout, isolation_level=None, check_same_thread=not shared
    )
    try:
        if conn.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
            conn.execute("PRAGMA journal_mode=WAL")
            migrate(conn)
        conn.execute("PRAGMA synchronous=NORMAL")
        if not autocheckpoint:
            conn.execute("PRAGMA wal_autocheckpoint=0")
    except BaseException:
        conn.close()
        raise
    return conn


@contextmanager
def opened(state_dir: Path, timeout: float = 5.0) -> Iterator[sqlite3.Connection]:
    """`connect` as a context manager that closes the connection; folds the spool back in and
    checkpoints the WAL first (both skipped, not failed, when the database is busy or read-only)."""
    conn = connect(state_dir, timeout=timeout)
    try:
        try:
            ingest_spool(conn, state_dir)
            checkpoint(conn)
        except sqlite3.OperationalError as exc:
            if not (_busy(exc) or _readonly(exc)):
                raise
        yield conn
    finally:
        conn.close()


def checkpoint(conn: sqlite3.Connection) -> None:
    """Copy the WAL back into the database without blocking writers (PASSIVE)."""
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


def _number(value: Any) -> Any:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _row(kind: str, fields: dict[str, Any], ts: float | None, state_dir: Path) -> tuple[Any, ...]:
    """One row in `ALL_COLUMNS` order; pops what becomes a column out of `fields`."""
    uid = fields.pop("uid", None) or os.urandom(16).hex()
    cols = [fields.pop(c, None) for c in COLUMNS]
    phase_values: list[Any] = [None] * len(PHASES)
    phases = fields.get("phases")
    if isinstance(phases, dict):
        rest = dict(phases)
        for i, keys in enumerate(PHASES.values()):
            for key in keys:
                if key in rest and _number(rest[key]) is not None:
                    phase_values[i] = rest.pop(key)
        if rest:
            fields["phases"] = rest
        else:
            del fields["phases"]
    numbers = []
    for name in NUMBERS.values():
        value = _number(fields.get(name))
        if value is not None:
            del fields[name]
        numbers.append(value)
    attempt = fields.pop("attempt", None)
    if cols[2] is None:
        cols[2] = default_author(state_dir)
    try:
        when = time.time() if ts is None else float(ts)
    except (TypeError, ValueError):
        when = time.time()
    return (
        uid,
        when,
        kind,
        *cols,
        json.dumps(fields, default=str),
        attempt,
        *phase_values,
        *numbers,
    )


_author: list[str] = []
IDENTITY_ENV = ("ECT_AUTHOR", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL", "EMAIL")


IDENTITY_FILE = "identity"  # the git e-mail, written by `ect metrics post-commit`


def default_author(state_dir: Path) -> str:
    """Who an event is about when the caller does not say: the git e-mail if known (cached per process)."""
    if not _author:
        value = next((os.environ[k] for k in IDENTITY_ENV if os.environ.get(k)), None)
        if value is None:
            with suppress(OSError, UnicodeDecodeError):
                value = (state_dir / IDENTITY_FILE).read_text(encoding="utf-8").strip() or None
        if value is None:
            value = _git_email(
                state_dir.parent / ".git" / "config",
                Path.home() / ".gitconfig",
                Path.home() / ".config" / "git" / "config",
            )
        if value is None:
            import getpass

            try:
                value = getpass.getuser()
            except Exception:
                value = "unknown"
        _author.append(value)
    return _author[0]


def _git_email(*configs: Path) -> str | None:
    """`user.email` from git config files, read directly (no subprocess on the hot path)."""
    for path in configs:
        section = ""
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            text = line.strip()
            if text.startswith("["):
                section = text.strip("[]").strip().lower()
            elif section == "user" and "=" in text:
                key, _, val = text.partition("=")
                if key.strip().lower() == "email" and val.strip():
                    return val.strip().strip('"')
    return None


BOT_SOURCES = ("review", "bot")  # loop runs made by the review bot, not by a developer
_DEV_RUN = "kind = 'loop.run' AND outcome != 'noop' AND coalesce(source, '') NOT IN ('review', 'bot')"


def _attempt(conn: sqlite3.Connection, row: list[Any]) -> int | None:
    """A developer's loop run's attempt number: 1 after a green (or no) previous run, else one more.

    None (not an attempt) for a no-op, a review-bot run, and a re-run with no edit: the same
    `changes_digest` as the previous run, or no changed file at the same commit as it.
    """
    outcome, source, sha = row[8], row[3], row[6]
    if outcome == "noop" or source in BOT_SOURCES:
        return None
    try:
        data = json.loads(row[9])
    except (TypeError, ValueError):
        data = {}
    prev = conn.execute(
        f"SELECT outcome, commit_sha, data FROM events WHERE {_DEV_RUN} ORDER BY ts DESC, id DESC LIMIT 1"
    ).fetchone()
    if prev is not None and _same_code(data, sha, prev[1], prev[2]):
        return None
    last = conn.execute(
        f"SELECT outcome, attempt FROM events WHERE {_DEV_RUN} AND attempt IS NOT NULL"
        " ORDER BY ts DESC, id DESC LIMIT 1"
    ).fetchone()
    if last is None or last[0] == "pass":
        return 1
    return int(last[1] or 1) + 1


def _same_code(data: dict[str, Any], sha: Any, prev_sha: Any, prev_data: Any) -> bool:
    """Whether a run tested exactly what the previous run tested (nothing edited in between)."""
    try:
        prev = json.loads(prev_data) if isinstance(prev_data, str) else {}
    except ValueError:
        prev = {}
    if not isinstance(data, dict) or not isinstance(prev, dict):
        return False
    digest = data.get("changes_digest")
    if digest is not None:
        return bool(digest == prev.get("changes_digest") and sha == prev_sha)
    return bool(sha and sha == prev_sha and data.get("files_changed") == 0 == prev.get("files_changed"))


def record(state_dir: Path, kind: str, ts: float | None = None, **fields: Any) -> bool:
    """Append one event; never raises. Returns whether it was stored (in the db or its spool)."""
    try:
        row = list(_row(kind, dict(fields), ts, state_dir))
    except Exception as exc:  # unserialisable field: never fail the caller
        _warn(f"event {kind} not recorded ({exc})")
        return False
    for attempt in (1, 2):
        try:
            _insert(state_dir, kind, row)
            _after_write(state_dir)
            return True
        except sqlite3.DatabaseError as exc:
            if attempt == 1 and _corrupt(exc) and _quarantine(state_dir, exc):
                continue
            if _busy(exc):
                return _spool(state_dir, row)
            problem = str(exc)
        except OSError as exc:
            problem = str(exc)
        spooled = _spool(state_dir, row, quiet=True)  # a read-only state directory takes no spool either
        _warn(
            f"cannot write ({problem}); "
            + (f"events go to {SPOOL_NAME}" if spooled else "event not recorded")
        )
        return spooled
    return False


WRITE_BUDGET_S = 0.003  # then the event goes to the spool: a write never waits long


def _busy(exc: Exception) -> bool:
    return "locked" in str(exc) or "busy" in str(exc)


def _readonly(exc: Exception) -> bool:
    return "readonly" in str(exc) or "read-only" in str(exc)


_CORRUPT_CODES = ("SQLITE_CORRUPT", "SQLITE_NOTADB")
_CORRUPT_TEXT = ("malformed", "not a database", "file is encrypted")


def _corrupt(exc: Exception) -> bool:
    """Only a damaged file is moved aside: never a busy, read-only, full or newer-schema database."""
    name = str(getattr(exc, "sqlite_errorname", "") or "")
    if name:
        return name.startswith(_CORRUPT_CODES)
    return any(t in str(exc) for t in _CORRUPT_TEXT)


def _insert(state_dir: Path, kind: str, row: list[Any]) -> None:
    """Insert, retrying a busy database with short sleeps (SQLite's own busy handler sleeps in
    whole milliseconds, which would put contended writes far above the budget)."""
    deadline = time.perf_counter() + WRITE_BUDGET_S
    delay = 0.0001
    while True:
        try:
            with _LOCK:
                conn = _writer(state_dir)
                try:
                    if kind == "loop.run" and row[10] is None:
                        row[10] = _attempt(conn, row)
                    conn.execute(_INSERT, row)
                except sqlite3.DatabaseError as exc:
                    if not _busy(exc):  # a busy database keeps its connection (reopening costs ~0.5 ms)
                        _drop_writer(state_dir)
                    raise
            return
        except sqlite3.OperationalError as exc:
            if not _busy(exc) or time.perf_counter() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.0008)


# One writing connection per process and state dir, kept open: opening costs a schema read, and
# closing the last connection checkpoints and deletes the WAL, which would happen on every event.
_writers: dict[tuple[int, str], tuple[sqlite3.Connection, int]] = {}
_LOCK = threading.Lock()


def _writer(state_dir: Path) -> sqlite3.Connection:
    """The cached connection, reopened if the file was removed or replaced (e.g. moved aside)."""
    key = (os.getpid(), str(state_dir))
    cached = _writers.get(key)
    try:
        inode = (state_dir / DB_NAME).stat().st_ino
    except OSError:
        inode = -1
    if cached is not None and cached[1] == inode:
        return cached[0]
    _drop_writer(state_dir)
    conn = connect(state_dir, timeout=0, shared=True, autocheckpoint=False)  # used under _LOCK
    with suppress(OSError):
        inode = (state_dir / DB_NAME).stat().st_ino
    _writers[key] = (conn, inode)
    return conn


def _drop_writer(state_dir: Path) -> None:
    cached = _writers.pop((os.getpid(), str(state_dir)), None)
    if cached is not None:
        with suppress(sqlite3.Error):
            cached[0].close()


SPOOL_LOCK_WAIT_S = 2.0  # how long a reader waits for writers still appending to a claimed spool


def _spool(state_dir: Path, row: list[Any], quiet: bool = False) -> bool:
    """Append the row as one JSON line (a single O_APPEND write: concurrent writers don't interleave).

    The append holds a shared flock on the spool and first checks that the file it opened is still
    `events.spool`: a reader renames the spool before folding it in and takes the exclusive lock
    before reading, so a line is either in the file the reader reads or in a new spool, never lost.
    """
    line = (json.dumps(row, default=str) + "\n").encode()
    path = state_dir / SPOOL_NAME
    try:
        for _ in range(100):
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_SH)
                try:
                    current = os.stat(path).st_ino
                except FileNotFoundError:
                    current = -1
                if current != os.fstat(fd).st_ino:
                    continue  # claimed by a reader between open and lock: open the new spool
                os.write(fd, line)
                return True
            finally:
                os.close(fd)  # also releases the lock
        raise OSError("spool kept being claimed")
    except OSError as exc:
        if not quiet:
            _warn(f"cannot write ({exc}); event lost")
        return False


def _lock_claimed(fd: int) -> bool:
    """The exclusive lock on a claimed spool: every writer that opened it has finished its line."""
    deadline = time.monotonic() + SPOOL_LOCK_WAIT_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.001)


def ingest_spool(conn: sqlite3.Connection, state_dir: Path) -> int:
    """Fold spooled events (written while the database was busy) into it; returns how many.

    The spool is claimed by renaming it; its lines are read under its exclusive lock (see `_spool`),
    inserted idempotently (by uid, so two readers folding the same file is harmless), and the file
    is deleted only after the commit.
    """
    spool = state_dir / SPOOL_NAME
    pending = sorted(state_dir.glob(SPOOL_NAME + ".*.ingest"))
    if spool.exists():
        claimed = state_dir / f"{SPOOL_NAME}.{os.getpid()}-{time.time_ns()}.ingest"
        with suppress(OSError):
            os.replace(spool, claimed)
            pending.append(claimed)
    count = 0
    for path in pending:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue  # folded by another reader meanwhile
        try:
            if not _lock_claimed(fd):
                continue  # a writer is stuck mid-line: leave the file for the next reader
            with os.fdopen(os.dup(fd), "rb") as f:
                data = f.read()
            rows = []
            for line in data.splitlines():
                try:
                    row = json.loads(line)
                except ValueError:
                    continue  # a torn last line from a killed writer
                if isinstance(row, list) and len(row) == len(ALL_COLUMNS):
                    rows.append(row)
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(_INSERT, rows)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            count += len(rows)
            with suppress(OSError):
                path.unlink()
        finally:
            os.close(fd)
    return count


WAL_LIMIT = 4 << 20  # WAL bytes not yet copied back past which a writer starts a background checkpoint
WAL_RESTART = 32 << 20  # WAL bytes in use after that checkpoint past which it restarts the WAL
WAL_CHECK_EVERY = 64  # writes between looks at the WAL
_WAL_INDEX_VERSION = 3007000
_writes = [0]
_checkpointing = threading.Event()


_wal_index_fds: dict[str, tuple[int, int]] = {}  # state dir -> (descriptor of its -shm, inode)


def wal_frames(state_dir: Path) -> tuple[int, int, int] | None:
    """(frames in the WAL, frames of them copied back, bytes per frame), read without locks from the
    wal-index header in `-shm` (https://sqlite.org/walformat.html): an estimate, used only to decide
    when to checkpoint. None when there is no readable wal-index of the known version.

    The `-shm` file, once opened, is never closed: closing any descriptor of a file drops every POSIX
    lock the process holds on it, SQLite's included, and a process that looks unlocked has its
    wal-index truncated under it by the next process that opens the database (SIGBUS)."""
    path = state_dir / (DB_NAME + "-shm")
    try:
        cached = _wal_index_fds.get(str(state_dir))
        if cached is None or cached[1] != os.stat(path).st_ino:
            fd = os.open(path, os.O_RDONLY)  # a replaced file's old descriptor stays open too
            cached = _wal_index_fds[str(state_dir)] = (fd, os.fstat(fd).st_ino)
        head = os.pread(cached[0], 100, 0)
    except OSError:
        return None
    if len(head) < 100 or struct.unpack_from("=I", head, 0)[0] != _WAL_INDEX_VERSION:
        return None
    page = struct.unpack_from("=H", head, 14)[0]
    frames, copied = struct.unpack_from("=I", head, 16)[0], struct.unpack_from("=I", head, 96)[0]
    return frames, min(copied, frames), (65536 if page == 1 else page) + 24


def _maybe_checkpoint(state_dir: Path) -> None:
    """Writers never checkpoint inside a write (`wal_autocheckpoint=0`): every `WAL_CHECK_EVERY`
    writes, past `WAL_LIMIT` bytes not yet copied back, a daemon thread checkpoints on its own
    connection (PASSIVE: writers go on meanwhile; an unfinished one is taken up by the next reader or
    the next look). The WAL is not truncated (the file regrowing would cost the writers block
    allocation): the first write after a complete checkpoint reuses it from the start. Only when
    writes never pause long enough for that and the WAL in use passes `WAL_RESTART` does the thread
    restart it (RESTART: writers spool for that moment)."""
    _writes[0] += 1
    if _writes[0] % WAL_CHECK_EVERY or _checkpointing.is_set():
        return
    wal = wal_frames(state_dir)
    if wal is None:  # no wal-index to read: go by the file's size
        try:
            wal = ((state_dir / (DB_NAME + "-wal")).stat().st_size // 4120, 0, 4120)
        except OSError:
            return
    if (wal[0] - wal[1]) * wal[2] < WAL_LIMIT:
        return
    _checkpointing.set()

    def run() -> None:
        try:
            conn = sqlite3.connect(state_dir / DB_NAME, timeout=0, isolation_level=None)
            try:
                _, frames, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                if frames * wal[2] >= WAL_RESTART:
                    conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
            finally:
                conn.close()
        except sqlite3.Error:
            pass  # another process is checkpointing, or the file went away: the next look retries
        finally:
            _checkpointing.clear()

    # not threading.Thread: its start() waits until the new thread has run, which on a busy machine is
    # a wait in the run queue inside the write (30-80 ms measured at a load of 8 on 2 CPUs); a thread
    # of `_thread` is, like a daemon thread, not waited for at exit
    _thread.start_new_thread(run, ())


def _after_write(state_dir: Path) -> None:
    """Checkpoint in the background now and then; in team mode, start a detached forwarder now and
    then (never waits for either)."""
    _maybe_checkpoint(state_dir)
    if not os.environ.get(URL_ENV):
        return
    marker = state_dir / FORWARD_NEXT
    now = time.time()
    try:
        if marker.stat().st_mtime > now:
            return
    except FileNotFoundError:
        marker.touch()
    try:
        os.utime(marker, (now, now + FORWARD_EVERY_S))
        spawn_forwarder(state_dir)
    except OSError:
        pass


def spawn_forwarder(state_dir: Path) -> None:
    """Run `python -m ect.metrics.forward STATE_DIR` detached (its own session, no pipes)."""
    import subprocess

    _children[:] = [p for p in _children if p.poll() is None]
    _children.append(
        subprocess.Popen(
            [sys.executable, "-m", "ect.metrics.forward", str(state_dir)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
        )
    )


def _quarantine(state_dir: Path, exc: Exception) -> bool:
    """Move a corrupt database aside (kept for inspection) so a fresh one is created."""
    db = state_dir / DB_NAME
    if (
        not db.exists()
        or "newer than" in str(exc)
        or not _corrupt(exc)  # full disk, read-only: not corrupt
        or isinstance(exc, (sqlite3.ProgrammingError, sqlite3.InterfaceError))
    ):
        return False  # misuse of the API is not corruption: never move a good database aside
    _drop_writer(state_dir)
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


_SELECT = f"SELECT id, {', '.join(ALL_COLUMNS)} FROM events"


def event_dict(row: tuple[Any, ...]) -> dict[str, Any]:
    """A row of `_SELECT` as the dict `record` was given (phases and numbers put back)."""
    values = dict(zip(("id", *ALL_COLUMNS), row, strict=True))
    raw = values.pop("data")
    try:
        data = raw if isinstance(raw, dict) else json.loads(raw)
    except (TypeError, ValueError):
        data = {}
    if not isinstance(data, dict):
        data = {}
    event = {k: values[k] for k in ("id", "uid", "ts", "kind", *COLUMNS)}
    if values["attempt"] is not None:
        event["attempt"] = values["attempt"]
    phases = {col[:-3]: values[col] for col in PHASES if values[col] is not None}
    if phases or "phases" in data:
        phases.update(data.pop("phases", None) or {})
        event["phases"] = phases
    for col, name in NUMBERS.items():
        if values[col] is not None:
            event[name] = values[col]
    event.update(data)
    return event


def query(state_dir: Path, kind: str | None = None, since: float | None = None) -> list[dict[str, Any]]:
    """Read events back as dicts (oldest first); an unreadable database reads as empty."""
    sql = _SELECT
    where: list[str] = []
    args: list[Any] = []
    if kind is not None:
        where.append("kind = ?")
        args.append(kind)
    if since is not None:
        where.append("ts >= ?")
        args.append(since)
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY ts, id"
    if not (state_dir / DB_NAME).exists() and not (state_dir / SPOOL_NAME).exists():
        return []
    try:
        with opened(state_dir) as conn:
            rows = conn.execute(sql, args).fetchall()
    except sqlite3.DatabaseError as exc:
        _warn(f"cannot read ({exc})")
        return []
    return [event_dict(row) for row in rows]
