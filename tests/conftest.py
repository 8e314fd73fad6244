"""Shared fixtures: real git repositories in temporary directories."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from ect_testutil import SAMPLE, git, write


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
