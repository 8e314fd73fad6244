"""Rollout plans: `[tool.ect.stages.<stage>.rollout]`, validated, and the command/query templates.

    [tool.ect.stages.production.rollout]
    deploy = "./deploy.sh {revision} {targets}"
    rollback = "./deploy.sh {previous} {targets}"
    targets = ["box-1", "box-2", "box-3", "box-4"]   # for percentage waves
    prometheus = "http://127.0.0.1:9090"
    poll_seconds = 10
    [[tool.ect.stages.production.rollout.waves]]
    name = "one-box"
    targets = ["box-1"]
    bake_seconds = 600
    [[tool.ect.stages.production.rollout.alarms]]
    name = "error-ratio"
    query = '''sum(rate(errors_total{version="{revision}"}[1m]))
             / sum(rate(requests_total{version="{revision}"}[1m]))'''
    above = 0.01

Templates know `{revision}`, `{short}`, `{previous}`, `{stage}`, `{wave}`, `{percent}`, `{targets}`
(this wave's targets) and `{deployed}` / `{deployed_regex}` (every target the new revision is on).
Commands are split like a shell would (no shell runs them); a word that is exactly `{targets}` or
`{deployed}` becomes one argument per target, elsewhere they are joined with commas.
"""

from __future__ import annotations

import math
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from ect.config import Config, check_table
from ect.errors import ConfigError

MAX_WAVES = 50
MAX_ALARMS = 50

PLAN_SCHEMA: dict[str, tuple[str, Any]] = {
    "deploy": ("str", ""),
    "rollback": ("str", ""),
    "targets": ("list[str]", []),
    "prometheus": ("str", ""),
    "poll_seconds": ("float", 10.0),
    "command_timeout_seconds": ("float", 300.0),
    "hold_timeout_seconds": ("float", 300.0),
    "heartbeat_seconds": ("float", 30.0),
    "waves": ("list[table]", []),
    "alarms": ("list[table]", []),
}
WAVE_SCHEMA: dict[str, tuple[str, Any]] = {
    "name": ("str", ""),
    "targets": ("list[str]", None),
    "percent": ("float", None),
    "bake_seconds": ("float", 0.0),
    "deploy": ("str", ""),
    "rollback": ("str", ""),
}
ALARM_SCHEMA: dict[str, tuple[str, Any]] = {
    "name": ("str", ""),
    "query": ("str", ""),
    "command": ("str", ""),
    "above": ("float", None),
    "below": ("float", None),
    "for_seconds": ("float", 0.0),
    "no_data": ("str", "hold"),
    "timeout_seconds": ("float", 10.0),
}
NO_DATA = ("hold", "ok", "alarm")


@dataclass(frozen=True)
class Wave:
    name: str
    targets: tuple[str, ...]
    percent: float | None
    bake_seconds: float
    deploy: str
    rollback: str


@dataclass(frozen=True)
class Alarm:
    name: str
    query: str = ""
    command: str = ""
    above: float | None = None
    below: float | None = None
    for_seconds: float = 0.0
    no_data: str = "hold"
    timeout_seconds: float = 10.0

    @property
    def kind(self) -> str:
        return "prometheus" if self.query else "command"


@dataclass(frozen=True)
class Plan:
    stage: str
    waves: tuple[Wave, ...]
    alarms: tuple[Alarm, ...] = ()
    prometheus: str = ""
    poll_seconds: float = 10.0
    command_timeout_seconds: float = 300.0
    hold_timeout_seconds: float = 300.0
    heartbeat_seconds: float = 30.0
    all_targets: tuple[str, ...] = field(default_factory=tuple)

    def deployed_targets(self, upto: int) -> list[str]:
        """Every target of waves 0..upto (the ones running the new revision)."""
        out: list[str] = []
        for wave in self.waves[: upto + 1]:
            out.extend(t for t in wave.targets if t not in out)
        return out


def _positive(where: str, name: str, value: float, allow_zero: bool = True) -> None:
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{where}: '{name}' must be a {'' if allow_zero else 'positive '}number >= 0")


def load_plan(cfg: Config, stage: str) -> Plan | None:
    """The rollout plan of `stage` (by name), or None when the stage has none."""
    stages = cfg.section("stages")
    raw = stages.get(stage) if isinstance(stages, dict) else None
    if not isinstance(raw, dict) or "rollout" not in raw:
        return None
    return parse_plan(stage, raw["rollout"], cfg.source if cfg.source != "defaults" else "config")


def parse_plan(stage: str, raw: Any, where: str = "config") -> Plan:
    prefix = f"stages.{stage}.rollout"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: '{prefix}' must be a table")
    values = check_table(prefix, raw, PLAN_SCHEMA, where)
    for key in ("poll_seconds", "command_timeout_seconds", "hold_timeout_seconds", "heartbeat_seconds"):
        _positive(where, f"{prefix}.{key}", float(values[key]), allow_zero=False)
    if not values["waves"]:
        raise ConfigError(f"{where}: '{prefix}' needs at least one [[{prefix}.waves]]")
    if len(values["waves"]) > MAX_WAVES or len(values["alarms"]) > MAX_ALARMS:
        raise ConfigError(f"{where}: '{prefix}' has too many waves or alarms (at most {MAX_WAVES} each)")
    all_targets = tuple(values["targets"])
    waves: list[Wave] = []
    last_percent = 0.0
    for i, table in enumerate(values["waves"]):
        w = check_table(f"{prefix}.waves[{i}]", table, WAVE_SCHEMA, where)
        name = w["name"] or f"wave-{i + 1}"
        if (w["targets"] is None) == (w["percent"] is None):
            raise ConfigError(f"{where}: wave '{name}' needs either 'targets' or 'percent'")
        _positive(where, f"{prefix}.waves[{i}].bake_seconds", float(w["bake_seconds"]))
        deploy = w["deploy"] or values["deploy"]
        rollback = w["rollback"] or values["rollback"]
        if not deploy or not rollback:
            raise ConfigError(f"{where}: wave '{name}' has no deploy or rollback command ('{prefix}.deploy')")
        targets: tuple[str, ...]
        percent = None
        if w["percent"] is not None:
            percent = float(w["percent"])
            if not 0 < percent <= 100 or percent <= last_percent:
                raise ConfigError(
                    f"{where}: wave '{name}': 'percent' must grow from wave to wave, within (0, 100]"
                )
            # `percent` of the plan's `targets` run the new revision after this wave: it adds those
            # that no earlier wave deployed
            done = {t for earlier in waves for t in earlier.targets}
            cumulative = all_targets[: math.ceil(len(all_targets) * percent / 100)]
            targets = tuple(t for t in cumulative if t not in done)
            last_percent = percent
            if all_targets and not targets:
                raise ConfigError(f"{where}: wave '{name}' adds no target ({percent:g}% of 'targets')")
            # without `targets`, the deploy command gets the share itself ({percent}: canary weights)
        else:
            targets = tuple(w["targets"])
            if not targets:
                raise ConfigError(f"{where}: wave '{name}' has an empty 'targets' list")
        waves.append(Wave(name, targets, percent, float(w["bake_seconds"]), deploy, rollback))
    if len({w.name for w in waves}) != len(waves):
        raise ConfigError(f"{where}: '{prefix}': two waves have the same name")
    alarms: list[Alarm] = []
    for i, table in enumerate(values["alarms"]):
        a = check_table(f"{prefix}.alarms[{i}]", table, ALARM_SCHEMA, where)
        name = a["name"] or f"alarm-{i + 1}"
        if bool(a["query"]) == bool(a["command"]):
            raise ConfigError(f"{where}: alarm '{name}' needs either 'query' (PromQL) or 'command'")
        if a["query"]:
            if (a["above"] is None) == (a["below"] is None):
                raise ConfigError(f"{where}: alarm '{name}' needs a threshold: 'above' or 'below'")
            if not values["prometheus"]:
                raise ConfigError(f"{where}: alarm '{name}' queries Prometheus: set '{prefix}.prometheus'")
        if a["no_data"] not in NO_DATA:
            raise ConfigError(f"{where}: alarm '{name}': 'no_data' must be one of {', '.join(NO_DATA)}")
        _positive(where, f"alarm '{name}' for_seconds", float(a["for_seconds"]))
        _positive(where, f"alarm '{name}' timeout_seconds", float(a["timeout_seconds"]), allow_zero=False)
        alarms.append(
            Alarm(
                name,
                a["query"],
                a["command"],
                None if a["above"] is None else float(a["above"]),
                None if a["below"] is None else float(a["below"]),
                float(a["for_seconds"]),
                a["no_data"],
                float(a["timeout_seconds"]),
            )
        )
    if values["prometheus"] and not re.match(r"https?://", values["prometheus"]):
        raise ConfigError(f"{where}: '{prefix}.prometheus' must be an http(s):// URL")
    for template in [*(w.deploy for w in waves), *(w.rollback for w in waves), *(a.command for a in alarms)]:
        if template:
            try:
                shlex.split(template)
            except ValueError as exc:
                raise ConfigError(f"{where}: '{prefix}': cannot parse command {template!r}: {exc}") from None
    return Plan(
        stage,
        tuple(waves),
        tuple(alarms),
        values["prometheus"].rstrip("/"),
        float(values["poll_seconds"]),
        float(values["command_timeout_seconds"]),
        float(values["hold_timeout_seconds"]),
        float(values["heartbeat_seconds"]),
        all_targets,
    )


LIST_NAMES = ("targets", "deployed")
_FIELD = re.compile(r"\{(revision|short|previous|stage|wave|percent|targets|deployed|deployed_regex)\}")


@dataclass(frozen=True)
class Context:
    """The values templates are filled with."""

    revision: str
    previous: str
    stage: str
    wave: str
    percent: str
    targets: tuple[str, ...]
    deployed: tuple[str, ...]

    def scalar(self, name: str) -> str:
        if name in LIST_NAMES:
            return ",".join(getattr(self, name))
        if name == "short":
            return self.revision[:12]
        if name == "deployed_regex":
            return "|".join(re.escape(t) for t in self.deployed)
        value: str = getattr(self, name)
        return value

    def env(self) -> dict[str, str]:
        names = ("revision", "previous", "stage", "wave", "percent", "targets", "deployed")
        return {f"ECT_ROLLOUT_{n.upper()}": self.scalar(n) for n in names}


def fill(text: str, ctx: Context, quote: bool = False) -> str:
    """`text` with its fields replaced (`quote`: escaped for a PromQL string literal)."""

    def one(m: re.Match[str]) -> str:
        value = ctx.scalar(m.group(1))
        return value.replace("\\", "\\\\").replace('"', '\\"') if quote else value

    return _FIELD.sub(one, text)


def argv(template: str, ctx: Context) -> list[str]:
    """A command template as an argument list."""
    out: list[str] = []
    for word in shlex.split(template):
        if word in ("{targets}", "{deployed}"):
            out.extend(getattr(ctx, word[1:-1]))
        else:
            out.append(fill(word, ctx))
    return out
