"""Shared fixtures: real git repositories in temporary directories."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from ect_testutil import SAMPLE, git, write

# The ect processes the tests start must get SIGINT as from a terminal. A suite launched in the background
# by a non-interactive shell (`cmd &`, nohup) inherits SIGINT ignored, and an ignored signal stays ignored
# across exec, so Ctrl-C tests would wait forever; any handler here is reset to the default in children.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def make_repo(tmp_path: Path) -> Callable[..., Path]:
    """Create a committed git repository from a {path: text} mapping (default: the acme sample)."""

    def make(files: dict[str, str] | None = None, name: str = "repo") -> Path:
        repo = tmp_path / name
        repo.mkdir()
        git(repo, "init", "-q", "-b", "main")
        write(repo, SAMPLE if files is None else files)
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "initial")
        return repo

    return make


@pytest.fixture
def ran_log(tmp_path: Path) -> Iterator[Callable[[], list[str]]]:
    """A log file the sample tests append to; call the fixture's value to read and reset it."""
    log = tmp_path / "ran.log"
    log.write_text("")
    os.environ["RAN_LOG"] = str(log)

    def read() -> list[str]:
        names = sorted(set(log.read_text().split()))
        log.write_text("")
        return names

    yield read
    os.environ.pop("RAN_LOG", None)
