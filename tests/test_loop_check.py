"""End to end: `ect check` on real temporary git repositories."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from ect_testutil import git, processes_in, run_ect, write


def test_all_on_green_repo_passes(make_repo, ran_log) -> None:
    repo = make_repo()
    proc = run_ect(repo, "check", "--all")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert ran_log() == ["test_core", "test_extra", "test_util"]


def test_nothing_changed_is_a_noop(make_repo, ran_log) -> None:
    repo = make_repo()
    proc = run_ect(repo, "check")
    assert proc.returncode == 0
    assert proc.stdout == "ect: nothing to check (no changes)\n"
    assert ran_log() == []


def test_core_edit_selects_exactly_its_reachers(make_repo, ran_log) -> None:
    repo = make_repo()
    (repo / "acme/core.py").write_text((repo / "acme/core.py").read_text() + "\nX = 1\n")
    proc = run_ect(repo, "check", "--explain")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert ran_log() == ["test_core", "test_util"]
    assert "2 of 3 test files selected" in proc.stdout
    assert "acme/util.py imports acme.core → acme/core.py (modified)" in proc.stdout


def test_leaf_edit_selects_fewer(make_repo, ran_log) -> None:
    repo = make_repo()
    (repo / "acme/extra.py").write_text(
        (repo / "acme/extra.py").read_text() + "\ndef whisper(s):\n    return s\n"
    )
    proc = run_ect(repo, "check")
    assert proc.returncode == 0
    assert ran_log() == ["test_extra"]


def test_syntax_error_reported_before_any_test(make_repo, ran_log) -> None:
    repo = make_repo()
    with (repo / "acme/util.py").open("a") as fh:
        fh.write("def broken(:\n")
    proc = run_ect(repo, "check")
    assert proc.returncode == 1
    assert "acme/util.py:8:12: SyntaxError" in proc.stdout
    assert "SyntaxError" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    assert ran_log() == []


def test_failing_test_fails_and_is_selected_again(make_repo, ran_log) -> None:
    repo = make_repo()
    (repo / "acme/extra.py").write_text('def shout(s):\n    return s.upper() + "?"\n')
    proc = run_ect(repo, "check")
    assert proc.returncode == 1
    assert ran_log() == ["test_extra"]
    # unrelated edit: the failing test is selected again although extra.py is not touched now
    git(repo, "stash", "-q")
    (repo / "acme/core.py").write_text((repo / "acme/core.py").read_text() + "\n")
    proc = run_ect(repo, "check", "--explain")
    assert "failed last time: tests/test_extra.py::test_shout" in proc.stdout
    assert ran_log() == ["test_core", "test_extra", "test_util"]
    assert proc.returncode == 0
    # now it passed: no longer selected
    git(repo, "checkout", "-q", ".")
    proc = run_ect(repo, "check")
    assert proc.returncode == 0 and ran_log() == []


def test_conftest_and_config_changes_select_everything(make_repo, ran_log) -> None:
    repo = make_repo()
    write(repo, {"conftest.py": "X = 1\n"})
    proc = run_ect(repo, "check")
    assert proc.returncode == 0
    assert "running all tests" in proc.stdout and "conftest.py" in proc.stdout
    assert ran_log() == ["test_core", "test_extra", "test_util"]
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "conftest")
    with (repo / "pyproject.toml").open("a") as fh:
        fh.write("\n[tool.other]\nx = 1\n")
    proc = run_ect(repo, "check")
    assert "matches run-everything rule 'pyproject.toml'" in proc.stdout
    assert ran_log() == ["test_core", "test_extra", "test_util"]


def test_nested_conftest_selects_its_directory(make_repo, ran_log) -> None:
    files = {
        "acme/__init__.py": "",
        "acme/a.py": "A = 1\n",
        "tests/unit/test_a.py": "from acme.a import A\ndef test_a():\n    assert A == 1\n",
        "tests/unit/conftest.py": "import acme.a\n",
        "tests/other/test_b.py": "def test_b():\n    assert True\n",
    }
    repo = make_repo(files)
    write(repo, {"tests/unit/conftest.py": "import acme.a\nY = 2\n"})
    proc = run_ect(repo, "check", "--json")
    data = json.loads(proc.stdout)
    assert [t["path"] for t in data["selection"]["tests"]] == ["tests/unit/test_a.py"]


def test_deleted_module_selects_its_dependants(make_repo, ran_log) -> None:
    repo = make_repo()
    (repo / "acme/core.py").unlink()
    proc = run_ect(repo, "check", "--json")
    data = json.loads(proc.stdout)
    selected = sorted(t["path"] for t in data["selection"]["tests"])
    assert selected == ["tests/test_core.py", "tests/test_util.py"]
    assert data["exit_code"] == 1  # their imports now fail
    assert data["changed"] == [{"path": "acme/core.py", "status": "D", "old_path": None}]


def test_new_and_renamed_files(make_repo, ran_log) -> None:
    repo = make_repo()
    write(repo, {"tests/test_new.py": "def test_new():\n    assert 1\n"})
    data = json.loads(run_ect(repo, "check", "--json").stdout)
    assert [t["path"] for t in data["selection"]["tests"]] == ["tests/test_new.py"]
    assert data["selection"]["tests"][0]["reasons"] == ["new test file"]
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "new test")
    git(repo, "mv", "acme/extra.py", "acme/loud.py")
    data = json.loads(run_ect(repo, "check", "--json").stdout)
    assert [t["path"] for t in data["selection"]["tests"]] == ["tests/test_extra.py"]
    assert data["exit_code"] == 1  # test_extra imports the old name


def test_staged_range_and_paths_modes(make_repo, ran_log) -> None:
    repo = make_repo()
    (repo / "acme/extra.py").write_text((repo / "acme/extra.py").read_text() + "\n# staged\n")
    git(repo, "add", "acme/extra.py")
    (repo / "acme/core.py").write_text((repo / "acme/core.py").read_text() + "\n# unstaged\n")
    data = json.loads(run_ect(repo, "check", "--staged", "--json").stdout)
    assert [c["path"] for c in data["changed"]] == ["acme/extra.py"]
    git(repo, "commit", "-qm", "extra")
    data = json.loads(run_ect(repo, "check", "--range", "HEAD~1..HEAD", "--json").stdout)
    assert [c["path"] for c in data["changed"]] == ["acme/extra.py"]
    assert [t["path"] for t in data["selection"]["tests"]] == ["tests/test_extra.py"]
    data = json.loads(run_ect(repo, "check", "acme/util.py", "--json").stdout)
    assert [t["path"] for t in data["selection"]["tests"]] == ["tests/test_util.py"]
    proc = run_ect(repo, "check", "--range", "nosuchrev..HEAD")
    assert proc.returncode == 2 and "bad revision range" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_non_python_files(make_repo, ran_log) -> None:
    repo = make_repo()
    write(repo, {"README.md": "# docs\n"})
    proc = run_ect(repo, "check", "--explain")
    assert proc.returncode == 0
    assert "no tests can be affected" in proc.stdout and ran_log() == []
    write(repo, {"acme/data/table.csv": "a,b\n"})
    proc = run_ect(repo, "check", "--explain")
    assert "is not Python and no data_deps rule" in proc.stdout
    assert ran_log() == ["test_core", "test_extra", "test_util"]
    with (repo / "pyproject.toml").open("a") as fh:
        fh.write('\n[tool.ect]\ndata_deps = {"acme/data/*" = ["tests/test_extra.py"]}\n')
    git(repo, "add", "pyproject.toml")
    git(repo, "commit", "-qm", "config")
    proc = run_ect(repo, "check", "--explain")
    assert "reads acme/data/table.csv (new) per data_deps" in proc.stdout
    assert ran_log() == ["test_extra"]


def test_state_dir_ignores_itself_and_events_are_recorded(make_repo, ran_log) -> None:
    repo = make_repo()
    (repo / "acme/extra.py").write_text((repo / "acme/extra.py").read_text() + "\n")
    run_ect(repo, "check")
    assert (repo / ".ect/.gitignore").read_text().strip().endswith("*")
    status = git(repo, "status", "--porcelain", "--untracked-files=all")
    assert ".ect" not in status
    from ect import events

    rows = events.query(repo / ".ect")
    assert len(rows) == 1
    event = rows[0]
    assert (event["kind"], event["source"], event["outcome"]) == ("loop.run", "cli", "pass")
    assert event["test_files_selected"] == 1 and event["test_files_total"] == 3
    assert set(event["phases"]) >= {"changes", "compile", "select", "tests"}


def test_not_a_git_repo(tmp_path: Path) -> None:
    proc = run_ect(tmp_path, "check")
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("ect: error: not a git repository")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_non_utf8_source_is_a_compile_error(make_repo, ran_log) -> None:
    repo = make_repo()
    (repo / "acme/extra.py").write_bytes(b"X = '\xff\xfe'\n")
    proc = run_ect(repo, "check")
    assert proc.returncode == 1
    assert "acme/extra.py:1:" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    assert ran_log() == []


def test_corrupt_state_is_rebuilt(make_repo, ran_log) -> None:
    repo = make_repo()
    (repo / "acme/core.py").write_text((repo / "acme/core.py").read_text() + "\n")
    assert run_ect(repo, "check").returncode == 0
    ran_log()
    (repo / ".ect/graph.json").write_text("{not json")
    (repo / ".ect/last_failed.json").write_bytes(b"\x00\xff")
    (repo / ".ect/events.db").write_bytes(b"garbage, not sqlite" * 100)
    proc = run_ect(repo, "check")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert ran_log() == ["test_core", "test_util"]
    assert "corrupt" in proc.stderr  # reported once
    conn = sqlite3.connect(repo / ".ect/events.db")
    assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 1
    assert list((repo / ".ect").glob("events.db.corrupt-*"))  # kept, not lost


def test_compile_only_and_json(make_repo, ran_log) -> None:
    repo = make_repo()
    (repo / "acme/core.py").write_text((repo / "acme/core.py").read_text() + "\n")
    data = json.loads(run_ect(repo, "check", "--no-tests", "--json").stdout)
    assert data["outcome"] == "pass" and data["results"] is None
    assert ran_log() == []
    proc = run_ect(repo, "check", "--staged", "--all")
    assert proc.returncode == 2 and "choose one" in proc.stderr


def test_all_starts_the_tests_early_and_a_compile_error_stops_them(make_repo, ran_log, tmp_path) -> None:
    marker = tmp_path / "slow-test-finished"
    slow = f"import time\ndef test_slow():\n    time.sleep(3)\n    open({str(marker)!r}, 'w').close()\n"
    repo = make_repo()
    write(repo, {"tests/test_slow.py": slow})
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "slow")
    proc = run_ect(repo, "check", "--all")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert out.index("running all tests") < out.index("test session starts")  # pytest's output waited
    assert ran_log() == ["test_core", "test_extra", "test_util"] and marker.exists()
    marker.unlink()

    with (repo / "acme/util.py").open("a") as fh:
        fh.write("def broken(:\n")
    proc = run_ect(repo, "check", "--all")
    assert proc.returncode == 1
    assert "acme/util.py:8:12: SyntaxError" in proc.stdout
    assert "test session starts" not in proc.stdout  # the early run's output is not shown
    assert processes_in(repo) == []  # ... and it was stopped with everything it started
    time.sleep(3.5)
    assert not marker.exists()


def test_compiled_content_is_not_compiled_again_and_a_corrupt_cache_is_rebuilt(make_repo) -> None:
    from ect.compile_step import COMPILED_CACHE, COMPILED_CACHE_MIN_FILES, run_compile
    from ect.config import load_config

    repo = make_repo()
    more = {f"acme/m{i}.py": f"def f{i}(x):\n    return x + {i}\n" for i in range(COMPILED_CACHE_MIN_FILES)}
    write(repo, more)
    cfg = load_config(repo)
    files = sorted(["acme/core.py", "acme/util.py", *more])
    assert sorted(run_compile(repo, cfg, files[:2]).trees) == files[:2]  # a few files: no cache
    first = run_compile(repo, cfg, files)
    assert first.ok and sorted(first.trees) == files  # compiled, the trees handed to the graph
    again = run_compile(repo, cfg, files)
    assert again.ok and again.trees == {}  # the same bytes: known to compile
    with (repo / "acme/util.py").open("a") as fh:
        fh.write("def broken(:\n")
    broken = run_compile(repo, cfg, files)
    assert [(e.path, e.line) for e in broken.errors] == [("acme/util.py", 8)]
    assert sorted(broken.trees) == []  # the others: known
    (cfg.state_path / COMPILED_CACHE).write_bytes(b"\x00not json")
    git(repo, "checkout", "-q", "acme/util.py")
    rebuilt = run_compile(repo, cfg, files)
    assert rebuilt.ok and sorted(rebuilt.trees) == files  # compiled again, and remembered
    assert json.loads((cfg.state_path / COMPILED_CACHE).read_text())["ok"]


AS_PYTHON_M_PYTEST = """
import os, sys

def test_runs_as_python_m_pytest():
    assert os.getcwd() in sys.path[:2] and "" not in sys.path  # the working directory, absolute
    assert sys.argv[0].endswith(os.path.join("pytest", "__main__.py"))
    assert "--" in sys.argv and "tests/test_env.py" in sys.argv
    assert os.read(0, 16) == b""  # stdin is /dev/null
"""


def test_pytest_started_before_the_selection_runs_as_python_m_pytest(make_repo, ran_log) -> None:
    repo = make_repo()
    write(repo, {"tests/test_env.py": AS_PYTHON_M_PYTEST})
    plain = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--", "tests/test_env.py"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert plain.returncode == 0, plain.stdout  # the test's expectations hold for plain pytest
    proc = run_ect(repo, "check")  # a change: pytest starts while compiling and selecting
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout


def test_a_pytest_started_early_is_ended_when_nothing_runs(make_repo, ran_log) -> None:
    from ect.config import load_config
    from ect.loop import Scope, run_loop

    repo = make_repo()
    cfg = load_config(repo)
    (repo / "README.md").write_text("no test reads this\n")
    res = run_loop(repo, cfg, Scope(mode="worktree"), stream=False)
    assert res.exit_code == 0 and res.test_files == [] and res.test_run is None
    assert processes_in(repo) == []  # the early pytest was ended at once, not left to the kernel
    with (repo / "acme/util.py").open("a") as fh:
        fh.write("def broken(:\n")
    res = run_loop(repo, cfg, Scope(mode="worktree"), stream=False)
    assert res.exit_code == 1 and res.test_run is None
    assert processes_in(repo) == []
    leftovers = [p.name for p in (repo / ".ect").iterdir() if p.name.startswith(("fp-", "results-"))]
    assert [n for n in leftovers if n != "fp-code"] == []
    assert ran_log() == []
