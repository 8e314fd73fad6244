"""Running deploy, rollback and probe commands: a timeout, their own process group, output kept."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

TAIL_CHARS = 2000


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int | None  # None: it did not finish (timeout) or could not start
    seconds: float
    log: str
    tail: str
    timed_out: bool = False
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def summary(self) -> str:
        if self.error:
            return self.error
        if self.timed_out:
            return f"timed out after {self.seconds:.1f}s"
        return f"exit {self.returncode} in {self.seconds:.1f}s"

    def as_dict(self) -> dict[str, object]:
        return {
            "argv": list(self.argv),
            "rc": self.returncode,
            "seconds": round(self.seconds, 3),
            "timed_out": self.timed_out,
            "error": self.error,
            "log": self.log,
            "tail": self.tail,
        }


def _tail(path: Path) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - TAIL_CHARS))
            return fh.read().decode("utf-8", "replace")[-TAIL_CHARS:]
    except OSError:
        return ""


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """TERM the command's process group, KILL it if it lingers."""
    for sig, wait in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 2.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run(
    argv: list[str], cwd: Path, log: Path, timeout: float, env: dict[str, str] | None = None
) -> CommandResult:
    """Run `argv` with stdout and stderr going to `log`; killed (with its children) at `timeout`
    or when ect itself is interrupted."""
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with log.open("wb") as out:
        out.write(f"$ {' '.join(argv)}\n".encode())
        out.flush()
        try:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                start_new_session=True,
            )
        except OSError as exc:
            return CommandResult(
                tuple(argv), None, 0.0, str(log), "", error=f"cannot run {argv[0]}: {exc.strerror}"
            )
        try:
            rc: int | None = proc.wait(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            rc, timed_out = None, True
        except BaseException:
            _kill_group(proc)
            raise
    return CommandResult(tuple(argv), rc, time.monotonic() - started, str(log), _tail(log), timed_out)
