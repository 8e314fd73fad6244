"""Per-test fingerprints end to end: real repositories, real `ect check`, real pytest runs."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys

import pytest
from ect_testutil import GIT_ENV, git, write
from fp_testutil import FP_SAMPLE, FP_SOURCES, LOG_HELPER, check, db_nodeids, edit, env_with_log

from ect.fingerprints.store import KEEP_RECORDS

ALL = ["test_count", "test_gross", "test_load", "test_net", "test_table"]


def _recorded(make_repo, ran_log):
    repo = make_repo(FP_SAMPLE)
    proc = check(repo, "--all")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert ran_log() == ALL
    return repo


def test_change_inside_one_function_reruns_only_the_tests_that_executed_it(make_repo, ran_log) -> None:
    repo = _recorded(make_repo, ran_log)
    edit(repo, "shop/prices.py", "return net(x) + 1", "return 1 + net(x)")
    proc = check(repo, "--explain")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert ran_log() == ["test_gross"]
    assert "test_gross: executed shop/prices.py::gross, which changed" in proc.stdout

    # net is called by both net's and gross's tests
    edit(repo, "shop/prices.py", "return x * RATE", "return RATE * x")
    assert check(repo).returncode == 0
    assert ran_log() == ["test_gross", "test_net"]

    # a comment or a moved function changes no block: nothing to run
    edit(repo, "shop/prices.py", "RATE = 2\n", "RATE = 2  # per unit\n")
    proc = check(repo, "--explain")
    assert proc.returncode == 0 and ran_log() == []
    assert "none of its tests executed the change" in proc.stdout


def test_module_level_and_import_time_changes_reach_every_importer(make_repo, ran_log) -> None:
    repo = _recorded(make_repo, ran_log)
    # a constant: only the tests that ran code reading it (net reads RATE; gross calls net)
    edit(repo, "shop/prices.py", "RATE = 2", "RATE = 3")
    proc = check(repo, "--explain")
    assert proc.returncode == 1  # net and gross now fail
    assert ran_log() == ["test_gross", "test_net"]
    assert "executed shop/prices.py::net, which reads RATE (module level of shop/prices.py changed)" in (
        proc.stdout
    )
    edit(repo, "shop/prices.py", "RATE = 3", "RATE = 2")
    assert check(repo).returncode == 0
    ran_log()
    # label() runs at import time to build TABLE: a change to it is a module-level change
    edit(repo, "shop/prices.py", 'return f"{k}$"', 'return f"{k}€"')
    proc = check(repo, "--explain")
    assert proc.returncode == 1
    assert "test_table" in ran_log()
    assert "shop/prices.py::label changed (it runs while a module is imported" in proc.stdout
    edit(repo, "shop/prices.py", 'return f"{k}€"', 'return f"{k}$"')
    assert check(repo).returncode == 0
    ran_log()
    # a statement that calls project code at import time: every importer
    edit(repo, "shop/prices.py", "for k in range(3)}", "for k in range(4)}")
    proc = check(repo, "--explain")
    assert proc.returncode == 0
    assert ran_log() == ["test_gross", "test_net", "test_table"]
    assert "module level of shop/prices.py changed" in proc.stdout


def test_changed_data_file_reruns_the_tests_that_read_it(make_repo, ran_log) -> None:
    repo = _recorded(make_repo, ran_log)
    (repo / "shop/menu.txt").write_text("tea coffee water\n")
    proc = check(repo, "--explain")
    assert proc.returncode == 1  # test_load expects the old menu
    assert ran_log() == ["test_load"]
    assert "read shop/menu.txt, which changed" in proc.stdout


def test_new_test_runs_and_deleted_test_disappears(make_repo, ran_log) -> None:
    repo = _recorded(make_repo, ran_log)
    db = repo / ".ect" / "fingerprints.db"
    assert "tests/test_menu.py::test_count" in db_nodeids(db)
    text = (repo / "tests/test_menu.py").read_text()
    text = text.replace('def test_count():\n    _ran("test_count")\n    assert count([1, 2]) == 2\n', "")
    text += '\n\ndef test_fresh():\n    _ran("test_fresh")\n    assert count([]) == 0\n'
    (repo / "tests/test_menu.py").write_text(text)
    write(
        repo,
        {
            "tests/test_brand_new.py": (
                "from shop.prices import net\n\ndef test_new():\n    assert net(0) == 0\n"
            )
        },
    )
    proc = check(repo)
    assert proc.returncode == 0, proc.stdout
    assert ran_log() == ["test_fresh", "test_load"]
    ids = db_nodeids(db)
    assert "tests/test_menu.py::test_count" not in ids
    assert {"tests/test_menu.py::test_fresh", "tests/test_brand_new.py::test_new"} <= ids
    # a later change does not try to run the deleted test
    edit(repo, "shop/menu.py", "return len(items)", "return 0 + len(items)")
    proc = check(repo, "--explain")
    assert proc.returncode == 0, proc.stdout
    assert ran_log() == ["test_fresh"]
    assert "test_count" not in proc.stdout


def test_failed_test_reruns_until_it_passes_and_result_cache_spans_branches(make_repo, ran_log) -> None:
    repo = _recorded(make_repo, ran_log)
    git(repo, "checkout", "-q", "-b", "feature")
    edit(repo, "shop/menu.py", "return len(items)", "return len(items) + 0")
    assert check(repo).returncode == 0
    assert ran_log() == ["test_count"]
    git(repo, "commit", "-qam", "feature")
    git(repo, "checkout", "-q", "main")
    # the same code on another branch (uncommitted here): it passed with exactly this code, not re-run
    edit(repo, "shop/menu.py", "return len(items)", "return len(items) + 0")
    proc = check(repo, "--explain")
    assert proc.returncode == 0 and ran_log() == []
    # a failure is selected again until it passes
    edit(repo, "shop/prices.py", "return net(x) + 1", "return net(x) + 2")
    assert check(repo).returncode == 1
    assert ran_log() == ["test_gross"]
    edit(repo, "shop/menu.py", "return len(items) + 0", "return len(items) + 0 + 0")
    proc = check(repo, "--explain")
    assert "test_gross: failed last time" in proc.stdout
    assert ran_log() == ["test_count", "test_gross"]
    # back to code it passed with: the cached pass stands, nothing runs
    edit(repo, "shop/prices.py", "return net(x) + 2", "return net(x) + 1")
    assert check(repo).returncode == 0
    assert ran_log() == []


def test_edits_in_progress_do_not_evict_the_fingerprint_of_committed_code(make_repo, ran_log) -> None:
    repo = _recorded(make_repo, ran_log)
    committed = (repo / "shop/prices.py").read_text()
    for n in range(KEEP_RECORDS + 2):  # more edit-run rounds than records kept per test
        (repo / "shop/prices.py").write_text(
            committed.replace("return net(x) + 1", f"return net(x) + {n} - {n} + 1")
        )
        assert check(repo).returncode == 0
        assert ran_log() == ["test_gross"]
    # back to the committed gross, and an edit elsewhere: gross's record of committed code still holds
    (repo / "shop/prices.py").write_text(committed)
    edit(repo, "shop/menu.py", "return len(items)", "return len(items) + 0")
    proc = check(repo, "--explain")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert ran_log() == ["test_count"]
    conn = sqlite3.connect(repo / ".ect" / "fingerprints.db")
    rows = conn.execute(
        "SELECT r.base FROM records r JOIN tests t ON t.id = r.test WHERE t.nodeid LIKE '%test_gross'"
    ).fetchall()
    conn.close()
    assert sorted(rows) == [(0,), (1,)]  # the newest, and the one of committed content


def test_a_dynamic_import_reaches_only_the_tests_that_ran_it(make_repo, ran_log) -> None:
    files = {
        **FP_SOURCES,
        "shop/plugins.py": (
            "from importlib import import_module\n\n\ndef load(name):\n    return import_module(name)\n\n\n"
            "def version():\n    return 3\n"
        ),
        "shop/extra.py": "EXTRA = 1\n",
        "tests/other/conftest.py": "import shop.extra  # imported at start-up, not by test_plugins\n",
        "tests/other/test_other.py": LOG_HELPER + "\n\ndef test_other():\n    _ran('test_other')\n",
        "tests/test_plugins.py": LOG_HELPER
        + "from shop.plugins import load, version\n\n\n"
        + "def test_load():\n    _ran('test_load')\n    assert load('shop.extra').EXTRA == 1\n\n\n"
        + "def test_version():\n    _ran('test_version')\n    assert version() == 3\n",
    }
    repo = make_repo(files)
    proc = check(repo, "--all")
    assert proc.returncode == 0, proc.stdout
    assert ran_log() == ["test_load", "test_other", "test_version"], proc.stdout
    # test_version imports a module with a dynamic import but never ran it: extra.py cannot reach it
    edit(repo, "shop/extra.py", "EXTRA = 1", "EXTRA = 2")
    proc = check(repo, "--explain")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert ran_log() == ["test_load", "test_other"]
    # a dynamic import at module level may run for every importer
    edit(repo, "shop/extra.py", "EXTRA = 2", "EXTRA = 1")
    edit(
        repo, "shop/plugins.py", "def version():", "PLUGIN = import_module('shop.extra')\n\n\ndef version():"
    )
    assert check(repo, "--all").returncode == 0
    ran_log()
    edit(repo, "shop/extra.py", "EXTRA = 1", "EXTRA = 2")
    assert check(repo).returncode == 1
    assert {"test_load", "test_version"} <= set(ran_log())


def test_subprocess_test_runs_on_every_change(make_repo, ran_log) -> None:
    files = dict(FP_SAMPLE)
    files["tests/test_cli.py"] = (
        "import subprocess, sys\n\n"
        "def test_cli():\n"
        "    out = subprocess.run([sys.executable, '-c', 'print(1)'], capture_output=True, text=True)\n"
        "    assert out.stdout.strip() == '1'\n"
    )
    repo = make_repo(files)
    assert check(repo, "--all").returncode == 0
    ran_log()
    edit(repo, "shop/menu.py", "return len(items)", "return len(items) + 0")
    proc = check(repo, "--explain")
    assert proc.returncode == 0
    assert "starts a subprocess" in proc.stdout
    assert "tests/test_cli.py" in proc.stdout


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_multiprocessing_children_no_audit_event_announces_still_make_a_test_run(
    make_repo, ran_log, method: str
) -> None:
    # "spawn" and "forkserver" start their processes without an audit event in the test process;
    # the second pool of a fork server not even with a fork_exec: both tests must still run
    pool_test = (
        "import multiprocessing as mp\n"
        "from shop.prices import net\n\n"
        f"def test_first():\n    with mp.get_context({method!r}).Pool(1) as p:\n"
        "        assert p.map(net, [1]) == [2]\n\n"
        f"def test_second():\n    with mp.get_context({method!r}).Pool(1) as p:\n"
        "        assert p.map(net, [2]) == [4]\n"
    )
    repo = make_repo({**FP_SOURCES, "tests/test_pool.py": pool_test})
    assert check(repo, "--all").returncode == 0
    edit(repo, "shop/prices.py", "return x * RATE", "return x * RATE + 1")  # runs only in the children
    proc = check(repo, "--explain")
    assert proc.returncode == 1, proc.stdout
    assert "2 failed" in proc.stdout
    assert "starts a subprocess" in proc.stdout


FORK_TEST = """
import multiprocessing as mp
import os
from pathlib import Path

from shop.prices import gross, net

def _read_menu(_):
    return (Path(__file__).parent.parent / "shop" / "menu.txt").read_text()

def _import_menu(_):
    import shop.menu
    return shop.menu.count([1])

def test_pool():
    with mp.get_context("fork").Pool(1) as p:
        assert p.map(net, [1, 2]) == [2, 4]

def test_plain():
    assert gross(1) == 3

def test_child_reads():
    with mp.get_context("fork").Pool(1) as p:
        assert p.map(_read_menu, [0])[0]

def test_child_imports():
    with mp.get_context("fork").Pool(1) as p:
        assert p.map(_import_menu, [0]) == [1]
"""


def test_fork_children_share_what_they_run_and_flag_what_they_cannot(make_repo, ran_log) -> None:
    # multiprocessing's "fork" children mark their hits in the parent's shared tables: a test whose
    # pool ran `net` is selected by a change to `net` and no other; a child that reads a file or
    # imports a module the parent had not makes its test run on every change
    repo = make_repo({**FP_SOURCES, "tests/test_fork.py": FORK_TEST})
    assert check(repo, "--all").returncode == 0
    edit(repo, "shop/prices.py", "return x * RATE", "return x * RATE + 1")  # net: run only in a child
    proc = check(repo, "--explain")
    assert proc.returncode == 1, proc.stdout
    assert "test_pool - assert [3, 5] == [2, 4]" in proc.stdout
    assert "test_pool: it starts a subprocess" not in proc.stdout
    assert "test_child_reads: it starts a subprocess" in proc.stdout
    assert "test_child_imports: it starts a subprocess" in proc.stdout
    edit(repo, "shop/prices.py", "return x * RATE + 1", "return x * RATE")
    check(repo)
    edit(repo, "shop/prices.py", "return net(x) + 1", "return net(x) + 1 + 0")  # gross: no child ran it
    proc = check(repo, "--explain")
    assert proc.returncode == 0, proc.stdout
    assert "test_plain: executed shop/prices.py::gross" in proc.stdout
    assert "test_pool" not in proc.stdout


def test_a_database_file_opened_by_sqlite_is_a_dependency_of_its_test(make_repo, ran_log) -> None:
    import sqlite3

    files = dict(FP_SOURCES)
    files["tests/test_data.py"] = (
        "import sqlite3\nfrom pathlib import Path\n\nDB = Path(__file__).parent / 'data.db'\n\n"
        "def test_query():\n    assert sqlite3.connect(DB).execute('SELECT x FROM t').fetchone() == (1,)\n\n"
        "def test_size():\n    assert len(DB.read_bytes()) > 0\n\n"
        "def test_other():\n    assert True\n"
    )
    repo = make_repo(files)
    db = sqlite3.connect(repo / "tests" / "data.db")
    db.executescript("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
    db.commit()
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "data")
    assert check(repo, "--all").returncode == 0
    db.execute("UPDATE t SET x = 2")  # sqlite reads it in C: no "open" audit event
    db.commit()
    db.close()
    proc = check(repo)
    assert proc.returncode == 1
    assert "test_query - assert (2,) == (1,)" in proc.stdout
    assert "2 passed" not in proc.stdout and "1 failed, 1 passed" in proc.stdout  # not test_other


SYSTEM_INFO_TEST = """
import os
import subprocess
from pathlib import Path

from shop.prices import gross, net

BIN = Path(__file__).parent / "bin"

def test_uname():
    assert subprocess.run(["uname", "-s"], capture_output=True).returncode == 0
    assert net(1) == 2

def test_local_uname():
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    assert subprocess.run(["uname"], capture_output=True, text=True, env=env).stdout.strip() == "mine"
    assert gross(1) == 3

def test_uname_on_a_repository_file():
    menu = Path(__file__).parent.parent / "shop" / "menu.txt"
    assert subprocess.run(["uname", str(menu)], capture_output=True).returncode != 0
"""


def test_a_system_information_program_does_not_make_a_test_opaque(make_repo, ran_log) -> None:
    # `uname`, `ldconfig -p` (ctypes.util.find_library) report on the machine and run no project code;
    # the same name resolved inside the repository, or given a repository path, still counts
    files = dict(FP_SOURCES)
    files["tests/test_sys.py"] = SYSTEM_INFO_TEST
    files["tests/bin/uname"] = "#!/bin/sh\necho mine\n"
    repo = make_repo(files)
    (repo / "tests" / "bin" / "uname").chmod(0o755)
    git(repo, "commit", "-qam", "executable")
    assert check(repo, "--all").returncode == 0
    edit(repo, "shop/menu.py", "return len(items)", "return len(items) + 0")  # none of them ran it
    proc = check(repo, "--explain")
    assert proc.returncode == 0, proc.stdout
    assert "test_local_uname: it starts a subprocess" in proc.stdout
    assert "test_uname_on_a_repository_file: it starts a subprocess" in proc.stdout
    assert "test_uname:" not in proc.stdout and "2 passed" in proc.stdout


def test_a_module_a_thread_imports_belongs_to_the_test_that_ran_the_thread(make_repo, ran_log) -> None:
    files = dict(FP_SOURCES)
    files["shop/lazy.py"] = "FACTOR = 3\n\n\ndef triple(x):\n    return x * FACTOR\n"
    files["tests/test_thread.py"] = (
        "import threading\n\n"
        "def test_thread():\n    out = []\n"
        "    def work():\n        from shop.lazy import triple\n        out.append(triple(2))\n"
        "    t = threading.Thread(target=work)\n    t.start()\n    t.join()\n    assert out == [6]\n\n"
        "def test_other():\n    assert True\n"
    )
    repo = make_repo(files)
    assert check(repo, "--all").returncode == 0
    edit(repo, "shop/lazy.py", "return x * FACTOR", "return x * FACTOR + 1")
    proc = check(repo, "--explain")
    # the thread's import does not switch the shared context (a race with the main thread's tests),
    # so all the test ran in the module counts as its import: importers of the file run too
    assert proc.returncode == 1 and "test_thread - assert [7] == [6]" in proc.stdout
    edit(repo, "shop/lazy.py", "return x * FACTOR + 1", "return x * FACTOR")
    check(repo)
    edit(repo, "shop/lazy.py", "FACTOR = 3", "FACTOR = 4")  # module level, run in the thread
    proc = check(repo)
    assert proc.returncode == 1 and "test_thread - assert [8] == [6]" in proc.stdout


def test_fingerprints_of_an_older_schema_are_recorded_again_not_kept_as_corrupt(make_repo, ran_log) -> None:
    repo = _recorded(make_repo, ran_log)
    db = repo / ".ect" / "fingerprints.db"
    with sqlite3.connect(db) as conn:  # as ect before branches were blocks left it
        conn.execute("PRAGMA user_version = 3")
    conn.close()
    edit(repo, "shop/prices.py", "return net(x) + 1", "return 1 + net(x)")
    proc = check(repo, "--explain")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "recorded by an older ect" in proc.stdout
    assert ran_log() == ALL
    assert len(db_nodeids(db)) == 5
    assert not list((repo / ".ect").glob("fingerprints.db.corrupt-*"))  # nothing to keep aside
    edit(repo, "shop/prices.py", "return 1 + net(x)", "return 1 + net(x) + 0")
    assert check(repo).returncode == 0
    assert ran_log() == ["test_gross"]


def test_corrupt_fingerprint_database_is_rebuilt_and_the_full_suite_runs(make_repo, ran_log) -> None:
    repo = _recorded(make_repo, ran_log)
    db = repo / ".ect" / "fingerprints.db"
    db.write_bytes(b"this is not a database" * 200)
    for extra in (".ect/fingerprints.db-wal", ".ect/fingerprints.db-shm"):
        (repo / extra).unlink(missing_ok=True)
    edit(repo, "shop/prices.py", "return net(x) + 1", "return 1 + net(x)")
    proc = check(repo, "--explain")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "corrupt" in proc.stdout
    assert ran_log() == ALL
    assert len(db_nodeids(db)) == 5  # rebuilt and recorded again
    assert list((repo / ".ect").glob("fingerprints.db.corrupt-*"))
    # and precise again from here on
    edit(repo, "shop/prices.py", "return 1 + net(x)", "return 1 + net(x) + 0")
    assert check(repo).returncode == 0
    assert ran_log() == ["test_gross"]


def test_two_hooks_in_two_worktrees_at_once_share_one_database(make_repo, tmp_path) -> None:
    repo = make_repo(FP_SAMPLE)
    log = tmp_path / "wt.log"
    env = env_with_log(log)
    first = subprocess.run(
        [sys.executable, "-m", "ect", "check", "--all"],
        cwd=repo,
        env={**env, **GIT_ENV},
        capture_output=True,
        text=True,
        check=False,
    )
    assert first.returncode == 0, first.stdout + first.stderr
    other = tmp_path / "wt2"
    git(repo, "worktree", "add", "-q", str(other), "-b", "other")
    edit(repo, "shop/prices.py", "return net(x) + 1", "return 1 + net(x)")
    edit(other, "shop/menu.py", "return len(items)", "return len(items) + 0")
    procs = []
    for _ in range(3):
        for where in (repo, other):
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "ect", "check", "--trigger", "hook"],
                    cwd=where,
                    env={**env, **GIT_ENV},
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, out + err
        assert "Traceback" not in err and "corrupt" not in out + err
    db = repo / ".ect" / "fingerprints.db"
    assert not (other / ".ect" / "fingerprints.db").exists()  # one database for all worktrees
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    fps = dict(
        conn.execute(
            "SELECT t.nodeid, count(*) FROM records r JOIN tests t ON t.id = r.test GROUP BY t.nodeid"
        )
    )
    conn.close()
    assert fps["tests/test_prices.py::test_gross"] == 2 and fps["tests/test_menu.py::test_count"] == 2


def test_memoised_function_change_reaches_tests_that_only_saw_its_cached_result(make_repo, ran_log) -> None:
    files = {
        "pyproject.toml": FP_SAMPLE["pyproject.toml"],
        "shop/__init__.py": "",
        "shop/rates.py": (
            "import functools\n\n\n@functools.lru_cache(maxsize=None)\n"
            "def table():\n    return {'eur': 1}\n\n\ndef rate(code):\n    return table()[code]\n"
        ),
        "tests/test_a.py": "from shop.rates import rate\n\ndef test_first():\n    assert rate('eur') == 1\n",
        "tests/test_b.py": "from shop.rates import rate\n\ndef test_second():\n    assert rate('eur') == 1\n",
    }
    repo = make_repo(files)
    assert check(repo, "--all").returncode == 0
    edit(repo, "shop/rates.py", "return {'eur': 1}", "return {'eur': 2}")
    proc = check(repo, "--explain")
    assert proc.returncode == 1
    # both run: test_second got test_first's cached table without running it (the file names and
    # "memoised" alone also match the notes and the temporary directory's name: ask for the reasons)
    assert "← test_first:" in proc.stdout, proc.stdout
    assert "← test_second: shop/rates.py::table changed (memoised" in proc.stdout, proc.stdout


def test_corrupt_instrumented_code_cache_is_rebuilt(make_repo, ran_log) -> None:
    repo = _recorded(make_repo, ran_log)
    cache = repo / ".ect/fp-code"
    files = list(cache.glob("*.bin"))
    assert files, "the recording run caches instrumented modules"
    for f in files:
        f.write_bytes(b"\x00garbage")
    edit(repo, "shop/prices.py", "return net(x) + 1", "return 1 + net(x)")
    proc = check(repo, "--explain")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert ran_log() == ["test_gross"]
    # the same selection again: the rebuilt cache still records what ran
    edit(repo, "shop/prices.py", "return 1 + net(x)", "return net(x) + 2")
    proc = check(repo, "--explain")
    assert "test_gross: executed shop/prices.py::gross, which changed" in proc.stdout


def test_a_test_file_the_full_suite_does_not_collect_is_not_selected(make_repo, ran_log) -> None:
    files = dict(FP_SAMPLE)
    files["pyproject.toml"] = FP_SAMPLE["pyproject.toml"] + '    norecursedirs = ["tests/cases"]\n'
    # a checker's input, not a pytest module: passing it to pytest explicitly fails collection
    files["tests/cases/test_case_input.py"] = "from shop.prices import net\nraise ImportError('not a test')\n"
    repo = make_repo(files)
    assert check(repo, "--all").returncode == 0
    ran_log()
    edit(repo, "shop/prices.py", "return net(x) + 1", "return 1 + net(x)")
    proc = check(repo, "--explain")
    assert proc.returncode == 0, proc.stdout
    assert ran_log() == ["test_gross"]
    assert "tests/cases/test_case_input.py: the full suite does not collect it" in proc.stdout


PROPERTY_TEST = """
from hypothesis import given, settings, strategies as st

import shop.menu  # loaded, never run here: hypothesis harvests its literals all the same
from shop.prices import net


@settings(max_examples=200, database=None, derandomize=True)  # a 5% draw harvests
@given(st.integers())
def test_net_doubles(x):
    assert net(x) == 2 * x
"""


def test_a_property_test_depends_on_the_literals_hypothesis_harvests_not_on_their_code(make_repo) -> None:
    # hypothesis reads every local module's source for its constants (seeds for its examples): a
    # changed literal can change what the test generates, a changed comparison or call cannot
    pytest.importorskip("hypothesis")
    files = dict(FP_SOURCES)
    files["tests/test_prop.py"] = PROPERTY_TEST
    # runs later: draws on the harvest the first test read (hypothesis keeps it for the process)
    files["tests/test_prop_later.py"] = PROPERTY_TEST.replace("test_net_doubles", "test_net_again")
    repo = make_repo(files)
    assert check(repo, "--all").returncode == 0
    edit(repo, "shop/menu.py", "return len(items)", "return len(list(items))")
    proc = check(repo, "--explain")
    assert proc.returncode == 0, proc.stdout
    assert "none of its tests executed the change" in proc.stdout and "test_net_" not in proc.stdout
    # literals hypothesis does not keep (-99..99, a docstring): what it harvests is the same
    small = 'return len(items) * 1 + 0 * 42\n    """Count 12345."""'
    edit(repo, "shop/menu.py", "return len(list(items))", small)
    proc = check(repo, "--explain")
    assert proc.returncode == 0, proc.stdout
    assert "none of its tests executed the change" in proc.stdout and "test_net_" not in proc.stdout
    # a string hypothesis keeps: the tests draw integers only (`st.integers()`), never a string
    edit(repo, "shop/menu.py", '"menu.txt"', '"menu.txt" if True else "menu.md"')
    proc = check(repo, "--explain")
    assert proc.returncode == 0, proc.stdout
    assert "test_net_" not in proc.stdout, proc.stdout
    # an integer it keeps: what they generate may change
    edit(repo, "shop/menu.py", "return len(items) * 1", "return min(len(items), 1000) * 1")
    proc = check(repo, "--explain")
    assert proc.returncode == 0, proc.stdout
    changed = "read the literal constants of shop/menu.py (integer draws), which changed"
    assert f"test_net_doubles: {changed}" in proc.stdout, proc.stdout
    assert f"test_net_again: {changed}" in proc.stdout, proc.stdout
    assert "2 passed" in proc.stdout  # not the sample's own tests


INNER_PROPERTY_TEST = """
from hypothesis import given, settings, strategies as st

from shop.prices import net


def test_inner_property():  # not a hypothesis test itself: it draws through the function it calls
    @settings(max_examples=200, database=None, derandomize=True)
    @given(st.integers())
    def inner(x):
        assert net(x) == 2 * x

    inner()


def test_plain():
    assert net(1) == 2
"""


def test_hypothesis_plugins_harvest_after_collection_reaches_the_tests_that_draw_not_every_test(
    make_repo,
) -> None:
    # hypothesis' pytest plugin harvests the constants once collection ends, outside any test;
    # only generated data can observe them: the tests that draw, @given or not, not the others
    pytest.importorskip("hypothesis")
    files = dict(FP_SOURCES)
    plugin = '    [tool.ect]\n    pytest_plugins = ["_hypothesis_pytestplugin"]\n'
    files["pyproject.toml"] = FP_SAMPLE["pyproject.toml"] + plugin
    files["tests/test_prop.py"] = PROPERTY_TEST
    files["tests/test_inner.py"] = INNER_PROPERTY_TEST
    repo = make_repo(files)
    assert check(repo, "--all").returncode == 0
    edit(repo, "shop/menu.py", "return len(items)", "return min(len(items), 1000)")
    proc = check(repo, "--explain")
    assert proc.returncode == 0, proc.stdout
    assert "running all tests" not in proc.stdout, proc.stdout
    changed = "read the literal constants of shop/menu.py (integer draws), which changed"
    assert f"test_net_doubles: {changed}" in proc.stdout, proc.stdout
    assert f"test_inner_property: {changed}" in proc.stdout, proc.stdout
    assert "test_plain" not in proc.stdout and "2 passed" in proc.stdout, proc.stdout


PARAMETRISED_TEST = """
import pytest

from shop.codes import code, other_code, rows, table
from shop.menu import count


@pytest.mark.parametrize("c", [code(1)])  # its id comes from the value
def test_code(c):
    assert c == "#1"


ROWS = rows(2)  # a module-level value: it reaches the tests that name it


@pytest.mark.parametrize("n", [2])
def test_count(n):
    assert count([1, 2]) == n == len(ROWS)


def test_other():
    assert count([1]) == 1


def _register(*values):
    return lambda f: f


@_register(other_code(1))  # not a mark: what it runs may reach any test of the module
def test_registered():
    assert True


class TestTable:
    TABLE = table(2)  # runs at import: it reaches this class's tests only

    def test_table(self):
        assert self.TABLE == [0, 1] == ROWS
"""


def test_a_parametrize_decorators_code_reaches_its_own_test_not_the_whole_module(make_repo) -> None:
    files = dict(FP_SOURCES)
    files["shop/codes.py"] = (
        'def code(k):\n    return f"#{k}"\n\n\ndef other_code(k):\n    return k\n\n\n'
        "def table(n):\n    return list(range(n))\n\n\ndef rows(n):\n    return list(range(n))\n"
    )
    files["tests/test_params.py"] = PARAMETRISED_TEST
    repo = make_repo(files)
    assert check(repo, "--all").returncode == 0
    # ect reading the test module for its statements is not a read by the module's tests
    db = sqlite3.connect(repo / ".ect" / "fingerprints.db")
    assert db.execute(
        "SELECT COUNT(*) FROM files WHERE path = 'tests/test_params.py' AND kind = 2"
    ).fetchone() == (0,)
    db.close()
    edit(repo, "shop/codes.py", 'return f"#{k}"', 'return f"#{k}!"')  # test_code's arguments only
    proc = check(repo, "--explain")
    assert proc.returncode == 1, proc.stdout
    reason = "shop/codes.py::code ran while collecting tests/test_params.py::test_code, which changed"
    assert reason in proc.stdout, proc.stdout
    assert "1 failed, 4 deselected" in proc.stdout, proc.stdout  # test_code alone
    # a class body's code: that class's tests
    edit(repo, "shop/codes.py", "list(range(n))", "list(range(n + 1))")
    proc = check(repo, "--explain")
    reason = "shop/codes.py::table ran while collecting tests/test_params.py::TestTable, which changed"
    assert reason in proc.stdout, proc.stdout
    assert "2 failed, 3 deselected" in proc.stdout, proc.stdout  # test_table, and test_code failed last time
    # a module-level value's code: the tests that name it
    edit(
        repo,
        "shop/codes.py",
        "def rows(n):\n    return list(range(n))",
        "def rows(n):\n    return list(range(n + 1))",
    )
    proc = check(repo, "--explain")
    reason = (
        "shop/codes.py::rows ran while collecting tests/test_params.py, "
        "in a module-level value that TestTable, test_count use"
    )
    assert reason in proc.stdout, proc.stdout
    assert "3 failed, 2 deselected" in proc.stdout, proc.stdout  # test_count, test_table and test_code again
    # other_code runs in a decorator that is not a mark: every test of the module
    edit(repo, "shop/codes.py", "return k\n", "return k + 0\n")
    proc = check(repo, "--explain")
    assert "3 failed, 2 passed" in proc.stdout, proc.stdout


SKIPPED_MODULE = """
import pytest

from shop.prices import net

if net(1) == 2:  # the feature is off: nothing here runs
    pytest.skip("off", allow_module_level=True)


def test_feature():
    assert net(1) == 3
"""


def test_a_module_skipped_at_collection_runs_again_when_what_decided_the_skip_changes(
    make_repo, ran_log
) -> None:
    # a module that ran no test is not "a file the suite does not collect": what it ran while
    # collected (the skip condition) and its imports decide whether it is collected next time
    files = dict(FP_SAMPLE)
    files["tests/test_feature.py"] = SKIPPED_MODULE
    repo = make_repo(files)
    assert check(repo, "--all").returncode == 0
    assert ran_log() == ALL
    edit(repo, "shop/prices.py", "return net(x) + 1", "return 1 + net(x)")  # not what the skip ran
    proc = check(repo, "--explain")
    assert proc.returncode == 0 and ran_log() == ["test_gross"], proc.stdout
    assert "tests/test_feature.py: statically reachable, but none of its tests executed" in proc.stdout
    edit(repo, "shop/prices.py", "return x * RATE", "return x * RATE + 1")  # net(1) is 3: not skipped
    proc = check(repo, "--explain")
    assert proc.returncode == 1, proc.stdout
    assert "collecting the module (it ran no test): shop/prices.py::net ran while collecting" in proc.stdout
    assert "FAILED tests/test_feature.py::test_feature" not in proc.stdout  # net(1) == 3 passes
    assert "tests/test_feature.py::test_feature PASSED" in proc.stdout or "test_feature.py ." in proc.stdout


def test_a_module_level_lambda_called_by_a_test_is_not_an_import_of_its_module(make_repo, ran_log) -> None:
    # `OPS["in"](...)` runs code of ops.py's module level during the test; taking it for ops.py's
    # first import made everything the test ran in ops.py's imports "import-time" code, which
    # every importer may see: a change to work() then ran test_other too
    files = dict(FP_SAMPLE)
    files["shop/heavy.py"] = "def work(x):\n    return x + 1\n"
    files["shop/ops.py"] = (
        "from shop.heavy import work\n\nOPS = {'in': lambda a, b: a in b}\n\n\n"
        "def run(x):\n    return work(x)\n"
    )
    files["tests/test_ops.py"] = LOG_HELPER + (
        "from shop.ops import OPS, run\n\n\ndef test_ops():\n    _ran('test_ops')\n"
        "    assert OPS['in'](1, [1]) and run(1) == 2\n"
    )
    files["tests/test_other.py"] = LOG_HELPER + (
        "import shop.heavy\n\n\ndef test_other():\n    _ran('test_other')\n    assert shop.heavy\n"
    )
    repo = make_repo(files)
    assert check(repo, "--all").returncode == 0
    assert ran_log() == sorted([*ALL, "test_ops", "test_other"])
    edit(repo, "shop/heavy.py", "return x + 1", "return 1 + x")
    proc = check(repo, "--explain")
    assert proc.returncode == 0, proc.stdout
    assert ran_log() == ["test_ops"], proc.stdout
    assert "test_ops: executed shop/heavy.py::work, which changed" in proc.stdout
    # the lambda is module-level code all the same: changing it reaches the test that called it
    edit(repo, "shop/ops.py", "lambda a, b: a in b", "lambda a, b: a not in b")
    proc = check(repo, "--explain")
    assert proc.returncode == 1, proc.stdout
    assert "test_ops" in ran_log()


MEMO_SETTINGS = {
    "lru_cache": (
        "import functools\n\nfrom shop.parse import parse\n\n\n@functools.lru_cache(maxsize=None)\n"
        "def settings():\n    return parse('rate=2')\n\n\ndef untouched():\n    return 0\n"
    ),
    # a hand-written cache, as dateutil's tz factories: a class-level dict filled on a miss
    "factory": (
        "from shop.parse import parse\n\n\nclass _Settings:\n    _made = {}\n\n"
        "    def __call__(self, text='rate=2'):\n        found = self._made.get(text)\n"
        "        if found is None:\n            found = self._made.setdefault(text, parse(text))\n"
        "        return found\n\n\nsettings = _Settings()\n"
    ),
}


@pytest.mark.parametrize("cache", sorted(MEMO_SETTINGS))
def test_code_a_shared_memo_ran_for_an_earlier_test_reaches_the_later_tests_that_got_its_result(
    make_repo, ran_log, cache: str
) -> None:
    # settings() cached: test_a (first) runs parse() on the cache miss, test_b gets the cached
    # result without running it. A change to parse() must reach test_b too: it fails in the full
    # suite (the cache was filled by the changed code) and on its own
    files = dict(FP_SAMPLE)
    files["shop/parse.py"] = (
        "def parse(text):\n    key, value = text.split('=')\n    return {key: int(value)}\n"
    )
    files["shop/settings.py"] = MEMO_SETTINGS[cache]
    files["tests/test_a.py"] = LOG_HELPER + (
        "from shop.settings import settings\n\n\ndef test_a():\n    _ran('test_a')\n"
        "    assert settings()['rate'] == 2\n"
    )
    files["tests/test_b.py"] = LOG_HELPER + (
        "from shop.settings import settings\n\n\ndef test_b():\n    _ran('test_b')\n"
        "    assert settings() == {'rate': 2}\n"
    )
    repo = make_repo(files)
    assert check(repo, "--all").returncode == 0
    assert ran_log() == sorted([*ALL, "test_a", "test_b"])
    edit(repo, "shop/parse.py", "int(value)", "int(value) * 2")
    proc = check(repo, "--explain")
    assert proc.returncode == 1, proc.stdout
    assert ran_log() == ["test_a", "test_b"], proc.stdout  # not the sample's tests
    assert "FAILED tests/test_b.py::test_b" in proc.stdout
    rule = {
        "lru_cache": "shop/parse.py::parse changed (it runs while a module is imported",
        # the factory's own function runs on every hit: what its miss ran goes to the tests that ran it
        "factory": "test_b: shop/parse.py::parse ran in a cache miss of shop/settings.py::_Settings.__call__",
    }[cache]
    assert rule in proc.stdout, proc.stdout


def test_a_recording_by_xdist_workers_selects_as_precisely_as_one_process(make_repo, ran_log) -> None:
    # each worker writes its own raw recording, with its own shared tables (`load_raw` merges them)
    files = dict(FP_SAMPLE)
    files["pyproject.toml"] = FP_SAMPLE["pyproject.toml"] + "\n        [tool.ect]\n        xdist = true\n"
    repo = make_repo(files)
    proc = check(repo, "--all")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"created: \d+/\d+ workers", proc.stdout), proc.stdout  # it ran in workers
    assert ran_log() == ALL
    assert len(db_nodeids(repo / ".ect/fingerprints.db")) == len(ALL)
    edit(repo, "shop/prices.py", "return net(x) + 1", "return 1 + net(x)")
    assert check(repo).returncode == 0
    assert ran_log() == ["test_gross"]
    edit(repo, "shop/prices.py", "return x * RATE", "return RATE * x")
    assert check(repo).returncode == 0
    assert ran_log() == ["test_gross", "test_net"]
    edit(repo, "shop/prices.py", "RATE = 2", "RATE = 3")  # read by what net runs, in either worker
    assert check(repo).returncode == 1
    assert ran_log() == ["test_gross", "test_net"]
