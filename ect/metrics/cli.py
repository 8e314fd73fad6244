"""`ect report` and `ect metrics sync|prune|status|post-commit`."""

from __future__ import annotations

import shutil
import sqlite3
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from ect import events
from ect.config import Config, check_table, load_config
from ect.errors import EctError
from ect.metrics import timespec
from ect.metrics.formats import FORMATS, plural
from ect.metrics.report import BY_CHOICES
from ect.repo import find_root

SCHEMA = {"production_stage": ("str", "production")}


def _setup() -> tuple[Path, Config, dict[str, Any]]:
    root = find_root()
    cfg = load_config(root)
    settings = check_table("metrics", cfg.section("metrics"), SCHEMA, cfg.source)
    if "production_stage" not in cfg.section("metrics"):
        settings["production_stage"] = _last_stage(cfg) or settings["production_stage"]
    return root, cfg, settings


def _last_stage(cfg: Config) -> str | None:
    """Production is the last promotion stage of `[tool.ect.stages]` (the review part's setting)."""
    try:
        from ect.review.settings import parse

        stages = parse(cfg.sections, cfg.source).stages
    except Exception:  # no review part, or its own config error (reported by `ect review`)
        return None
    return stages[-1].name if stages else None


def _open_local(state: Path) -> Any:
    """The local store, migrating an older schema (said on stderr) and refusing a newer one."""
    from ect.metrics.store import SqliteStore

    db = state / events.DB_NAME
    if not db.exists() and not (state / events.SPOOL_NAME).exists():
        raise EctError(
            f"no events recorded yet (no {db}); run `ect check` or install the hooks "
            "(`ect hooks install`) to start measuring",
            1,
        )
    version = _schema_version(db)
    if version is not None and version > events.SCHEMA_VERSION:
        raise EctError(
            f"event store {db} has schema v{version}, newer than this ect "
            f"(v{events.SCHEMA_VERSION}): upgrade ect"
        )
    try:
        store = SqliteStore(state)
    except sqlite3.DatabaseError as exc:
        raise EctError(
            f"cannot read the event store {db}: {exc} (the next write moves a corrupt file "
            "aside and starts a new one)"
        ) from None
    if version is not None and version < events.SCHEMA_VERSION:
        click.echo(
            f"ect: migrated event store {db} from schema v{version} to v{events.SCHEMA_VERSION}", err=True
        )
    return store


@contextmanager
def _local_db(state: Path) -> Iterator[sqlite3.Connection]:
    """The local event database for `metrics` commands; a newer schema or a damaged file is a one-line
    error (never moved aside here: only a write through `ect.events.record` does that)."""
    db = state / events.DB_NAME
    version = _schema_version(db)
    if version is not None and version > events.SCHEMA_VERSION:
        raise EctError(
            f"event store {db} has schema v{version}, newer than this ect "
            f"(v{events.SCHEMA_VERSION}): upgrade ect"
        )
    try:
        with events.opened(state) as conn:
            yield conn
    except sqlite3.DatabaseError as exc:
        raise EctError(f"cannot read the event store {db}: {exc}") from None


def _schema_version(db: Path) -> int | None:
    if not db.exists():
        return None
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return int(conn.execute("PRAGMA user_version").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.DatabaseError:
        return None


@click.command("report")
@click.option("--since", default="30d", show_default=True, help=f"Start: {timespec.HELP}.")
@click.option("--until", default=None, help="End (default now); same forms as --since.")
@click.option("--by", type=click.Choice(BY_CHOICES), default=None, help="Add a breakdown by this dimension.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write to this file instead of stdout.",
)
@click.option(
    "--team/--local",
    "team",
    default=None,
    help="Report from the team database (default when ECT_METRICS_URL is set) or the local log.",
)
@click.option("--url", default=None, help="Team database URL (overrides ECT_METRICS_URL).")
def report(
    since: str,
    until: str | None,
    by: str | None,
    fmt: str,
    output: Path | None,
    team: bool | None,
    url: str | None,
) -> int:
    """Productivity report: loop, editor, review, delivery (DORA), A/B, weekly trends."""
    from ect.metrics import pg
    from ect.metrics.report import build

    start, end = timespec.window(since, until)
    _root, cfg, settings = _setup()
    team_url = pg.team_url(url) if team is not False or url else None  # --local never reads the URL
    use_team = bool(team_url) if team is None else team
    if use_team and not team_url:
        raise EctError(f"--team needs a database: set {events.URL_ENV} or pass --url")
    store: Any
    if use_team:
        assert team_url is not None
        from ect.metrics.store import PostgresStore

        try:
            store = PostgresStore(team_url)
        except EctError as exc:
            raise EctError(f"{exc}; `ect report --local` reports this machine's events") from None
        _try_sync(cfg.state_path, team_url, store.conn)
    else:
        store = _open_local(cfg.state_path)
    try:
        result = build(store, start, end, by=by, production=settings["production_stage"])
        if result["events"] == 0:
            total = store.rows("SELECT count(*), min(ts), max(ts) FROM {t}")[0]
            held = "it is empty"
            if total[0]:
                first, last = timespec_label(total[1]), timespec_label(total[2])
                held = f"it holds {total[0]:,} events, {first} to {last}"
            raise EctError(
                f"no events between {result['window']['since']} and {result['window']['until']} "
                f"in {store.where_label} ({held}); widen --since/--until",
                1,
            )
    except store.errors as exc:
        raise EctError(f"reading {store.where_label} failed: {str(exc).strip().splitlines()[0]}") from None
    finally:
        store.close()
    width = None if output else shutil.get_terminal_size((110, 24)).columns
    text = _render(result, fmt, width=width, state=cfg.state_path)
    if output is None:
        click.echo(text, nl=False)
    else:
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise EctError(f"cannot write {output}: {exc.strerror}") from None
        click.echo(f"wrote {output} ({fmt}, {plural(result['events'], 'event')})", err=True)
    return 0


def timespec_label(ts: float | None) -> str:
    return "-" if ts is None else time.strftime("%Y-%m-%d", time.gmtime(ts))


def _render(result: dict[str, Any], fmt: str, width: int | None = None, state: Path | None = None) -> str:
    from ect.metrics import formats

    if fmt == "json":
        return formats.to_json(result)
    if fmt == "csv":
        return formats.to_csv(result)
    if fmt == "html":
        import importlib.util

        if importlib.util.find_spec("matplotlib") is None:
            raise EctError("--format html needs matplotlib (pip install 'ect-loop[report]')")
        from ect.metrics.html_report import to_html

        return to_html(result, state)  # charts kept in the state directory
    return formats.to_table(result, width=width)


def _try_sync(state: Path, url: str, remote: Any) -> None:
    """Forward local events first so the team report includes them (on the report's connection)."""
    from ect.metrics.forward import sync

    if not (state / events.DB_NAME).exists():
        return
    try:
        sync(state, url, remote=remote)
    except EctError as exc:
        click.echo(f"ect: warning: local events not forwarded: {exc}", err=True)


@click.group("metrics")
def metrics() -> None:
    """Manage the event store: forward to the team database, prune, inspect."""


@metrics.command("sync")
@click.option("--url", default=None, help="Team database URL (overrides ECT_METRICS_URL).")
@click.option(
    "--all", "resend", is_flag=True, help="Send every local event again (e.g. to a rebuilt database)."
)
def sync_cmd(url: str | None, resend: bool) -> int:
    """Forward local events to the team database now (idempotent: re-running never duplicates)."""
    from ect.metrics import pg
    from ect.metrics.forward import reset_mark, sync

    _root, cfg, _ = _setup()
    team_url = pg.team_url(url)
    if not team_url:
        raise EctError(f"team mode is off: set {events.URL_ENV}=postgresql://... or pass --url")
    if not (cfg.state_path / events.DB_NAME).exists():
        click.echo("nothing to forward: no local events yet")
        return 0
    with _local_db(cfg.state_path):
        pass  # a newer or damaged store is a one-line error before anything is sent
    try:
        if resend:
            reset_mark(cfg.state_path, team_url)
        result = sync(cfg.state_path, team_url)
    except sqlite3.DatabaseError as exc:
        raise EctError(f"cannot read the event store {cfg.state_path / events.DB_NAME}: {exc}") from None
    known = result.sent - result.new
    already = f" ({known:,} already there)" if known else ""
    click.echo(
        f"sent {plural(result.sent, 'event')} to {result.target}: {result.new:,} new{already};"
        f" {result.pending:,} pending"
    )
    return 0


@metrics.command("prune")
@click.option("--older-than", "older_than", required=True, help="Delete events older than this (e.g. 90d).")
@click.option("--team", is_flag=True, help="Also delete them from the team database.")
@click.option("--force", is_flag=True, help="Delete local events even if not yet forwarded.")
@click.option("--dry-run", is_flag=True, help="Only say how many would go.")
@click.option("--url", default=None, help="Team database URL (overrides ECT_METRICS_URL).")
def prune(older_than: str, team: bool, force: bool, dry_run: bool, url: str | None) -> int:
    """Delete old events (retention). Unforwarded events are kept in team mode unless --force."""
    from ect.metrics import pg

    cutoff = timespec.parse_time(older_than, "--older-than")
    _root, cfg, _ = _setup()
    team_url = pg.team_url(url)
    if team and not team_url:
        raise EctError(f"--team needs a database: set {events.URL_ENV} or pass --url")
    state = cfg.state_path
    removed = kept = 0
    if (state / events.DB_NAME).exists():
        with _local_db(state) as conn:
            limit = "" if force or not team_url else " AND id <= ?"
            args: list[Any] = [cutoff]
            if limit:
                from ect.metrics.forward import forwarded_mark

                args.append(forwarded_mark(conn, team_url or ""))
            old = conn.execute("SELECT count(*) FROM events WHERE ts < ?", (cutoff,)).fetchone()[0]
            removed = conn.execute(f"SELECT count(*) FROM events WHERE ts < ?{limit}", args).fetchone()[0]
            kept = old - removed
            if not dry_run and removed:
                conn.execute(f"DELETE FROM events WHERE ts < ?{limit}", args)
    verb = "would delete" if dry_run else "deleted"
    note = f"; kept {kept:,} not yet forwarded (run `ect metrics sync` or use --force)" if kept else ""
    click.echo(f"local: {verb} {plural(removed, 'event')} older than {timespec_label(cutoff)}{note}")
    if team and team_url:
        conn_pg = pg.connect(team_url)
        try:
            with conn_pg.transaction():
                sql = "FROM ect_events WHERE ts < %s"
                if dry_run:
                    n = conn_pg.execute(f"SELECT count(*) {sql}", (cutoff,)).fetchone()
                    count = n[0] if n else 0
                else:
                    count = conn_pg.execute(f"DELETE {sql}", (cutoff,)).rowcount
        finally:
            conn_pg.close()
        click.echo(f"team: {verb} {plural(count, 'event')} in {pg.redact(team_url)}")
    return 0


@metrics.command("status")
def status() -> int:
    """Where events are kept, how many, and how many wait to be forwarded."""
    from ect.metrics import pg

    _root, cfg, _ = _setup()
    state = cfg.state_path
    db = state / events.DB_NAME
    click.echo(f"local store: {db} (schema v{_schema_version(db) or 0}, current v{events.SCHEMA_VERSION})")
    team_url = pg.team_url()
    if not db.exists():
        click.echo("no events yet")
    else:
        with _local_db(state) as conn:
            n, first, last = conn.execute("SELECT count(*), min(ts), max(ts) FROM events").fetchone()
            click.echo(f"events: {n:,} from {timespec_label(first)} to {timespec_label(last)}")
            if team_url:
                from ect.metrics.forward import pending_count

                click.echo(f"team database: {pg.redact(team_url)}; {pending_count(conn, team_url):,} pending")
    if not team_url:
        click.echo(f"team mode: off (events stay on this machine; set {events.URL_ENV} to share)")
    return 0


@metrics.command("post-commit")
def post_commit() -> int:
    """Record the commit just made (run by the post-commit hook; never fails the commit)."""
    try:
        from ect.metrics.commits import record_commit

        root, cfg, _ = _setup()
        record_commit(root, cfg.state_path)
    except Exception as exc:  # a hook must not get in the way
        print(f"ect: warning: post-commit: {exc}", file=sys.stderr)
    return 0
