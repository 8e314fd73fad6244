"""Read access to an event store for the report: the local SQLite log or the team PostgreSQL.

Queries are written once with `?` placeholders and portable SQL (CASE, floor, coalesce);
the store adapts placeholders and computes percentiles its own way. The report's loop latency
percentiles (overall, per week or day) are exact: PostgreSQL sorts in the server, the local store
selects across sorted values kept per day (`ect.metrics.latency`). `SqliteStore.quantiles` and
per-author or per-repo p50s are exact up to `EXACT_LIMIT` rows and sampled above (every k-th row
id), with the rank error stated by the report.
"""

from __future__ import annotations

import contextlib
import math
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from ect import events
from ect.metrics import stats

EXACT_LIMIT = 50_000


class Store:
    """Base: `table`, `kind` ("sqlite" or "postgresql"), `rows`, `quantiles`."""

    table = "events"
    kind = "sqlite"
    where_label = ""
    data_text = "data"  # the `data` column as JSON text
    errors: tuple[type[Exception], ...] = (sqlite3.DatabaseError,)  # what a failed query raises
    # A commit's figures (`ect.events.COMMIT_NUMBERS`, first_run_outcome, parent, change_key): columns
    # filled on insert locally; the team database computes them from `data` in the query.
    commit_cols: ClassVar[dict[str, str]] = {
        c: c for c in (*events.COMMIT_NUMBERS, "first_run_outcome", "parent", "change_key")
    }

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def index(self, name: str) -> str:
        """A hint to read through this (partial) index of the local store; nothing for the team one."""
        return f" INDEXED BY {name}" if self.kind == "sqlite" else ""

    def quantiles(
        self,
        columns: Sequence[str],
        where: str,
        params: Sequence[Any],
        qs: Sequence[float],
        group: str | None = None,
        n: int | None = None,
    ) -> dict[Any, dict[str, list[float | None]]]:
        """{group value (None without group): {column: [quantile per q]}} over non-null values;
        `n`, when known, is how many rows `where` matches."""
        raise NotImplementedError

    def group_quantile(
        self,
        column: str,
        where: str,
        params: Sequence[Any],
        q: float,
        group: str,
        counts: dict[Any, int],
    ) -> dict[Any, tuple[float | None, int]]:
        """{group value: (q-quantile of `column`, sampling stride: 1 = exact)}; `counts`: rows per group.

        Exact up to `EXACT_LIMIT` rows per group, sampled only above that (own stride). Time ranges
        (weeks, days) of the local store are exact whatever their size: `ect.metrics.latency`.
        """
        raise NotImplementedError

    def close(self) -> None:
        pass


class SqliteStore(Store):
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.where_label = str(state_dir / events.DB_NAME)
        self._cm = events.opened(state_dir)
        self.conn = self._cm.__enter__()
        self.conn.execute("BEGIN")  # every query of one report reads the same snapshot

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.conn.execute(sql.replace("{t}", self.table), tuple(params)).fetchall()

    def quantiles(
        self,
        columns: Sequence[str],
        where: str,
        params: Sequence[Any],
        qs: Sequence[float],
        group: str | None = None,
        n: int | None = None,
    ) -> dict[Any, dict[str, list[float | None]]]:
        """Exact up to `EXACT_LIMIT` rows; above, exact over a systematic sample of at least that many
        (every k-th row id: the test runs on the index alone, so skipped rows are never read)."""
        g = group or "NULL"
        if n is None:
            n = self.rows(f"SELECT count(*) FROM {{t}} WHERE {where}", params)[0][0]
        stride = max(1, math.ceil(n / EXACT_LIMIT))
        sample = f" AND id % {stride} = 0" if stride > 1 else ""
        per: dict[Any, list[tuple[Any, ...]]] = {}
        for row in self.rows(f"SELECT {g}, {', '.join(columns)} FROM {{t}} WHERE {where}{sample}", params):
            per.setdefault(row[0], []).append(row)
        out: dict[Any, dict[str, list[float | None]]] = {}
        for key, rows in per.items():
            cols = list(zip(*rows, strict=True))[1:]
            out[key] = {
                c: stats.quantiles([v for v in values if v is not None], qs)
                for c, values in zip(columns, cols, strict=True)
            }
        return out

    def group_quantile(
        self,
        column: str,
        where: str,
        params: Sequence[Any],
        q: float,
        group: str,
        counts: dict[Any, int],
    ) -> dict[Any, tuple[float | None, int]]:
        strides = {k: math.ceil(n / EXACT_LIMIT) for k, n in counts.items() if n > EXACT_LIMIT}
        sample, args = "", list(params)
        if strides:
            whens = " ".join("WHEN ? THEN ?" for _ in strides)
            sample = f" AND id % (CASE {group} {whens} ELSE 1 END) = 0"
            for key, stride in strides.items():
                args += [key, stride]
        per: dict[Any, list[float]] = {}
        for key, value in self.rows(f"SELECT {group}, {column} FROM {{t}} WHERE {where}{sample}", args):
            if value is not None:
                per.setdefault(key, []).append(value)
        return {k: (stats.quantiles(v, [q])[0], strides.get(k, 1)) for k, v in per.items()}

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.conn.execute("COMMIT")
        self._cm.__exit__(None, None, None)


class PostgresStore(Store):
    kind = "postgresql"
    data_text = "data::text"  # parsing JSON text client-side beats decoding jsonb rows
    commit_cols: ClassVar[dict[str, str]] = {
        **{
            c: f"CASE WHEN jsonb_typeof(data->'{c}') = 'number' THEN (data->>'{c}')::float8 END"
            for c in events.COMMIT_NUMBERS
        },
        "first_run_outcome": "CASE WHEN jsonb_typeof(data->'first_run_outcome') = 'string'"
        " THEN data->>'first_run_outcome' END",
        "parent": "CASE WHEN jsonb_typeof(data->'parents'->0) = 'string' THEN data->'parents'->>0 END",
        "change_key": "CASE "
        + " ".join(
            f"WHEN (jsonb_typeof(data->'{f}') = 'string' AND data->>'{f}' <> '') OR"
            f" (jsonb_typeof(data->'{f}') = 'number' AND data->>'{f}' ~ '^-{{0,1}}[0-9]+$'"
            f" AND data->>'{f}' <> '0')"
            f" THEN '{f}:' || coalesce(repo, '') || ':' || (data->>'{f}')"
            for f in events.CHANGE_FIELDS
        )
        + " ELSE nullif(commit_sha, '') END",
    }

    def __init__(self, url: str) -> None:
        from ect.metrics import pg

        self.conn = pg.connect(url)  # a missing psycopg is a one-line error here
        import psycopg

        self.errors = (psycopg.Error,)
        self.table = pg.TABLE
        self.where_label = pg.redact(url)

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        text = sql.replace("%", "%%").replace("?", "%s").replace("{t}", self.table)
        return list(self.conn.execute(text, tuple(params)).fetchall())

    def quantiles(
        self,
        columns: Sequence[str],
        where: str,
        params: Sequence[Any],
        qs: Sequence[float],
        group: str | None = None,
        n: int | None = None,
    ) -> dict[Any, dict[str, list[float | None]]]:
        """Exact (`percentile_cont` in the server), whatever the number of rows, as the local report."""
        g = group or "NULL"
        arr = "ARRAY[" + ", ".join(str(float(q)) for q in qs) + "]::float8[]"
        aggs = ", ".join(f"percentile_cont({arr}) WITHIN GROUP (ORDER BY {c})" for c in columns)
        out: dict[Any, dict[str, list[float | None]]] = {}
        for row in self.rows(f"SELECT {g}, {aggs} FROM {{t}} WHERE {where} GROUP BY 1", params):
            out[row[0]] = {
                c: list(v) if v is not None else [None for _ in qs]
                for c, v in zip(columns, row[1:], strict=True)
            }
        return out

    def group_quantile(
        self,
        column: str,
        where: str,
        params: Sequence[Any],
        q: float,
        group: str,
        counts: dict[Any, int],
    ) -> dict[Any, tuple[float | None, int]]:
        """Exact for every group (`percentile_cont` runs in the server)."""
        sql = (
            f"SELECT {group}, percentile_cont({float(q)}) WITHIN GROUP (ORDER BY {column})"
            f" FROM {{t}} WHERE {where} GROUP BY 1"
        )
        return {row[0]: (row[1], 1) for row in self.rows(sql, params)}

    def close(self) -> None:
        self.conn.close()
