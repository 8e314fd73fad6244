"""`[tool.ect.review]` and `[tool.ect.stages]`: validated settings for the bot and the gates.

Stages are either a list of names (`stages = ["staging", "production"]`) or a table
of per-stage tables in promotion order, e.g.
    [tool.ect.stages.staging]
    [tool.ect.stages.production]
    bake_minutes = 60
    required_approvals = 1
The first stage's gate is code review; later stages need the previous stage to hold
the revision, plus their own bake time and approvals.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

from ect.config import check_table
from ect.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SEVERITIES = ("blocking", "advisory", "off")
DEFAULT_STAGES = ("staging", "production")

REVIEW_SCHEMA: dict[str, tuple[str, Any]] = {
    "required_approvals": ("int", 1),
    "codeowners": ("str", ""),
    "teams": ("dict[str,list[str]]", {}),
    "require_signed": ("bool", False),
    "trusted_checkers": ("list[str]", []),
    "reviewers": ("list[str]", []),
    "maintainers": ("list[str]", []),
    "users": ("dict[str,list[str]]", {}),
    "policy_approvals": ("int", 1),
    "allowed_signers": ("str", ""),
    "deprecated": ("dict[str,str]", {}),
    "forbidden": ("dict[str,str]", {}),
    "deprecated_severity": ("str", "advisory"),
    "forbidden_severity": ("str", "blocking"),
    "untested_module": ("str", "advisory"),
    "prfaq": ("str", "off"),
    "service_dirs": ("list[str]", []),
    "compile_severity": ("str", "blocking"),
    "max_inline": ("int", 30),
    "base": ("str", ""),
    "remote": ("str", "origin"),
    "run_tests": ("bool", True),
    "use_fixes": ("bool", True),
    "poll_seconds": ("float", 2.0),
}
STAGE_SCHEMA: dict[str, tuple[str, Any]] = {
    "branch": ("str", ""),
    "bake_minutes": ("float", 0.0),
    "required_approvals": ("int", 0),
    "rollout": ("table", {}),  # validated by ect.rollout.plan
}


@dataclass(frozen=True)
class Stage:
    name: str
    branch: str
    bake_minutes: float = 0.0
    required_approvals: int = 0


@dataclass(frozen=True)
class Settings:
    review: dict[str, Any]
    stages: tuple[Stage, ...] = field(default_factory=tuple)

    def stage(self, name: str) -> tuple[int, Stage]:
        for index, stage in enumerate(self.stages):
            if stage.name == name or stage.branch == name:
                return index, stage
        known = ", ".join(s.name for s in self.stages)
        raise ConfigError(f"unknown stage '{name}' (stages: {known})")

    def stage_for_branch(self, branch: str) -> tuple[int, Stage] | None:
        for index, stage in enumerate(self.stages):
            if stage.branch == branch:
                return index, stage
        return None


def parse(sections: dict[str, Any], where: str = "config") -> Settings:
    """Validate the raw `review` and `stages` sections."""
    raw_review = sections.get("review", {})
    if not isinstance(raw_review, dict):
        raise ConfigError(f"{where}: 'review' must be a table")
    review = check_table("review", raw_review, REVIEW_SCHEMA, where)
    for key in ("deprecated_severity", "forbidden_severity", "untested_module", "prfaq", "compile_severity"):
        if review[key] not in SEVERITIES:
            raise ConfigError(
                f"{where}: 'review.{key}' must be one of {', '.join(SEVERITIES)}, got {review[key]!r}"
            )
    for key in ("required_approvals", "max_inline", "policy_approvals"):
        if review[key] < 0:
            raise ConfigError(f"{where}: 'review.{key}' must be >= 0")
    return Settings(review=review, stages=_stages(sections.get("stages"), where))


def _stages(raw: Any, where: str) -> tuple[Stage, ...]:
    if raw is None:
        return tuple(Stage(name, name) for name in DEFAULT_STAGES)
    if isinstance(raw, list):
        if not raw or not all(isinstance(n, str) and n for n in raw):
            raise ConfigError(
                f"{where}: 'stages' must be a non-empty list of branch names or a table of stages"
            )
        names = list(raw)
        tables: dict[str, Any] = {}
    elif isinstance(raw, dict):
        names = list(raw)
        tables = raw
        if not names:
            raise ConfigError(f"{where}: 'stages' has no stage")
    else:
        raise ConfigError(f"{where}: 'stages' must be a list of branch names or a table of stages")
    out = []
    for name in names:
        table = tables.get(name, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: 'stages.{name}' must be a table")
        values = check_table(f"stages.{name}", table, STAGE_SCHEMA, where)
        if values["bake_minutes"] < 0 or values["required_approvals"] < 0:
            raise ConfigError(f"{where}: 'stages.{name}' values must be >= 0")
        out.append(
            Stage(name, values["branch"] or name, float(values["bake_minutes"]), values["required_approvals"])
        )
    if len({s.branch for s in out}) != len(out):
        raise ConfigError(f"{where}: two stages use the same branch")
    return tuple(out)


def sections_from_toml(pyproject: bytes | None, ect_toml: bytes | None) -> tuple[dict[str, Any], str]:
    """The `review`/`stages` sections from file contents (used where there is no work tree)."""
    try:
        if ect_toml is not None:
            raw = tomllib.loads(ect_toml.decode("utf-8"))
            table = raw.get("tool", {}).get("ect", raw) if "tool" in raw else raw
            where = "ect.toml"
        elif pyproject is not None:
            raw = tomllib.loads(pyproject.decode("utf-8"))
            tool = raw.get("tool", {})
            table = tool.get("ect", {}) if isinstance(tool, dict) else {}
            where = "pyproject.toml [tool.ect]"
        else:
            return {}, "config"
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"invalid configuration file: {exc}") from None
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: [tool.ect] must be a table")
    return {k: table[k] for k in ("review", "stages") if k in table}, where
