"""The local event store under stress and on bad files: no lost event, no good history moved aside."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ect import events

WRITER = r"""
import sys
from pathlib import Path
from ect import events
state, tag, n, spool_only = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
bad = 0
for i in range(n):
    if spool_only:  # straight to the spool, as `record` does when the database is busy
        bad += not events._spool(state, list(events._row("stress", {"source": tag, "n": i}, None, state)))
    else:
        bad += not events.record(state, "stress", source=tag, n=i)
sys.exit(1 if bad else 0)
"""

FOLDER = r"""
import sqlite3, sys, time
from pathlib import Path
from ect import events
state, stop = Path(sys.argv[1]), Path(sys.argv[2])
while not stop.exists():
    try:
        with events.opened(state, timeout=0.05):
            pass
    except sqlite3.OperationalError:
        pass
"""

LOCKER = r"""
import sqlite3, sys, time
from pathlib import Path
state, stop = Path(sys.argv[1]), Path(sys.argv[2])
conn = sqlite3.connect(state / "events.db", isolation_level=None, timeout=5)
while not stop.exists():
    conn.execute("BEGIN EXCLUSIVE")
    time.sleep(0.03)
    conn.execute("COMMIT")
    time.sleep(0.005)
"""


def _py(code: str, *args: object) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != events.URL_ENV}
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], env=env)


@pytest.mark.parametrize(
    ("locked", "per_writer"),
    [
        pytest.param(True, 500, id="record-with-locked-db", marks=pytest.mark.slow),
        pytest.param(False, 2500, id="spool-only"),
    ],
)
def test_spool_folded_while_writers_append_loses_nothing(
    tmp_path: Path, locked: bool, per_writer: int
) -> None:
    """Defect 1: writers spool (the database held locked, or straight to the spool) while two readers
    rename, read and delete the spool; every event reported as stored is in the database afterwards."""
    state = tmp_path / ".ect"
    events.connect(state).close()
    stop = tmp_path / "stop"
    helpers = [_py(FOLDER, state, stop), _py(FOLDER, state, stop)]
    if locked:
        helpers.append(_py(LOCKER, state, stop))
    try:
        writers = [_py(WRITER, state, f"w{i}", per_writer, int(not locked)) for i in range(4)]
        codes = [w.wait(timeout=120) for w in writers]
    finally:
        stop.touch()
        for h in helpers:
            h.wait(timeout=30)
    assert codes == [0, 0, 0, 0]
    with events.opened(state) as conn:
        stored = conn.execute("SELECT count(DISTINCT uid) FROM events WHERE kind = 'stress'").fetchone()[0]
    assert stored == 4 * per_writer
    assert not list(state.glob(events.SPOOL_NAME + "*"))


def test_writes_never_checkpoint_and_readers_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Defect 8: a write never runs the WAL checkpoint (an fsync) itself; opening for reading does."""
    state = tmp_path / ".ect"
    monkeypatch.setattr(events, "WAL_LIMIT", 1 << 40)  # no background checkpoint either
    for i in range(300):
        assert events.record(state, "x", n=i)
    wal = state / (events.DB_NAME + "-wal")
    conn = events._writer(state)
    assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    size = wal.stat().st_size
    assert size > 1000 * 300  # nothing was copied back and reset while writing
    with events.opened(state) as reader:
        busy, log, done = reader.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        assert busy == 0 and log == done  # `opened` already copied every frame back
        assert reader.execute("SELECT count(*) FROM events WHERE kind = 'x'").fetchone()[0] == 300


def test_background_checkpoint_bounds_the_wal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past `WAL_LIMIT` bytes not yet copied back, a write starts a PASSIVE checkpoint in a daemon
    thread (never inside the write); the WAL file is then reused from its start, not truncated and
    regrown, so it stays bounded; a WAL in use past `WAL_RESTART` is restarted by the thread."""
    state = tmp_path / ".ect"
    wal = state / (events.DB_NAME + "-wal")
    monkeypatch.setattr(events, "WAL_LIMIT", 64 << 10)
    monkeypatch.setattr(events, "WAL_CHECK_EVERY", 8)

    def settle() -> None:
        deadline = time.monotonic() + 10
        while events._checkpointing.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)

    sizes, restarted = [], False
    for i in range(400):
        events.record(state, "x", n=i)
        settle()  # writes with pauses: each checkpoint completes before the next write
        frames = events.wal_frames(state)
        assert frames is not None
        restarted |= frames[0] < 10  # the write after a complete checkpoint began the WAL anew
        sizes.append(wal.stat().st_size)
    assert restarted
    assert max(sizes) < 4 * (64 << 10)  # 400 writes put about 8 MB of frames in it: reused, not regrown
    # writes that never pause: the WAL in use passes WAL_RESTART, and the thread restarts it
    monkeypatch.setattr(events, "WAL_LIMIT", 1 << 40)
    for i in range(60):
        events.record(state, "y", n=i)
    monkeypatch.setattr(events, "WAL_LIMIT", 64 << 10)
    monkeypatch.setattr(events, "WAL_RESTART", 128 << 10)
    statements: list[str] = []
    real_connect = sqlite3.connect

    def traced(*args: Any, **kwargs: Any) -> sqlite3.Connection:  # the thread's real connection, watched
        conn = real_connect(*args, **kwargs)
        conn.set_trace_callback(statements.append)
        return conn

    monkeypatch.setattr(sqlite3, "connect", traced)
    events._writes[0] = events.WAL_CHECK_EVERY - 1
    events.record(state, "y", n=60)
    assert events._checkpointing.is_set()
    settle()
    monkeypatch.setattr(sqlite3, "connect", real_connect)
    assert statements == ["PRAGMA wal_checkpoint(PASSIVE)", "PRAGMA wal_checkpoint(RESTART)"]
    before = events.wal_frames(state)
    assert before is not None and before[0] == before[1] > 0  # all copied back, no reader left on it
    events.record(state, "y", n=61)
    frames = events.wal_frames(state)
    # so the next write began the WAL anew (one write is a few pages, up to ~10 when a b-tree page splits)
    assert frames is not None and frames[0] < min(before[0], 32)
    assert len(events.query(state, kind="x")) == 400
    assert len(events.query(state, kind="y")) == 62


def test_checkpoint_trigger_without_a_wal_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the wal-index cannot be read (another VFS, a newer format), the trigger goes by the WAL
    file's size, so a long-lived writer still bounds its WAL."""
    state = tmp_path / ".ect"
    assert events.record(state, "x", n=0)
    frames = events.wal_frames(state)
    assert frames is not None and frames[0] > 0 and frames[2] == 4096 + 24
    monkeypatch.setattr(events, "wal_frames", lambda state_dir: None)
    monkeypatch.setattr(events, "WAL_LIMIT", 64 << 10)
    monkeypatch.setattr(events, "WAL_CHECK_EVERY", 8)
    started = False
    for i in range(40):
        events.record(state, "x", n=i + 1)
        started |= events._checkpointing.is_set()
    deadline = time.monotonic() + 10
    while events._checkpointing.is_set() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert started
    with events.opened(state) as conn:
        busy, log, done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    assert busy == 0 and log == done


DMS_PROBE = r"""
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
try:
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 128)  # SQLite's "a connection is open" byte
    print("unlocked")
except OSError:
    print("held")
"""


def test_reading_the_wal_index_keeps_sqlites_locks(tmp_path: Path) -> None:
    """Looking at the wal-index must not drop this process's POSIX locks on it (closing a descriptor
    does): another process would take the database for unused and truncate the wal-index (SIGBUS)."""
    state = tmp_path / ".ect"
    assert events.record(state, "x", n=0)
    shm = str(state / (events.DB_NAME + "-shm"))

    def probe() -> str:
        cmd = [sys.executable, "-c", DMS_PROBE, shm]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()

    assert probe() == "held"  # the cached writer connection holds it
    for _ in range(3):
        assert events.wal_frames(state) is not None
    assert probe() == "held"
    with open(shm, "rb") as f:  # what the first version did: open, read, close
        f.read(100)
    assert probe() == "unlocked"  # the hazard this guards against is real


def test_busy_write_keeps_the_cached_connection(tmp_path: Path) -> None:
    """A write that finds the database busy retries on the same connection (reopening costs more than
    the write) and then spools; only other errors drop the cached connection."""
    state = tmp_path / ".ect"
    assert events.record(state, "x", n=0)
    conn = events._writer(state)
    locker = sqlite3.connect(state / events.DB_NAME, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    try:
        assert events.record(state, "x", n=1)  # spooled
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert (state / events.SPOOL_NAME).exists()
    assert events._writer(state) is conn
    assert events.record(state, "x", n=2)
    assert events._writer(state) is conn
    assert sorted(e["n"] for e in events.query(state, kind="x")) == [0, 1, 2]


RECORD_ONE = r"""
import sys
from pathlib import Path
from ect import events
print(events.record(Path(sys.argv[1]), "new"))
"""


def test_read_only_healthy_database_is_never_moved_aside(tmp_path: Path) -> None:
    """Defect 7: a database its user cannot write is not corrupt: the event is spooled, the file and
    its history stay. (As root, the writer runs without the capability to override permissions.)"""
    state = tmp_path / ".ect"
    for i in range(5):
        events.record(state, "old", ts=time.time() - 100 + i)
    events._drop_writer(state)
    with events.opened(state):
        pass  # checkpointed: the database file alone holds the history
    for side in ("-wal", "-shm"):
        (state / (events.DB_NAME + side)).unlink(missing_ok=True)
    db = state / events.DB_NAME
    db.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    prefix: list[str] = []
    if os.getuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("root without setpriv cannot be denied a write")
        prefix = [setpriv, "--bounding-set", "-dac_override,-dac_read_search"]
    env = {k: v for k, v in os.environ.items() if k != events.URL_ENV}
    res = subprocess.run(
        [*prefix, sys.executable, "-c", RECORD_ONE, str(state)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert res.stdout.strip() == "True", res.stderr
    assert "corrupt" not in res.stderr and "readonly" in res.stderr  # said once, as a warning
    assert db.exists() and not list(state.glob(events.DB_NAME + ".corrupt-*"))
    assert (state / events.SPOOL_NAME).exists()
    db.chmod(0o644)
    kinds = [e["kind"] for e in events.query(state)]
    assert kinds.count("old") == 5 and kinds.count("new") == 1  # folded in once writable


def test_corrupt_but_not_readonly_file_is_moved_aside(tmp_path: Path) -> None:
    state = tmp_path / ".ect"
    state.mkdir()
    (state / events.DB_NAME).write_bytes(b"garbage" * 1000)
    assert events.record(state, "x")
    assert len(list(state.glob(events.DB_NAME + ".corrupt-*"))) == 1
    assert [e["kind"] for e in events.query(state)] == ["x"]


def test_spool_line_format_round_trips(tmp_path: Path) -> None:
    state = tmp_path / ".ect"
    state.mkdir()
    row = list(events._row("k", {"outcome": "pass", "n": 1}, 5.0, state))
    assert events._spool(state, row)
    line = (state / events.SPOOL_NAME).read_text().strip()
    assert json.loads(line)[2] == "k"
    with events.opened(state) as conn:
        assert conn.execute("SELECT kind, outcome FROM events").fetchall() == [("k", "pass")]
