"""The fingerprint database: SQLite in WAL mode, shared by all worktrees of a repository.

Tables: `tests` (node ids as integer ids), `records` (one row per test and distinct
fingerprint, newest few kept, so a result cached on one branch is reused on another),
`files` (each version of a file a test depended on, stored once) and `deps` (record ->
file version, with the set of blocks it ran there: a `namesets` id, each set stored once),
indexed by file version so that selection reads only the dependencies on files that changed;
`test_files` (which tests a test file had when it last ran whole), `versions` (source and
import-time blocks of each recorded Python file version; block checksums are computed from it
when needed), `meta`. The rules that charged blocks to a test (`records.via`, for `--explain`)
are zlib-compressed JSON.
Writers take an immediate transaction with a busy timeout, so two hooks in two
worktrees can record at once. A database that cannot be read is moved aside and rebuilt;
callers then run the full suite.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import time
import zlib
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ect.config import Config
from ect.fingerprints.blocks import FileBlocks, digest_bytes, parse_blocks
from ect.state import ensure_state_dir

# 4: functions' branches are blocks (`branches`); 5: caches in nested functions (`memo`); 6: `records.base`,
# `deps` indexed by (file, names) so that selection reads it from the index alone, name sets keyed by hash
SCHEMA_VERSION = 6
DB_NAME = "fingerprints.db"
KEEP_RECORDS = 4  # fingerprints kept per test: the newest, and others of committed content (`put_record`)
# dependency kinds: a Python file the test ran code in, one in its import closure, data read, directory listed
RAN, CLOSURE, DATA, DIR = 0, 1, 2, 3
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tests (id INTEGER PRIMARY KEY, nodeid TEXT NOT NULL UNIQUE, file TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY, test INTEGER NOT NULL, fp TEXT NOT NULL, outcome TEXT NOT NULL,
    duration REAL NOT NULL, env TEXT NOT NULL, ts REAL NOT NULL, opaque INTEGER NOT NULL, via BLOB,
    base INTEGER NOT NULL DEFAULT 1, UNIQUE (test, fp));
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY, kind INTEGER NOT NULL, path TEXT NOT NULL, digest TEXT NOT NULL,
    UNIQUE (kind, path, digest));
CREATE TABLE IF NOT EXISTS namesets (id INTEGER PRIMARY KEY, key BLOB NOT NULL UNIQUE, names TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS deps (
    record INTEGER NOT NULL, file INTEGER NOT NULL, names INTEGER NOT NULL, PRIMARY KEY (record, file))
    WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS deps_file ON deps (file, names);
CREATE INDEX IF NOT EXISTS tests_file ON tests (file);
CREATE TABLE IF NOT EXISTS test_files (
    path TEXT PRIMARY KEY, digest TEXT NOT NULL, nodeids TEXT NOT NULL, ts REAL NOT NULL);
CREATE TABLE IF NOT EXISTS versions (
    path TEXT NOT NULL, digest TEXT NOT NULL, blocks TEXT, import_names TEXT NOT NULL, source BLOB,
    PRIMARY KEY (path, digest));
"""


# block checksums by content digest, so that a file version is parsed once, not on every selection
_CACHE_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS block_cache (key TEXT PRIMARY KEY, blocks TEXT NOT NULL, ts REAL NOT NULL)"
)
BLOCKS_ALGORITHM = "2"  # part of the cache key: a new checksum scheme never meets old entries
BLOCK_CACHE_KEEP = 4000


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
    base: bool = True  # it ran on committed content only (no file it depends on differed from HEAD)


def _git_common_dir(root: Path) -> Path | None:
    """The repository's common git directory, read from `.git` (a worktree's `.git` is a file)."""
    dot = root / ".git"
    try:
        if dot.is_dir():
            return dot.resolve()
        text = dot.read_text(encoding="utf-8").strip()
        if not text.startswith("gitdir:"):
            return None
        gitdir = (root / text[len("gitdir:") :].strip()).resolve()
        common = (gitdir / "commondir").read_text(encoding="utf-8").strip()
        return (gitdir / common).resolve()
    except (OSError, UnicodeDecodeError):
        return None


def db_path(root: Path, cfg: Config) -> Path:
    """`<state>/fingerprints.db` of the main worktree, so all worktrees share one result cache."""
    common = _git_common_dir(root)
    if common is None:  # not a plain layout (submodule, $GIT_DIR...): ask git
        try:
            proc = subprocess.run(
                ["git", "rev-parse", "--path-format=absolute", "--git-common-dir"],
                cwd=root,
                capture_output=True,
                text=True,
                check=False,
                timeout=30,
            )
            common = Path(proc.stdout.strip()) if proc.returncode == 0 and proc.stdout.strip() else None
        except (OSError, subprocess.TimeoutExpired):
            common = None
    main_root = common.parent if common is not None and common.name == ".git" else root
    state = main_root / cfg.state_dir if main_root != root.resolve() and main_root != root else cfg.state_path
    return state / DB_NAME


class _Outdated(sqlite3.DatabaseError):
    """The database has an older schema."""


class Store:
    """An open fingerprint database."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rebuilt = ""  # why the database was started afresh: "corrupt" or "outdated"
        self._file_ids: dict[tuple[int, str, str], int] = {}
        self._nameset_ids: dict[str, int] = {}
        self._dropped = 0  # records dropped since the last `prune`
        ensure_state_dir(path.parent)
        try:
            self.conn = self._open()
        except _Outdated:  # fingerprints another ect version recorded: a cache, so recorded again
            for suffix in ("", "-wal", "-shm"):
                Path(str(self.path) + suffix).unlink(missing_ok=True)
            self.conn = self._open()
            self.rebuilt = "outdated"
        except sqlite3.DatabaseError as exc:
            self._move_aside(exc)
            self.conn = self._open()
            self.rebuilt = "corrupt"

    def _open(self) -> sqlite3.Connection:
        # one thread at a time: the loop may store a recording from a thread while pytest exits
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA busy_timeout = 30000")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if 0 < version < SCHEMA_VERSION:
                raise _Outdated(f"schema version {version}")
            if version not in (0, SCHEMA_VERSION):
                raise sqlite3.DatabaseError(f"unknown schema version {version}")
            if version == 0:
                with _immediate(conn):
                    for stmt in _SCHEMA.split(";"):
                        if stmt.strip():
                            conn.execute(stmt)
                    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            with suppress(sqlite3.OperationalError):  # read-only or locked: the cache is optional
                conn.execute(_CACHE_SCHEMA)
            conn.execute("SELECT count(*) FROM records").fetchone()
            conn.execute("SELECT count(*) FROM deps").fetchone()
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
    def nodeids(self) -> dict[str, str]:
        """node id -> test file, for every test with a record."""
        return dict(
            self.conn.execute("SELECT nodeid, file FROM tests WHERE id IN (SELECT test FROM records)")
        )

    def data_paths(self) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT DISTINCT path FROM files WHERE kind = ?", (DATA,))}

    def file_versions(self) -> list[tuple[int, int, str, str]]:
        """Every (id, kind, path, digest) a record depends on."""
        return list(self.conn.execute("SELECT id, kind, path, digest FROM files"))

    def settle(self, changed_files: list[int], env: str) -> set[int]:
        """Settle the tests that keep a passing record (in `env`, without a subprocess) depending on
        none of `changed_files`: no change reaches them. Returns the changed file versions that
        the other tests' records depend on, the only ones a selection has to judge (an edit-run
        session leaves many versions behind, each a parse and a diff). `stale_records` then looks
        at the unsettled tests only."""
        conn = self.conn
        for table in ("changed", "touched", "settled"):
            conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {table} (id INTEGER PRIMARY KEY)")
            conn.execute(f"DELETE FROM {table}")
        conn.executemany("INSERT INTO changed VALUES (?)", [(i,) for i in changed_files])
        conn.execute(
            "INSERT OR IGNORE INTO touched SELECT record FROM deps WHERE file IN (SELECT id FROM changed)"
        )
        conn.execute(
            "INSERT OR IGNORE INTO settled SELECT test FROM records WHERE env = ? "
            "AND outcome IN ('passed', 'skipped') AND NOT opaque AND id NOT IN (SELECT id FROM touched)",
            (env,),
        )
        rows = conn.execute(
            "SELECT DISTINCT d.file FROM deps d JOIN records r ON r.id = d.record "
            "WHERE d.file IN (SELECT id FROM changed) AND r.test NOT IN (SELECT id FROM settled)"
        )
        return {row[0] for row in rows}

    def stale_records(
        self,
        stale_files: list[int],
        env: str,
        reaches: Callable[[int, list[str]], bool | Collection[int]],
    ) -> dict[str, list[Record]]:
        """Records that may no longer hold, with only their dependencies on `stale_files`.

        A record holds when it passed, in this environment, without a subprocess, and no
        change to its file versions reaches it (`reaches(file id, blocks it ran there)`, asked
        once per distinct dependency on a stale file version: True, or the ids of the changed file
        versions whose module-level names those blocks read, which reach only a record that depends
        on one of them). Only tests with no record that still holds are returned (all their records,
        newest first). Indexed queries: the work follows the dependencies on changed files, not the
        size of the suite.
        """
        conn = self.conn
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS stale (id INTEGER PRIMARY KEY)")
        conn.execute("DELETE FROM stale")
        conn.executemany("INSERT INTO stale VALUES (?)", [(i,) for i in stale_files])
        # each distinct (file version, block set) is judged once; SQLite then finds the records
        # (deps is indexed by (file, names))
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS settled (id INTEGER PRIMARY KEY)")
        pairs = conn.execute(  # only the records of tests `settle` left open (all, if it did not run)
            "SELECT DISTINCT d.file, d.names FROM deps d JOIN records r ON r.id = d.record "
            "WHERE d.file IN (SELECT id FROM stale) AND r.test NOT IN (SELECT id FROM settled)"
        )
        hits: list[tuple[int, int]] = []
        reads: list[tuple[int, int, int]] = []
        for fid, nid in pairs.fetchall():
            found = reaches(fid, self._names(nid))
            if found is True:
                hits.append((fid, nid))
            elif found:
                reads += [(fid, nid, source) for source in found]
        conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS hit (file INTEGER, names INTEGER, PRIMARY KEY (file, names)) "
            "WITHOUT ROWID"
        )
        conn.execute("DELETE FROM hit")
        conn.executemany("INSERT INTO hit VALUES (?, ?)", hits)
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS reached (id INTEGER PRIMARY KEY)")
        conn.execute("DELETE FROM reached")
        conn.execute(
            "INSERT OR IGNORE INTO reached SELECT d.record FROM hit h "
            "JOIN deps d ON d.file = h.file AND d.names = h.names"
        )
        if reads:  # a reader reaches the records that saw the version whose names it reads
            conn.execute(
                "CREATE TEMP TABLE IF NOT EXISTS readhit (file INTEGER, names INTEGER, source INTEGER, "
                "PRIMARY KEY (file, names, source)) WITHOUT ROWID"
            )
            conn.execute("DELETE FROM readhit")
            conn.executemany("INSERT OR IGNORE INTO readhit VALUES (?, ?, ?)", reads)
            conn.execute(
                "INSERT OR IGNORE INTO reached SELECT d.record FROM readhit h "
                "JOIN deps d ON d.file = h.file AND d.names = h.names WHERE EXISTS ("
                "SELECT 1 FROM deps o WHERE o.record = d.record AND o.file = h.source)"
            )
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS suspect (id INTEGER PRIMARY KEY)")
        conn.execute("DELETE FROM suspect")
        conn.execute(
            "INSERT INTO suspect SELECT test FROM records EXCEPT SELECT test FROM records "
            "WHERE env = ? AND outcome IN ('passed', 'skipped') AND NOT opaque "
            "AND id NOT IN (SELECT id FROM reached)",
            (env,),
        )
        rows = conn.execute(
            "SELECT r.id, t.nodeid, t.file, r.fp, r.outcome, r.duration, r.env, r.ts, r.opaque, r.via "
            "FROM records r JOIN tests t ON t.id = r.test WHERE r.test IN (SELECT id FROM suspect) "
            "ORDER BY r.ts DESC"
        ).fetchall()
        by_id: dict[int, Record] = {}
        for rid, nodeid, file, fp, outcome, duration, renv, ts, opaque, via in rows:
            deps: dict[str, Any] = {"py": {}, "data": {}, "dirs": {}, "opaque": bool(opaque)}
            if via:
                deps["via_json"] = via  # decoded by `refine.what_changed` only for a reason it gives
            by_id[rid] = Record(nodeid, file, fp, outcome, duration, renv, ts, deps)
        if not by_id:
            return {}
        for rid, kind, path, digest, names in conn.execute(
            "SELECT d.record, f.kind, f.path, f.digest, n.names FROM deps d JOIN files f ON f.id = d.file "
            "LEFT JOIN namesets n ON n.id = d.names WHERE d.file IN (SELECT id FROM stale) "
            "AND d.record IN (SELECT r.id FROM records r WHERE r.test IN (SELECT id FROM suspect))"
        ):
            rec = by_id[rid]
            if kind in (RAN, CLOSURE):
                rec.deps["py"][path] = [digest, names.split("\n") if names else [], kind == CLOSURE]
            else:
                rec.deps["data" if kind == DATA else "dirs"][path] = digest or None
        out: dict[str, list[Record]] = {}
        for rec in by_id.values():
            out.setdefault(rec.nodeid, []).append(rec)
        return out

    def _names(self, nid: int) -> list[str]:
        """The block names of a name set (0: none)."""
        row = self.conn.execute("SELECT names FROM namesets WHERE id = ?", (nid,)).fetchone() if nid else None
        return row[0].split("\n") if row and row[0] else []

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
        if blocks is None:
            blocks = self.cached_blocks(digest)
        if blocks is None and row[2] is not None:
            try:
                blocks = parse_blocks(zlib.decompress(row[2]), path).to_json()
                self.cache_blocks(digest, blocks)
            except (zlib.error, SyntaxError, ValueError):
                blocks = None
        return blocks, json.loads(row[1])

    def source(self, path: str, digest: str) -> bytes | None:
        """The recorded source of a file version (None: not kept)."""
        row = self.conn.execute(
            "SELECT source FROM versions WHERE path = ? AND digest = ?", (path, digest)
        ).fetchone()
        if row is None or row[0] is None:
            return None
        try:
            return zlib.decompress(row[0])
        except zlib.error:
            return None

    def cached_blocks(self, digest: str) -> dict[str, Any] | None:
        """Block checksums of the content with `digest`, when a selection computed them before."""
        text = self.cached(f"{BLOCKS_ALGORITHM}:{digest}")
        try:
            value = json.loads(text) if text is not None else None
        except ValueError:
            return None
        return value if isinstance(value, dict) and "blocks" in value and "skeleton" in value else None

    def file_blocks(
        self, root: Path, path: str, digest: str | None, literals: bool = False
    ) -> FileBlocks | None:
        """The blocks of `path` as it is now, whose content the graph saw as `digest`: kept ones,
        else parsed (and kept, when the file still holds that content); None when it cannot be
        read or does not parse. `literals`: with the literals digest (`constants`)."""
        cached = self.cached_blocks(digest) if digest else None
        if cached is not None and (cached.get("literals") or not literals):
            with suppress(KeyError, TypeError, ValueError):  # an entry of another shape: parsed again
                return FileBlocks.from_json(cached)
        try:
            data = (root / path).read_bytes()
            found = parse_blocks(data, path, literals)
        except (OSError, SyntaxError, ValueError):
            return None
        if digest and digest_bytes(data) == digest:
            self.cache_blocks(digest, found.to_json())
        return found

    def cache_blocks(self, digest: str, blocks: dict[str, Any]) -> None:
        """Remember block checksums (see `cache_many`)."""
        self.cache_many({f"{BLOCKS_ALGORITHM}:{digest}": json.dumps(blocks, separators=(",", ":"))})

    def cached(self, key: str) -> str | None:
        """A value `cache_many` stored under `key` (None: not there, or unreadable)."""
        try:
            row = self.conn.execute("SELECT blocks FROM block_cache WHERE key = ?", (key,)).fetchone()
        except sqlite3.Error:
            return None
        return str(row[0]) if row else None

    def cache_many(self, entries: dict[str, str]) -> None:
        """Store computed values in one transaction, keeping the newest `BLOCK_CACHE_KEEP`; best
        effort, and it never waits for another writer."""
        if not entries:
            return
        conn = self.conn
        try:
            conn.execute("PRAGMA busy_timeout = 0")
            with _immediate(conn):
                now = time.time()
                conn.executemany(
                    "INSERT OR REPLACE INTO block_cache VALUES (?, ?, ?)",
                    [(k, v, now) for k, v in entries.items()],
                )
                conn.execute(
                    "DELETE FROM block_cache WHERE key IN "
                    "(SELECT key FROM block_cache ORDER BY ts DESC LIMIT -1 OFFSET ?)",
                    (BLOCK_CACHE_KEEP,),
                )
        except sqlite3.Error:
            pass  # locked or read-only: computed again next time
        finally:
            with suppress(sqlite3.Error):
                conn.execute("PRAGMA busy_timeout = 30000")

    def known_versions(self) -> set[tuple[str, str]]:
        return {(r[0], r[1]) for r in self.conn.execute("SELECT path, digest FROM versions")}

    # -- writing -------------------------------------------------------------------------------
    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        self._file_ids.clear()  # ids cached from a rolled-back transaction are not valid
        self._nameset_ids.clear()
        self._dropped = 0
        with _immediate(self.conn):
            yield self.conn
            self.prune(self.conn)

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

    def _file_id(self, conn: sqlite3.Connection, kind: int, path: str, digest: str | None) -> int:
        key = (kind, path, digest or "")
        found = self._file_ids.get(key)
        if found is None:
            row = conn.execute(
                "INSERT INTO files (kind, path, digest) VALUES (?, ?, ?) "
                "ON CONFLICT (kind, path, digest) DO UPDATE SET kind = kind RETURNING id",
                key,
            ).fetchone()
            found = self._file_ids[key] = int(row[0])
        return found

    def _nameset_id(self, conn: sqlite3.Connection, names: list[str]) -> int:
        """The id of a set of block names, stored once however many records share it (0: none)."""
        if not names:
            return 0
        text = "\n".join(names)
        found = self._nameset_ids.get(text)
        if found is None:
            key = hashlib.blake2b(text.encode(), digest_size=16).digest()  # indexed, not the long text
            row = conn.execute(
                "INSERT INTO namesets (key, names) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET key = key RETURNING id",
                (key, text),
            ).fetchone()
            found = self._nameset_ids[text] = int(row[0])
        return found

    def record_ids(self, conn: sqlite3.Connection) -> dict[tuple[str, str], int]:
        """Every stored record's id by (node id, fingerprint)."""
        rows = conn.execute("SELECT t.nodeid, r.fp, r.id FROM records r JOIN tests t ON t.id = r.test")
        return {(nodeid, fp): rid for nodeid, fp, rid in rows}

    def touch_records(self, conn: sqlite3.Connection, seen: list[tuple[int, Record]]) -> None:
        """Records stored already (same test, same fingerprint): only their outcome, duration and time."""
        conn.executemany(
            "UPDATE records SET outcome = ?, duration = ?, ts = ?, base = max(base, ?) WHERE id = ?",
            [(rec.outcome, rec.duration, rec.ts, int(rec.base), rid) for rid, rec in seen],
        )

    def put_record(self, conn: sqlite3.Connection, rec: Record) -> None:
        test = conn.execute(
            "INSERT INTO tests (nodeid, file) VALUES (?, ?) "
            "ON CONFLICT (nodeid) DO UPDATE SET file = excluded.file RETURNING id",
            (rec.nodeid, rec.file),
        ).fetchone()[0]
        old = conn.execute("SELECT id FROM records WHERE test = ? AND fp = ?", (test, rec.fp)).fetchone()
        if old is not None:  # the same fingerprint: the same dependencies, stored already
            self.touch_records(conn, [(old[0], rec)])
            return
        via = rec.deps.get("via")
        rid = conn.execute(
            "INSERT INTO records (test, fp, outcome, duration, env, ts, opaque, via, base) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (
                test,
                rec.fp,
                rec.outcome,
                rec.duration,
                rec.env,
                rec.ts,
                int(bool(rec.deps.get("opaque"))),
                zlib.compress(json.dumps(via, separators=(",", ":")).encode()) if via else None,
                int(rec.base),
            ),
        ).fetchone()[0]
        rows = []
        for path, (digest, names, in_closure) in rec.deps.get("py", {}).items():
            kind = CLOSURE if in_closure else RAN
            rows.append((rid, self._file_id(conn, kind, path, digest), self._nameset_id(conn, names)))
        for key, kind in (("data", DATA), ("dirs", DIR)):
            for path, digest in rec.deps.get(key, {}).items():
                rows.append((rid, self._file_id(conn, kind, path, digest), 0))
        conn.executemany("INSERT OR REPLACE INTO deps VALUES (?, ?, ?)", rows)
        # kept: this record and the newest others of committed content (a branch or HEAD the user
        # comes back to); one of work in progress is superseded by the test's next run
        stale = [
            r[0]
            for r in conn.execute(
                "SELECT id FROM records WHERE test = ?1 AND id != ?2 AND (NOT base OR id NOT IN ("
                "SELECT id FROM records WHERE test = ?1 AND base AND id != ?2 ORDER BY ts DESC LIMIT ?3))",
                (test, rid, KEEP_RECORDS - 1),
            )
        ]
        self._drop_records(conn, stale)

    def _drop_records(self, conn: sqlite3.Connection, ids: list[int]) -> None:
        conn.executemany("DELETE FROM deps WHERE record = ?", [(i,) for i in ids])
        conn.executemany("DELETE FROM records WHERE id = ?", [(i,) for i in ids])
        self._dropped += len(ids)

    def prune(self, conn: sqlite3.Connection) -> None:
        """Once enough records were dropped (1 in 20 of those kept, so that the scans stay off a
        small run's path): drop the name sets, file versions and sources no record uses any more
        (each edit-run round leaves versions of the edited files behind)."""
        if self._dropped:
            row = conn.execute("SELECT value FROM meta WHERE key = 'dropped'").fetchone()
            total = self._dropped + (int(row[0]) if row and str(row[0]).isdigit() else 0)
            self._dropped = 0
            if total * 20 < conn.execute("SELECT count(*) FROM records").fetchone()[0]:
                conn.execute("INSERT OR REPLACE INTO meta VALUES ('dropped', ?)", (str(total),))
                return
            conn.execute("DELETE FROM meta WHERE key = 'dropped'")
            conn.execute("DELETE FROM namesets WHERE id NOT IN (SELECT DISTINCT names FROM deps)")
            conn.execute("DELETE FROM files WHERE id NOT IN (SELECT DISTINCT file FROM deps)")
            # a path keeps its versions while no record uses any (it stays known as instrumented)
            conn.execute(
                "DELETE FROM versions WHERE NOT EXISTS (SELECT 1 FROM files f WHERE f.kind IN (?, ?) "
                "AND f.path = versions.path AND f.digest = versions.digest) AND EXISTS (SELECT 1 "
                "FROM files f WHERE f.kind IN (?, ?) AND f.path = versions.path)",
                (RAN, CLOSURE, RAN, CLOSURE),
            )
            self._nameset_ids.clear()
            self._file_ids.clear()

    def forget_tests(self, conn: sqlite3.Connection, nodeids: list[str] | set[str]) -> None:
        """Drop every record of these tests."""
        for nodeid in nodeids:
            ids = [
                r[0]
                for r in conn.execute(
                    "SELECT r.id FROM records r JOIN tests t ON t.id = r.test WHERE t.nodeid = ?", (nodeid,)
                )
            ]
            self._drop_records(conn, ids)
            conn.execute("DELETE FROM tests WHERE nodeid = ?", (nodeid,))

    def put_test_file(self, conn: sqlite3.Connection, path: str, digest: str, nodeids: list[str]) -> None:
        old = conn.execute("SELECT nodeids FROM test_files WHERE path = ?", (path,)).fetchone()
        conn.execute(
            "INSERT OR REPLACE INTO test_files VALUES (?, ?, ?, ?)",
            (path, digest, json.dumps(sorted(nodeids)), time.time()),
        )
        if old:  # tests that no longer exist in the file disappear
            self.forget_tests(conn, set(json.loads(old[0])) - set(nodeids))

    def forget_files(self, conn: sqlite3.Connection, paths: list[str]) -> None:
        """Drop everything about deleted test files."""
        for path in paths:
            self.forget_tests(
                conn, [r[0] for r in conn.execute("SELECT nodeid FROM tests WHERE file = ?", (path,))]
            )
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
