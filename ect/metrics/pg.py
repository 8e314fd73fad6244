"""Team mode: the shared PostgreSQL event store (psycopg 3, imported only here)."""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any

from ect.errors import EctError
from ect.events import URL_ENV

if TYPE_CHECKING:
    import psycopg

TABLE = "ect_events"
CONNECT_TIMEOUT_S = 3
STATEMENT_TIMEOUT_MS = 60_000  # the server ends any statement of ours running longer
# A network that dies after connecting: TCP keepalives notice a silent peer while we wait for a
# reply (5 s idle, then 3 probes 2 s apart), and unacknowledged data fails the socket after 20 s.
KEEPALIVES: dict[str, Any] = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": 20_000,
}

# Versioned like the local store: PG_MIGRATIONS[i] upgrades version i to i+1.
PG_MIGRATIONS: list[str] = [
    """
    CREATE TABLE IF NOT EXISTS ect_events (
        uid TEXT PRIMARY KEY,
        ts DOUBLE PRECISION NOT NULL,
        kind TEXT NOT NULL,
        source TEXT,
        repo TEXT,
        author TEXT,
        commit_sha TEXT,
        duration_ms DOUBLE PRECISION,
        outcome TEXT,
        data JSONB NOT NULL DEFAULT '{}',
        attempt INTEGER,
        changes_ms DOUBLE PRECISION,
        compile_ms DOUBLE PRECISION,
        select_ms DOUBLE PRECISION,
        tests_ms DOUBLE PRECISION,
        files_selected INTEGER,
        files_total INTEGER,
        chars INTEGER,
        received DOUBLE PRECISION NOT NULL DEFAULT extract(epoch from now())
    );
    CREATE INDEX IF NOT EXISTS ect_events_kind_ts ON ect_events (kind, ts);
    CREATE INDEX IF NOT EXISTS ect_events_ts ON ect_events (ts);
    """,
]
PG_SCHEMA_VERSION = len(PG_MIGRATIONS)


def team_url(explicit: str | None = None) -> str | None:
    """The team database URL: `--url`, else `ECT_METRICS_URL`, else None (local only)."""
    url = explicit or os.environ.get(URL_ENV) or None
    if url and not re.match(r"^postgres(ql)?://", url):
        raise EctError(f"{URL_ENV} must be a postgresql:// URL, got {redact(url)!r}")
    return url


_QUERY_SECRET = re.compile(r"([?&](?:password|passfile|sslpassword|sslkey)=)[^&#]*", re.IGNORECASE)


def redact(url: str) -> str:
    """The URL without its password (in the user part or the query string), for messages."""
    url = re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)
    return _QUERY_SECRET.sub(r"\1***", url)


def connect(url: str, timeout: int = CONNECT_TIMEOUT_S) -> psycopg.Connection[Any]:
    """Connect and migrate; an unreachable server is an EctError naming it (password hidden)."""
    try:
        import psycopg
    except ImportError:
        raise EctError("team mode needs psycopg (pip install 'ect-loop[team]')") from None
    try:
        conn = psycopg.connect(
            url,
            connect_timeout=timeout,
            application_name="ect",
            options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
            **KEEPALIVES,
        )
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EctError(f"cannot reach the team database {redact(url)}: {_scrub(first, url)}") from None
    migrate(conn)
    return conn


def _scrub(text: str, url: str) -> str:
    """A driver message with any secret of the URL blanked out (libpq may echo what it was given)."""
    for secret in re.findall(r"://[^:/@]+:([^@]+)@", url) + [
        m.group(0).split("=", 1)[1] for m in _QUERY_SECRET.finditer(url)
    ]:
        if secret:
            text = text.replace(secret, "***")
    return text


def migrate(conn: psycopg.Connection[Any]) -> None:
    """Bring the team schema to `PG_SCHEMA_VERSION` (serialised by an advisory lock)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(7272727)")
        conn.execute("CREATE TABLE IF NOT EXISTS ect_schema (version INTEGER NOT NULL)")
        row = conn.execute("SELECT version FROM ect_schema").fetchone()
        version = row[0] if row else 0
        if row is None:
            conn.execute("INSERT INTO ect_schema VALUES (0)")
        if version > PG_SCHEMA_VERSION:
            raise EctError(f"team database schema {version} is newer than this ect ({PG_SCHEMA_VERSION})")
        for step in range(version, PG_SCHEMA_VERSION):
            conn.execute(PG_MIGRATIONS[step])
        conn.execute("UPDATE ect_schema SET version = %s", (PG_SCHEMA_VERSION,))
