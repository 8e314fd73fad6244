"""`[tool.ect.model]` settings, validated strictly (no torch here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ect.config import Config, check_table
from ect.errors import ConfigError

MAX_WINDOW = 1000  # prompt + generated tokens: the default base's positions (1024), a few left for sentinels

SCHEMA: dict[str, tuple[str, Any]] = {
    "internal": ("list[str]", []),
    "base": ("str", ""),
    "lora": ("bool", False),
    "max_minutes": ("float", 15.0),
    "max_epochs": ("float", 4.0),
    "lr": ("float", 0.0),
    "held_out_percent": ("int", 10),
    "exclude": ("list[str]", []),
    "ctx_tokens": ("int", 64),
    "prefix_tokens": ("int", 128),
    "suffix_tokens": ("int", 32),
    "max_new_tokens": ("int", 24),
    "min_token_prob": ("float", 0.7),
    "rehearsal": ("float", 0.0),
    "fine_tune_weight": ("float", 0.7),
    "recipe": ("str", "calls"),
    "call_sites_per_api": ("int", 8),
    "team_dir": ("str", ""),
    "team_max_behind": ("int", 200),
    "train_after_commit": ("bool", False),
    "train_after_commit_args": ("list[str]", []),
}


@dataclass
class ModelSettings:
    internal: list[str] = field(default_factory=list)
    base: str = ""
    lora: bool = False
    max_minutes: float = 15.0
    max_epochs: float = 4.0
    lr: float = 0.0
    held_out_percent: int = 10
    exclude: list[str] = field(default_factory=list)
    ctx_tokens: int = 64
    prefix_tokens: int = 128
    suffix_tokens: int = 32
    max_new_tokens: int = 24
    min_token_prob: float = 0.7  # a suggestion stops before a token the model gives less than this
    rehearsal: float = 0.0  # general Python (stdlib) mixed into fine-tuning, as a fraction of the repo's
    fine_tune_weight: float = 0.7  # saved weights: base + this x (fine-tuned - base), WiSE-FT
    recipe: str = "calls"  # 'calls': short spans on internal-API calls + line spans; 'mixed': causal + FIM
    call_sites_per_api: int = 8  # 'calls': at most this many call sites of each internal callable per epoch
    team_dir: str = ""  # where team models are published (a shared directory; relative to the repo)
    team_max_behind: int = 200  # a team model more commits behind HEAD than this is too old to use
    train_after_commit: bool = False  # the post-commit hook starts `ect model train --background`
    train_after_commit_args: list[str] = field(default_factory=list)  # more options for that trainer
    # not a config key: k-fold evaluation (scripts/bench_model.py --folds) holds out fold i of k
    held_out_fold: tuple[int, int] | None = None


def model_settings(cfg: Config) -> ModelSettings:
    """The validated `[tool.ect.model]` table of `cfg` (one-line ConfigError when invalid)."""
    values = check_table(
        "model", cfg.section("model"), SCHEMA, cfg.source if cfg.source != "defaults" else "config"
    )
    values["max_minutes"] = float(values["max_minutes"])
    values["max_epochs"] = float(values["max_epochs"])
    values["lr"] = float(values["lr"])
    values["min_token_prob"] = float(values["min_token_prob"])
    values["rehearsal"] = float(values["rehearsal"])
    values["fine_tune_weight"] = float(values["fine_tune_weight"])
    window = sum(values[k] for k in ("ctx_tokens", "prefix_tokens", "suffix_tokens", "max_new_tokens"))
    if window > MAX_WINDOW or min(values[k] for k in ("prefix_tokens", "max_new_tokens")) < 1:
        raise ConfigError(
            f"{cfg.source}: [tool.ect.model] ctx_tokens + prefix_tokens + suffix_tokens + max_new_tokens "
            f"must be at most {MAX_WINDOW} (is {window}), prefix_tokens and max_new_tokens at least 1"
        )
    if values["rehearsal"] < 0:
        raise ConfigError(f"{cfg.source}: [tool.ect.model] rehearsal must be >= 0")
    if not 0.0 < values["fine_tune_weight"] <= 1.0:
        raise ConfigError(f"{cfg.source}: [tool.ect.model] fine_tune_weight must be in (0, 1]")
    if values["recipe"] not in ("mixed", "calls"):
        raise ConfigError(f"{cfg.source}: [tool.ect.model] recipe must be 'mixed' or 'calls'")
    if values["call_sites_per_api"] < 1:
        raise ConfigError(f"{cfg.source}: [tool.ect.model] call_sites_per_api must be >= 1")
    if values["team_max_behind"] < 0:
        raise ConfigError(f"{cfg.source}: [tool.ect.model] team_max_behind must be >= 0")
    if not 0.0 <= values["min_token_prob"] < 1.0:
        raise ConfigError(f"{cfg.source}: [tool.ect.model] min_token_prob must be in [0, 1)")
    return ModelSettings(**values)


def model_dir(cfg: Config) -> Path:
    """Where `ect model train` saves the fine-tuned model."""
    return cfg.state_path / "model"
