"""Errors that end a command with a one-line message instead of a traceback."""

from __future__ import annotations


class EctError(Exception):
    """A user-facing error: printed as one line, exits with `exit_code`."""

    exit_code = 2

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class ConfigError(EctError):
    """Broken or invalid `[tool.ect]` configuration."""


class NotARepoError(EctError):
    """The working directory is not inside a git repository."""
