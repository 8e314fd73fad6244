"""DORA four keys and review turnaround from the (low-volume) promotion, rollback and review events.

Pure functions over event dicts, so they are checked against hand-computed fixtures.

DORA tiers: the cluster values of the 2023 Accelerate State of DevOps Report made contiguous:
deployment frequency elite >= 1/day (on demand), high >= 1/week, medium >= 1/month;
lead time elite < 1 day, high < 1 week, medium < 1 month; change failure rate elite <= 5%,
high <= 10%, medium <= 15%; time to restore elite < 1 hour, high < 1 day, medium < 1 week;
anything worse is low.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ect.metrics.stats import quantiles

HOUR, DAY, WEEK, MONTH = 3600.0, 86400.0, 7 * 86400.0, 30 * 86400.0
TIERS = ("elite", "high", "medium", "low")


def tier_frequency(per_day: float) -> str:
    return (
        "elite" if per_day >= 1 else "high" if per_day >= 1 / 7 else "medium" if per_day >= 1 / 30 else "low"
    )


def tier_lead_time(seconds: float) -> str:
    return "elite" if seconds < DAY else "high" if seconds < WEEK else "medium" if seconds < MONTH else "low"


def tier_failure_rate(rate: float) -> str:
    return "elite" if rate <= 0.05 else "high" if rate <= 0.10 else "medium" if rate <= 0.15 else "low"


def tier_restore(seconds: float) -> str:
    return "elite" if seconds < HOUR else "high" if seconds < DAY else "medium" if seconds < WEEK else "low"


CHANGE_FIELDS = ("change", "review", "branch")  # what names a change, most specific first


def change_key(event: dict[str, Any]) -> str | None:
    """What ties review and promotion events of one change: `change` / `review` / `branch` (with the
    repository), else the commit."""
    for name in CHANGE_FIELDS:
        value = event.get(name)
        if value:
            return f"{name}:{event.get('repo') or ''}:{value}"
    sha = event.get("commit_sha")
    return str(sha) if sha else None


def _rollout_failures(evs: list[dict[str, Any]], production: str) -> list[dict[str, Any]]:
    """`rollout.rollback` events (fields stage, revision, wave, at) as rollbacks of their revision; the
    first `rollout.alarm` of the same revision and stage, when there is one, is when it failed."""
    alarms: dict[tuple[Any, Any], float] = {}
    out = []
    for e in evs:
        if e["kind"] not in ("rollout.alarm", "rollout.rollback"):
            continue
        if e.get("stage") not in (None, production):
            continue
        at = e.get("at")
        when = float(at) if isinstance(at, (int, float)) and not isinstance(at, bool) else e["ts"]
        key = (e.get("revision") or e.get("commit_sha"), e.get("stage"))
        if e["kind"] == "rollout.alarm":
            alarms.setdefault(key, when)
            continue
        rollback = {**e, "ts": e["ts"], "commit_sha": key[0], "restored_ts": when}
        if key in alarms:
            rollback["failed_ts"] = alarms[key]
        out.append(rollback)
    return out


def dora(
    evs: Iterable[dict[str, Any]],
    start: float,
    end: float,
    production: str,
    observed_from: float | None = None,
    commit_ts: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """The four keys over deployments (promotion.done to `production`) in [start, end).

    - lead time: per commit first reaching production: deploy ts - `first_commit_ts` (the first
      commit of the change, which survives squash merges); else the earliest `git.commit` event of
      that sha; deployments with neither are counted as unknown.
    - a deployment failed when a `rollback` names its commit (the latest deploy of that sha before
      the rollback); time to restore = rollback ts (or its `restored_ts`) - failed deploy ts (or the
      rollback's `failed_ts`). A `rollout.rollback` of a revision counts the same way, restored at
      its `at`, failed at the first `rollout.alarm` of that revision (else at the deploy).
    - deployment frequency is over the span observed: from the later of `start` and the first event
      held (`observed_from`) to `end`, at least one day.

    `commit_ts`: the first `git.commit` time of commits not among `evs` (the report reads only those
    it needs, by sha, rather than every commit event).
    """
    evs = sorted(evs, key=lambda e: e["ts"])
    first_ts: dict[str, float] = dict(commit_ts or {})
    for e in evs:
        sha = e.get("commit_sha")
        if e["kind"] == "git.commit" and sha and (sha not in first_ts or e["ts"] < first_ts[sha]):
            first_ts[sha] = e["ts"]
    deploys = [e for e in evs if e["kind"] == "promotion.done" and e.get("stage") == production]
    seen_sha: set[str] = set()
    lead_times: list[float] = []
    unknown_lead = 0
    in_window: list[dict[str, Any]] = []
    for d in deploys:
        sha = d.get("commit_sha")
        first_time = sha not in seen_sha
        if sha:
            seen_sha.add(sha)
        if not start <= d["ts"] < end:
            continue
        in_window.append(d)
        if not first_time:
            continue  # a re-deploy (e.g. after a rollback) is not a new change
        first = d.get("first_commit_ts")
        if not isinstance(first, (int, float)):
            first = first_ts.get(sha or "")
        if first is None:
            unknown_lead += 1
        else:
            lead_times.append(max(0.0, d["ts"] - float(first)))
    failed: set[int] = set()
    restores: list[float] = []
    rollbacks = [e for e in evs if e["kind"] == "rollback"] + _rollout_failures(evs, production)
    for r in (e for e in rollbacks if start <= e["ts"] < end + WEEK):
        sha = r.get("commit_sha") or r.get("rolled_back_sha")
        prior = [i for i, d in enumerate(in_window) if d.get("commit_sha") == sha and d["ts"] <= r["ts"]]
        if not prior or prior[-1] in failed:
            continue
        failed.add(prior[-1])
        began, ended = r.get("failed_ts"), r.get("restored_ts")
        if not isinstance(began, (int, float)):
            began = in_window[prior[-1]]["ts"]
        if not isinstance(ended, (int, float)):
            ended = r["ts"]
        restores.append(max(0.0, float(ended) - float(began)))
    span_start = max(start, observed_from) if observed_from is not None else start
    days = max((end - span_start) / DAY, 1.0)
    n = len(in_window)
    per_day = n / days
    lead_p50 = quantiles(lead_times, [0.5])[0]
    restore_p50 = quantiles(restores, [0.5])[0]
    cfr = len(failed) / n if n else None
    return {
        "production_stage": production,
        "deployments": n,
        "deployment_frequency": {
            "per_day": per_day,
            "per_week": per_day * 7,
            "over_days": round(days, 2),
            "tier": tier_frequency(per_day) if n else None,
        },
        "lead_time": {
            "n": len(lead_times),
            "unknown": unknown_lead,
            "p50_s": lead_p50,
            "p75_s": quantiles(lead_times, [0.75])[0],
            "tier": tier_lead_time(lead_p50) if lead_p50 is not None else None,
        },
        "change_failure_rate": {
            "failed": len(failed),
            "rate": cfr,
            "tier": tier_failure_rate(cfr) if cfr is not None else None,
        },
        "time_to_restore": {
            "n": len(restores),
            "p50_s": restore_p50,
            "tier": tier_restore(restore_p50) if restore_p50 is not None else None,
        },
    }


BOT_NAMES = ("ect-bot",)


def _is_bot(e: dict[str, Any]) -> bool:
    """A bot's event: `bot: true`, source or `by` "bot", the review bot's name, or a "[bot]" account."""
    author = str(e.get("author") or e.get("by") or "")
    return (
        bool(e.get("bot"))
        or e.get("source") == "bot"
        or e.get("by") == "bot"
        or author in BOT_NAMES
        or author.endswith("[bot]")
    )


def review(
    evs: Iterable[dict[str, Any]], start: float, end: float, parents: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Turnaround per change whose first `review.requested` is in [start, end) (p50/p75, seconds).

    Events are tied to the change, not to the commit they name: by `change`/`review`/`branch` when
    given; else a later commit is followed back through the `parents` that `git.commit` events
    recorded to the commit the review was requested at; else events of one change share its
    `first_commit_ts`. First bot response: the bot's first comment or finished check
    (`review.checked`, also when it found nothing); first human action: the first comment, approval
    or rejection not from the bot; approval: the first `review.approved`.

    `parents`: commit -> first parent for commits not among `evs` (the report reads these as columns).
    """
    evs = sorted(evs, key=lambda e: e["ts"])
    parent: dict[str, str] = dict(parents or {})
    for e in evs:
        parents = e.get("parents")
        if e["kind"] == "git.commit" and e.get("commit_sha") and isinstance(parents, list) and parents:
            parent.setdefault(str(e["commit_sha"]), str(parents[0]))
    requested: dict[str, float] = {}
    by_sha: dict[str, str] = {}  # commit the review was requested at -> change
    by_first: dict[tuple[Any, Any], str] = {}  # (repo, first_commit_ts) -> change
    bot: dict[str, float] = {}
    human: dict[str, float] = {}
    approved: dict[str, float] = {}

    def change_of(e: dict[str, Any]) -> str | None:
        key = change_key(e)
        if key is None or key in requested:
            return key
        sha = e.get("commit_sha")
        for _ in range(200):  # bounded walk back through the recorded history
            if not sha:
                break
            if sha in by_sha:
                return by_sha[sha]
            sha = parent.get(str(sha))
        first = e.get("first_commit_ts")
        if first is not None and (e.get("repo"), first) in by_first:
            return by_first[(e.get("repo"), first)]
        return key

    for e in evs:
        kind = e["kind"]
        if not kind.startswith("review."):
            continue
        if kind == "review.requested":
            key = change_of(e)
            if key is None:
                continue
            requested.setdefault(key, e["ts"])
            if e.get("commit_sha"):
                by_sha.setdefault(str(e["commit_sha"]), key)
            if e.get("first_commit_ts") is not None:
                by_first.setdefault((e.get("repo"), e["first_commit_ts"]), key)
            continue
        key = change_of(e)
        if key is None or key not in requested or e["ts"] < requested[key]:
            continue
        if kind in ("review.comment", "review.checked") and (_is_bot(e) or kind == "review.checked"):
            bot.setdefault(key, e["ts"])
        elif kind in ("review.comment", "review.approved", "review.rejected") and not _is_bot(e):
            human.setdefault(key, e["ts"])
        if kind == "review.approved":
            approved.setdefault(key, e["ts"])
    keys = [k for k, t in requested.items() if start <= t < end]

    def turnaround(done: dict[str, float]) -> dict[str, Any]:
        spans = [done[k] - requested[k] for k in keys if k in done]
        p50, p75 = quantiles(spans, [0.5, 0.75])
        return {"n": len(spans), "pending": len(keys) - len(spans), "p50_s": p50, "p75_s": p75}

    return {
        "requests": len(keys),
        "first_bot_comment": turnaround(bot),
        "first_human_action": turnaround(human),
        "approval": turnaround(approved),
        "approval_s_by_change": {k: approved[k] - requested[k] for k in keys if k in approved},
    }
