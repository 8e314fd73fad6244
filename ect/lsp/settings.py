"""`[tool.ect.lsp]`: what the language server does."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ect.config import Config, check_table

SCHEMA: dict[str, tuple[str, Any]] = {
    "model": ("bool", True),  # model completions when a model is trained
    "diagnostics": ("bool", True),  # run the loop on save and publish its failures
    "fixes": ("bool", True),  # verify fixes for the failures (code actions)
}


@dataclass(frozen=True)
class LspSettings:
    model: bool = True
    diagnostics: bool = True
    fixes: bool = True


def load_settings(cfg: Config) -> LspSettings:
    """Validated `[tool.ect.lsp]` (unknown key or wrong type: ConfigError)."""
    where = cfg.source if cfg.source != "defaults" else "config"
    return LspSettings(**check_table("lsp", cfg.section("lsp"), SCHEMA, where))
