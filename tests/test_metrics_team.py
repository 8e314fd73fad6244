"""Team mode against a real PostgreSQL server.

The server: `ECT_TEST_PG_URL` if set (CI starts one with scripts/start_postgres.sh), else a
throwaway cluster started here from Debian's postgresql binaries; skipped only when there are none.
Each test gets its own database.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ect import events

ROOT = Path(__file__).resolve().parents[1]
psycopg = pytest.importorskip("psycopg", reason="team mode needs psycopg")


def _pg_binaries() -> bool:
    return bool(list(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))) or shutil.which("pg_ctl") is not None


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("ECT_TEST_PG_URL")
    if url:
        yield url
        return
    if not _pg_binaries():
        pytest.skip("no PostgreSQL binaries (apt-get install -y postgresql) and ECT_TEST_PG_URL is not set")
    d = Path(tempfile.mkdtemp(prefix="ect-pg-"))  # /tmp: reachable by the postgres user when run as root
    os.chmod(d, 0o755)
    script = str(ROOT / "scripts" / "start_postgres.sh")
    out = subprocess.run(["bash", script, "start", str(d / "c")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    try:
        yield out.stdout.strip().split("=", 1)[1]
    finally:
        subprocess.run(["bash", script, "stop", str(d / "c")], timeout=60)
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def team_url(server: str) -> Iterator[str]:
    name = "ect_t_" + uuid.uuid4().hex[:10]
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    base, _, _ = server.rpartition("/")
    yield f"{base}/{name}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def env(url: str | None = None) -> dict[str, str]:
    e = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1"}
    e.pop("ECT_METRICS_URL", None)
    if url:
        e["ECT_METRICS_URL"] = url
    return e


def ect(repo: Path, *args: str, url: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ect", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        env=env(url),
        timeout=120,
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    return root


def remote_uids(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        if conn.execute("SELECT to_regclass('ect_events')").fetchone() == (None,):
            return []  # not created yet: no forwarder has connected
        return [r[0] for r in conn.execute("SELECT uid FROM ect_events")]


def test_sync_forwards_and_resync_never_duplicates(repo: Path, team_url: str) -> None:
    state = repo / ".ect"
    for i in range(50):
        events.record(state, "loop.run", ts=time.time() - i, outcome="pass", duration_ms=float(i))
    res = ect(repo, "metrics", "sync", "--url", team_url)
    assert res.returncode == 0, res.stderr
    assert "sent 50 events" in res.stdout and ": 50 new;" in res.stdout and "0 pending" in res.stdout
    local = {e["uid"] for e in events.query(state)}
    assert sorted(remote_uids(team_url)) == sorted(local)
    res = ect(repo, "metrics", "sync", "--all", "--url", team_url)  # everything is sent again
    assert "sent 50 events" in res.stdout and ": 0 new (50 already there)" in res.stdout  # defect 6
    assert len(remote_uids(team_url)) == 50
    status = ect(repo, "metrics", "status", url=team_url)
    assert "0 pending" in status.stdout


def _dead_url() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"postgresql://ect@127.0.0.1:{port}/ect"


def test_unreachable_team_db_keeps_events_locally_until_sync(repo: Path, team_url: str) -> None:
    dead = _dead_url()
    code = (
        "import sys, time; from pathlib import Path; from ect import events\n"
        "for i in range(100): events.record(Path(sys.argv[1]), 'x.offline', n=i)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(repo / ".ect")], env=env(dead), timeout=60)
    assert proc.returncode == 0
    assert len(events.query(repo / ".ect")) == 100
    res = ect(repo, "metrics", "sync", url=dead)
    assert res.returncode == 2
    assert "cannot reach the team database" in res.stderr and "Traceback" not in res.stderr
    res = ect(repo, "metrics", "sync", "--url", team_url)
    assert res.returncode == 0 and "sent 100 events" in res.stdout
    assert len(remote_uids(team_url)) == 100


def test_record_in_team_mode_forwards_in_the_background(repo: Path, team_url: str) -> None:
    code = (
        "import sys; from pathlib import Path; from ect import events\n"
        "for i in range(30): events.record(Path(sys.argv[1]), 'x.live', n=i)\n"
    )
    subprocess.run(
        [sys.executable, "-c", code, str(repo / ".ect")], env=env(team_url), timeout=60, check=True
    )
    deadline = time.time() + 30
    while time.time() < deadline and len(remote_uids(team_url)) < 30:
        time.sleep(0.2)
    assert len(remote_uids(team_url)) == 30


def _history(state: Path, now: float) -> None:
    for i in range(40):
        events.record(
            state,
            "loop.run",
            ts=now - 3000 * i,
            source="hook",
            repo="r",
            author=f"dev{i % 3}",
            outcome="fail" if i % 4 == 0 else "pass",
            duration_ms=50.0 + 7 * i,
            phases={"changes": 1.0 + i, "compile": 10.0, "select": 2.0, "tests": 30.0 + 5 * i},
            test_files_selected=2,
            test_files_total=10,
        )
        events.record(state, "completion.shown", ts=now - 3000 * i - 5, author=f"dev{i % 3}")
        if i % 2:
            events.record(state, "completion.accepted", ts=now - 3000 * i - 4, chars=20, author=f"dev{i % 3}")
    for i in range(6):
        t = now - 20000 * i - 100
        events.record(
            state,
            "git.commit",
            ts=t,
            commit_sha=f"c{i}",
            outcome="checked" if i % 3 else "bypassed",
            chars=200,
            loop_runs=i + 1,
            first_run_outcome="pass",
            first_run_ts=t - 600,
            accepted=i % 2,
        )
        events.record(state, "review.requested", ts=t + 10, commit_sha=f"c{i}")
        events.record(state, "review.approved", ts=t + 1000 * (i + 1), commit_sha=f"c{i}")
        events.record(
            state,
            "promotion.done",
            ts=t + 5000,
            stage="production",
            commit_sha=f"c{i}",
            first_commit_ts=t - 3600,
        )
    events.record(state, "rollback", ts=now - 1000, commit_sha="c0")


def test_team_report_equals_local_report(repo: Path, team_url: str) -> None:
    _history(repo / ".ect", time.time() - 10_000)
    until = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 60))  # one window for both
    args = ("report", "--since", "3d", "--until", until, "--format", "json", "--by", "author")
    local = ect(repo, *args, "--local")
    assert local.returncode == 0, local.stderr
    team = ect(repo, *args, url=team_url)
    assert team.returncode == 0, team.stderr
    a, b = json.loads(local.stdout), json.loads(team.stdout)
    assert (a["store"]["kind"], b["store"]["kind"]) == ("sqlite", "postgresql")
    for key in ("loop", "editor", "adoption", "review", "delivery", "ab", "breakdown"):
        assert json.dumps(a[key], sort_keys=True) == json.dumps(b[key], sort_keys=True), key
    assert a["loop"]["runs"] == 40 and a["delivery"]["deployments"] == 6


def test_team_report_equals_local_fast_path_on_a_generated_history(tmp_path: Path, team_url: str) -> None:
    """The commit figures the local store fills on insert (A/B, first parent, change key) and its
    per-day values equal what the team database computes from `data` and sorts in the server."""
    from test_metrics_fastpath import END, START, _close, _history, _insert, _rows

    from ect.metrics import report
    from ect.metrics.forward import sync
    from ect.metrics.store import PostgresStore, SqliteStore

    state = tmp_path / ".ect"
    _insert(state, _rows(state, _history()))
    assert sync(state, team_url).pending == 0
    local, team = SqliteStore(state), PostgresStore(team_url)
    try:
        a = report.build(local, START, END, by="author")
        b = report.build(team, START, END, by="author")
    finally:
        local.close()
        team.close()
    assert a["ab"]["metrics"]["hours_to_approval"]["n_with"] > 0 and a["review"]["requests"] > 3
    for key in ("loop", "editor", "adoption", "review", "delivery", "ab", "trends", "breakdown"):
        _close(b[key], a[key], key)


def test_prune_team_and_unforwarded_events_are_kept(repo: Path, team_url: str) -> None:
    state = repo / ".ect"
    old = time.time() - 200 * 86400
    events.record(state, "x.old", ts=old)
    events.record(state, "x.new")
    res = ect(repo, "metrics", "prune", "--older-than", "90d", url=team_url)
    assert "deleted 0 events" in res.stdout and "kept 1 not yet forwarded" in res.stdout
    assert ect(repo, "metrics", "sync", url=team_url).returncode == 0
    res = ect(repo, "metrics", "prune", "--older-than", "90d", "--team", url=team_url)
    assert res.returncode == 0, res.stderr
    assert "local: deleted 1 event older" in res.stdout and "team: deleted 1 event in" in res.stdout
    assert len(remote_uids(team_url)) == 1


class BlackholeProxy:
    """A TCP proxy to PostgreSQL that goes silent (keeps the sockets open, answers nothing) once the
    client sends `trigger`: a network that died after connecting, as a middlebox would show it."""

    def __init__(self, upstream: str, trigger: bytes = b"CREATE TEMP") -> None:
        import threading
        from urllib.parse import urlsplit

        parts = urlsplit(upstream)
        self.target = (parts.hostname or "127.0.0.1", parts.port or 5432)
        self.trigger = trigger
        self.dead = threading.Event()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        port = self.sock.getsockname()[1]
        self.url = upstream.replace(f"{parts.hostname}:{parts.port}", f"127.0.0.1:{port}")
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import threading

        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            server = socket.create_connection(self.target, timeout=10)
            self.conns += [client, server]
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, from_client: bool) -> None:
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                return
            if not data:
                return
            if from_client and self.trigger in data:
                self.dead.set()
            if not self.dead.is_set():
                try:
                    dst.sendall(data)
                except OSError:
                    return

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


FORWARDER = r"""
import sys
from pathlib import Path
from ect.metrics.forward import run_forwarder
max_s = None if sys.argv[3] == "-" else float(sys.argv[3])
sys.exit(run_forwarder(Path(sys.argv[1]), sys.argv[2], linger_s=0.5, max_s=max_s, stale_s=float(sys.argv[4])))
"""


def _forwarder(state: Path, url: str, max_s: str, stale_s: float = 90.0) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", FORWARDER, str(state), url, max_s, str(stale_s)], env=env(), text=True
    )


def test_connection_has_statement_timeout_and_keepalives(team_url: str) -> None:
    """Defect 2: the server ends a long statement; TCP keepalives watch a silent peer."""
    from ect.metrics import pg

    conn = pg.connect(team_url)
    try:
        assert conn.execute("SHOW statement_timeout").fetchone() == ("1min",)
        params = conn.info.get_parameters()
        assert params.get("keepalives_idle") == "5" and params.get("tcp_user_timeout") == "20000"
    finally:
        conn.close()


@pytest.mark.slow
def test_forwarder_on_a_dead_network_ends_itself_and_loses_nothing(tmp_path: Path, team_url: str) -> None:
    """Defect 2: connected, then the network goes silent: the forwarder ends at its lifetime limit,
    frees the lock, and every event is still queued locally for the next sync."""
    state = tmp_path / ".ect"
    for i in range(20):
        events.record(state, "t.event", n=i)
    proxy = BlackholeProxy(team_url)
    try:
        t0 = time.monotonic()
        proc = _forwarder(state, proxy.url, "3")
        rc = proc.wait(timeout=30)
        assert proxy.dead.is_set()  # it did hang on the silent connection
        assert rc != 0 and time.monotonic() - t0 < 15
    finally:
        proxy.close()
    from ect.metrics.forward import sync

    assert sync(state, team_url).sent == 20
    assert len(remote_uids(team_url)) == 20


@pytest.mark.slow
def test_a_hung_forwarder_lock_is_taken_over(tmp_path: Path, team_url: str) -> None:
    """Defect 2: a forwarder hung without a lifetime limit holds `forward.lock`; once its heartbeat is
    stale, the next forwarder ends it, takes the lock and forwards everything."""
    state = tmp_path / ".ect"
    for i in range(20):
        events.record(state, "t.event", n=i)
    proxy = BlackholeProxy(team_url)
    hung = _forwarder(state, proxy.url, "-")
    try:
        deadline = time.monotonic() + 20
        while not proxy.dead.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proxy.dead.is_set()
        blocked = _forwarder(state, team_url, "20", stale_s=60.0)
        assert blocked.wait(timeout=30) == 0  # lock held and fresh: it leaves
        assert remote_uids(team_url) == []
        time.sleep(1.2)
        successor = _forwarder(state, team_url, "20", stale_s=1.0)
        assert successor.wait(timeout=30) == 0
        assert hung.wait(timeout=10) == -9
    finally:
        if hung.poll() is None:
            hung.kill()
            hung.wait()
        proxy.close()
    assert len(remote_uids(team_url)) == 20


def test_team_down_offers_local_and_hides_the_password(repo: Path, team_url: str) -> None:
    """Defect 7: a password in the URL's query string never shows; the team report, when the server
    is down, says how to report locally; `--local` ignores a bad ECT_METRICS_URL."""
    events.record(repo / ".ect", "loop.run", outcome="pass", duration_ms=5.0)
    dead = _dead_url() + "?password=hunter2&sslmode=disable"
    for args in (["report"], ["metrics", "sync"], ["metrics", "status"]):
        res = ect(repo, *args, url=dead)
        assert "hunter2" not in res.stdout + res.stderr, args
    res = ect(repo, "report", url=dead)
    assert res.returncode == 2 and "password=***" in res.stderr
    assert "`ect report --local`" in res.stderr and "Traceback" not in res.stderr
    res = ect(repo, "report", "--local", "--format", "json", url="mysql://not-a-postgres-url")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["store"]["kind"] == "sqlite"
