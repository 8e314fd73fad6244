"""`[tool.ect.fix]`: moved/deprecated internal APIs and verification limits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ect.config import Config, check_table

SCHEMA: dict[str, tuple[str, Any]] = {
    "moved": ("dict[str,str]", {}),  # old dotted path -> new dotted path (the old one no longer works)
    "deprecated": ("dict[str,str]", {}),  # deprecated dotted path -> replacement (the old one still works)
    "max_candidates": ("int", 8),  # candidates verified per failure
    "max_shown": ("int", 3),  # verified fixes offered per failure
    "test_timeout_s": ("float", 60.0),  # one verification test run
    "model": ("bool", True),  # ask the code model for candidates when one is trained
    "verify_tests": ("int", 60),  # quick check: failing tests run first (spread over the failing files)
    "verify_files": ("int", 4),  # quick check for a compile error: test files named after the module
    # (a candidate that passes the quick check must then pass every failing / selected test)
}


@dataclass(frozen=True)
class FixSettings:
    moved: dict[str, str] = field(default_factory=dict)
    deprecated: dict[str, str] = field(default_factory=dict)
    max_candidates: int = 8
    max_shown: int = 3
    test_timeout_s: float = 60.0
    model: bool = True
    verify_tests: int = 60
    verify_files: int = 4

    @property
    def renames(self) -> dict[str, str]:
        """Every old path with its replacement (moved and deprecated)."""
        return {**self.deprecated, **self.moved}


def load_settings(cfg: Config) -> FixSettings:
    """Validated fix settings (unknown key or wrong type: ConfigError)."""
    values = check_table(
        "fix", cfg.section("fix"), SCHEMA, cfg.source if cfg.source != "defaults" else "config"
    )
    for key in ("max_candidates", "max_shown", "verify_tests", "verify_files"):
        if values[key] < 1:
            from ect.errors import ConfigError

            raise ConfigError(f"config: 'fix.{key}' must be at least 1, got {values[key]}")
    return FixSettings(**values)
