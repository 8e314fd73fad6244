"""`[tool.ect]` validation, the fast no-op path, and the CLI surface."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from ect_testutil import GIT_ENV, run_ect, write


def _with_config(make_repo, text: str):
    repo = make_repo()
    with (repo / "pyproject.toml").open("a") as fh:
        fh.write("\n[tool.ect]\n" + text + "\n")
    return repo


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("sorce_roots = ['src']", "unknown key 'sorce_roots'"),
        ("mypy = 'yes'", "'mypy' must be bool, got str 'yes'"),
        ("test_paths = 'tests'", "'test_paths' must be list[str]"),
        ("ruff = 3", "'ruff' must be true, false or \"auto\""),
        ("data_deps = {'a/*' = 'tests'}", "'data_deps' must be dict[str,list[str]]"),
        ("source_roots = ['../elsewhere']", "must be a path inside the repository"),
        ("mypy = [", "invalid TOML"),
    ],
)
def test_broken_config_is_one_line_exit_2(make_repo, config: str, message: str) -> None:
    repo = _with_config(make_repo, config)
    (repo / "acme/core.py").write_text((repo / "acme/core.py").read_text() + "\n")
    proc = run_ect(repo, "check")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert message in lines[0]
    assert "Traceback" not in proc.stderr


def test_ect_toml_takes_precedence(make_repo, ran_log) -> None:
    repo = make_repo()
    write(repo, {"ect.toml": "test_patterns = ['nothing_*.py']\n"})
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-qm", "ect.toml"], cwd=repo, check=True, env={**os.environ, **GIT_ENV})
    (repo / "acme/core.py").write_text((repo / "acme/core.py").read_text() + "\n")
    proc = run_ect(repo, "check")
    assert "no tests can be affected" in proc.stdout


def test_config_broken_after_a_fast_noop_is_still_reported(make_repo) -> None:
    repo = make_repo()
    (repo / "acme/core.py").write_text((repo / "acme/core.py").read_text() + "\n")
    assert run_ect(repo, "check").returncode == 0  # full path: validates config, leaves the stamp
    subprocess.run(["git", "checkout", "-q", "."], cwd=repo, check=True)
    bin_ect = os.path.join(os.path.dirname(sys.executable), "ect")
    fast = subprocess.run([bin_ect, "check"], cwd=repo, capture_output=True, text=True)
    assert fast.returncode == 0 and fast.stdout == "ect: nothing to check (no changes)\n"
    with (repo / "pyproject.toml").open("a") as fh:
        fh.write("\n[tool.ect]\nbogus = 1\n")
    subprocess.run(["git", "stash", "-q"], cwd=repo, check=False)  # nothing pending except config...
    with (repo / "pyproject.toml").open("a") as fh:
        fh.write("\n[tool.ect]\nbogus = 1\n")
    subprocess.run(
        ["git", "commit", "-qam", "bad config"], cwd=repo, check=True, env={**os.environ, **GIT_ENV}
    )
    proc = subprocess.run([bin_ect, "check"], cwd=repo, capture_output=True, text=True)
    assert proc.returncode == 2 and "unknown key 'bogus'" in proc.stderr


def test_fast_path_records_noop_event(make_repo) -> None:
    from ect import events

    repo = make_repo()
    (repo / "acme/core.py").write_text((repo / "acme/core.py").read_text() + "\n")
    run_ect(repo, "check")
    subprocess.run(["git", "checkout", "-q", "."], cwd=repo, check=True)
    bin_ect = os.path.join(os.path.dirname(sys.executable), "ect")
    subprocess.run([bin_ect, "check", "--staged", "--trigger=hook"], cwd=repo, check=True)
    last = events.query(repo / ".ect")[-1]
    assert (last["kind"], last["outcome"], last["source"], last["fast_path"]) == (
        "loop.run",
        "noop",
        "hook",
        True,
    )


def test_cli_version_help_and_lean_imports() -> None:
    proc = subprocess.run([sys.executable, "-m", "ect", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and "ect, version" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "ect", "--help"], capture_output=True, text=True)
    assert "check" in proc.stdout and "model" in proc.stdout
    code = (
        "import sys, ect.cli, ect.check_cmd, ect.loop, ect.graph, ect.selection, ect.runner, ect.entry\n"
        "heavy = [m for m in ('torch', 'transformers', 'peft', 'pygls', 'rich', 'matplotlib', 'psycopg',"
        " 'git') if m in sys.modules]\nprint(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_unknown_command_and_missing_extra_are_one_line(tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ect", "nosuch"], capture_output=True, text=True, cwd=tmp_path
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_watch_runs_the_loop_on_save(make_repo, ran_log) -> None:
    repo = make_repo()
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "ect", "watch", "--debounce", "100"],
        cwd=repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **GIT_ENV},
    )
    try:
        assert proc.stdout is not None
        assert "watching" in proc.stdout.readline()
        time.sleep(0.5)
        (repo / "acme/extra.py").write_text('def shout(s):\n    return s.upper() + "!"\n\nX = 1\n')
        line = proc.stdout.readline()
        assert "acme/extra.py" in line and "1 passed" in line, line
        assert ran_log() == ["test_extra"]
        (repo / "acme/util.py").write_text("def broken(:\n")
        line = proc.stdout.readline()
        assert "acme/util.py" in line and "compile error" in line, line
        assert "acme/util.py:1:" in proc.stdout.readline()
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert "stopped watching" in out
