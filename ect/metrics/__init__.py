"""Productivity metrics: the team event store, forwarding, and the report.

- `ect.events` (the event log, SQLite WAL in `.ect/`) is where every part records events;
- `pg` / `forward`: team mode (`ECT_METRICS_URL=postgresql://...`): SQLite is the outbox, events are
  copied to PostgreSQL by a detached forwarder or `ect metrics sync`, idempotently by event uid;
- `commits`: the post-commit hook's record of each commit (hook bypass detection, A/B figures);
- `store` / `report` / `delivery` / `stats`: the report computed in SQL where the volume is;
- `formats` / `html_report`: table, JSON, CSV and a self-contained HTML file;
- `cli`: `ect report` and `ect metrics sync|prune|status|post-commit`.
"""
