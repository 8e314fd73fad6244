"""Which Python and which pytest plugins the user's tests run with.

ect's own environment is not the project's: there pytest's plugin autoloading is off and only
ect's plugins (and those the project lists) are loaded; a project interpreter (a `.venv/` in
the repository, or `python` in the config) runs the tests with its own plugins.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from ect_testutil import git, run_ect

PROBE = """
import os, sys

def test_probe(pytestconfig):
    pm = pytestconfig.pluginmanager
    with open(os.environ["PROBE_OUT"], "w") as fh:
        fh.write(" ".join(sorted(n for n in ("asyncio", "anyio.pytest_plugin", "ect.pytest_plugin")
                                 if pm.has_plugin(n))))
"""


def _repo(tmp_path: Path, config: str = "") -> Path:
    repo = tmp_path / "repo"
    (repo / "tests").mkdir(parents=True)
    (repo / "tests" / "test_probe.py").write_text(PROBE)
    if config:
        (repo / "ect.toml").write_text(config)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "init")
    return repo


def _plugins(repo: Path, tmp_path: Path) -> list[str]:
    out = tmp_path / "probe.txt"
    proc = run_ect(repo, "check", "--all", env={"PROBE_OUT": str(out), "VIRTUAL_ENV": ""})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out.read_text().split()


def test_ects_environment_does_not_leak_its_plugins(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    assert _plugins(repo, tmp_path) == ["ect.pytest_plugin"]


@pytest.mark.slow
def test_plugins_the_project_lists_are_loaded(tmp_path: Path) -> None:
    repo = _repo(tmp_path, 'pytest_plugins = ["anyio.pytest_plugin"]\n')
    assert _plugins(repo, tmp_path) == ["anyio.pytest_plugin", "ect.pytest_plugin"]


@pytest.mark.slow
def test_the_configured_project_python_runs_the_tests_with_its_plugins(tmp_path: Path) -> None:
    used = tmp_path / "used"
    wrapper = tmp_path / "project-python"
    wrapper.write_text(f'#!/bin/sh\ntouch {used}\nexec {sys.executable} "$@"\n')
    os.chmod(wrapper, 0o755)
    repo = _repo(tmp_path, f'python = "{wrapper}"\n')
    plugins = _plugins(repo, tmp_path)
    assert used.exists()
    # the project's environment: its installed plugins auto-load; ect's plugin comes via a path shim
    assert "asyncio" in plugins and "ect.pytest_plugin" in plugins


def test_a_missing_configured_python_is_a_config_error(tmp_path: Path) -> None:
    repo = _repo(tmp_path, 'python = "/nonexistent/bin/python"\n')
    (repo / "tests" / "test_probe.py").write_text(PROBE + "\n")
    proc = run_ect(repo, "check")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "ect: error: python = '/nonexistent/bin/python': no such interpreter"
