"""The fingerprint database: SQLite in WAL mode, shared by all worktrees of a repository.

Tables: `records` (one row per test and distinct fingerprint, newest few kept, so a
result cached on one branch is reused on another), `test_files` (which tests a test file
had when it last ran whole), `versions` (block checksums of each recorded file version),
`meta`. Writers take an immediate transaction with a busy timeout, so two hooks in two
worktrees can record at once. A database that cannot be read is moved aside and rebuilt;
callers then run the full suite.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ect.config import Config
from ect.fingerprints.blocks import parse_blocks
from ect.state import ensure_state_dir

SCHEMA_VERSION = 2
DB_NAME = "fingerprints.db"
KEEP_RECORDS = 4  # fingerprints kept per test (per branch state, roughly)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    nodeid TEXT NOT NULL, file TEXT NOT NULL, fp TEXT NOT NULL, outcome TEXT NOT NULL,
    duration REAL NOT NULL, env TEXT NOT NULL, ts REAL NOT NULL, deps TEXT NOT NULL,
    PRIMARY KEY (nodeid, fp));
CREATE INDEX IF NOT EXISTS records_file ON records (file);
CREATE TABLE IF NOT EXISTS test_files (
    path TEXT PRIMARY KEY, digest TEXT NOT NULL, nodeids TEXT NOT NULL, ts REAL NOT NULL);
CREATE TABLE IF NOT EXISTS versions (
    path TEXT NOT NULL, digest TEXT NOT NULL, blocks TEXT, import_names TEXT NOT NULL, source BLOB,
    PRIMARY KEY (path, digest));
"""


class CorruptStore(Exception):
    """The database exists but cannot be used; it has been moved aside."""


@dataclass
class Record:
    """One test's fingerprint: what it executed and read, and how it ended."""

    nodeid: str
    file: str
    fp: str
    outcome: str
    duration: float
    env: str
    ts: float
    deps: dict[str, Any] = field(default_factory=dict)


def db_path(root: Path, cfg: Config) -> Path:
    """`<state>/fingerprints.db` of the main worktree, so all worktrees share one result cache."""
    try:
        proc = subprocess.run(
            ["git", "rev-parse", "--path-format=absolute", "--git-common-dir"],
            cwd=root,
            capture_output=True,
            text=True,
            check=False,
        )
        common = Path(proc.stdout.strip()) if proc.returncode == 0 and proc.stdout.strip() else None
    except OSError:
        common = None
    main_root = common.parent if common is not None and common.name == ".git" else root
    state = main_root / cfg.state_dir if main_root != root else cfg.state_path
    return state / DB_NAME


class Store:
    """An open fingerprint database."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rebuilt = False
        ensure_state_dir(path.parent)
        try:
            self.conn = self._open()
        except sqlite3.DatabaseError as exc:
            self._move_aside(exc)
            self.conn = self._open()
            self.rebuilt = True

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            conn.execute("PRAGMA busy_timeout = 30000")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise sqlite3.DatabaseError(f"unknown schema version {version}")
            if version == 0:
                with _immediate(conn):
                    for stmt in _SCHEMA.split(";"):
                        if stmt.strip():
                            conn.execute(stmt)
                    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("SELECT count(*) FROM records").fetchone()
            conn.execute("SELECT count(*) FROM versions").fetchone()
        except sqlite3.DatabaseError:
            conn.close()
            raise
        return conn

    def _move_aside(self, exc: Exception) -> None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for suffix in ("", "-wal", "-shm"):
            src = Path(str(self.path) + suffix)
            if src.exists():
                try:
                    os.replace(src, Path(f"{self.path}.corrupt-{stamp}{suffix}"))
                except OSError:
                    src.unlink(missing_ok=True)

    def close(self) -> None:
        self.conn.close()

    def empty(self) -> bool:
        return self.conn.execute("SELECT 1 FROM records LIMIT 1").fetchone() is None

    def full_recording(self) -> float | None:
        """When the whole suite was last recorded in one run (None: never; fingerprints stay unused)."""
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'full_recording'").fetchone()
        try:
            return float(row[0]) if row else None
        except ValueError:
            return None

    # -- reading -------------------------------------------------------------------------------
    def records(self) -> dict[str, list[Record]]:
        """nodeid -> its records, newest first."""
        out: dict[str, list[Record]] = {}
        for row in self.conn.execute(
            "SELECT nodeid, file, fp, outcome, duration, env, ts, deps FROM records ORDER BY ts DESC"
        ):
            out.setdefault(row[0], []).append(
                Record(row[0], row[1], row[2], row[3], row[4], row[5], row[6], json.loads(row[7]))
            )
        return out

    def test_files(self) -> dict[str, tuple[str, list[str]]]:
        return {
            row[0]: (row[1], json.loads(row[2]))
            for row in self.conn.execute("SELECT path, digest, nodeids FROM test_files")
        }

    def version(self, path: str, digest: str) -> tuple[dict[str, Any] | None, list[str]] | None:
        """(block checksums, import-time names) of a recorded file version; blocks None if unknown.

        Recording stores the compressed source only; blocks are computed here, when a file changed.
        """
        row = self.conn.execute(
            "SELECT blocks, import_names, source FROM versions WHERE path = ? AND digest = ?", (path, digest)
        ).fetchone()
        if row is None:
            return None
        blocks = json.loads(row[0]) if row[0] else None
        if blocks is None and row[2] is not None:
            try:
                blocks = parse_blocks(zlib.decompress(row[2]), path).to_json()
            except (zlib.error, SyntaxError, ValueError):
                blocks = None
        return blocks, json.loads(row[1])

    def known_versions(self) -> set[tuple[str, str]]:
        return {(r[0], r[1]) for r in self.conn.execute("SELECT path, digest FROM versions")}

    # -- writing -------------------------------------------------------------------------------
    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        with _immediate(self.conn):
            yield self.conn

    def add_import_names(self, conn: sqlite3.Connection, path: str, digest: str, names: set[str]) -> None:
        """Add names to a known version's import-time blocks (written only when something is new)."""
        row = conn.execute(
            "SELECT import_names FROM versions WHERE path = ? AND digest = ?", (path, digest)
        ).fetchone()
        old = set(json.loads(row[0])) if row else set()
        if row is not None and not names <= old:
            conn.execute(
                "UPDATE versions SET import_names = ? WHERE path = ? AND digest = ?",
                (json.dumps(sorted(old | names)), path, digest),
            )

    def put_version(
        self,
        conn: sqlite3.Connection,
        path: str,
        digest: str,
        source: bytes | None,
        import_names: set[str],
    ) -> None:
        row = conn.execute(
            "SELECT import_names FROM versions WHERE path = ? AND digest = ?", (path, digest)
        ).fetchone()
        names = set(import_names) | (set(json.loads(row[0])) if row else set())
        conn.execute(
            "INSERT OR REPLACE INTO versions VALUES (?, ?, NULL, ?, ?)",
            (
                path,
                digest,
                json.dumps(sorted(names)),
                zlib.compress(source, 1) if source is not None else None,
            ),
        )

    def put_record(self, conn: sqlite3.Connection, rec: Record) -> None:
        conn.execute(
            "INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                rec.nodeid,
                rec.file,
                rec.fp,
                rec.outcome,
                rec.duration,
                rec.env,
                rec.ts,
                json.dumps(rec.deps, separators=(",", ":")),
            ),
        )
        conn.execute(
            "DELETE FROM records WHERE nodeid = ? AND fp NOT IN "
            "(SELECT fp FROM records WHERE nodeid = ? ORDER BY ts DESC LIMIT ?)",
            (rec.nodeid, rec.nodeid, KEEP_RECORDS),
        )

    def put_test_file(self, conn: sqlite3.Connection, path: str, digest: str, nodeids: list[str]) -> None:
        old = conn.execute("SELECT nodeids FROM test_files WHERE path = ?", (path,)).fetchone()
        conn.execute(
            "INSERT OR REPLACE INTO test_files VALUES (?, ?, ?, ?)",
            (path, digest, json.dumps(sorted(nodeids)), time.time()),
        )
        if old:  # tests that no longer exist in the file disappear
            gone = set(json.loads(old[0])) - set(nodeids)
            conn.executemany("DELETE FROM records WHERE nodeid = ?", [(n,) for n in gone])

    def forget_files(self, conn: sqlite3.Connection, paths: list[str]) -> None:
        """Drop everything about deleted test files."""
        for path in paths:
            conn.execute("DELETE FROM records WHERE file = ?", (path,))
            conn.execute("DELETE FROM test_files WHERE path = ?", (path,))


@contextmanager
def _immediate(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def open_store(root: Path, cfg: Config) -> Store:
    """Open (creating or rebuilding) the repository's fingerprint database."""
    return Store(db_path(root, cfg))
