"""Errors that end a command with a one-line message instead of a traceback."""

from __future__ import annotations

from typing import Any


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


class EnvError(EctError):
    """The environment cannot run the step (pytest missing, a bad pytest flag): exit 2, not a test failure.

    `run` is the pytest run that showed it, when there was one (`ect verify` scores it as an error)."""

    run: Any = None


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP ended ect: raised like Ctrl-C so every `finally` cleans up."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def exit_on_signals() -> None:
    """Turn SIGTERM and SIGHUP into `Terminated` in the main thread (children are ended in `finally`)."""
    import signal

    def handler(signum: int, frame: object) -> None:
        raise Terminated(signum)

    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is not None:
            try:
                signal.signal(sig, handler)
            except (ValueError, OSError):  # not the main thread
                return


class StateDirError(EctError, OSError):
    """ect's state directory is unusable (a file, cannot be created): one line for the user, and an
    OSError for best-effort state writers, which carry on without state."""
