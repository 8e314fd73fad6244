"""Fingerprint attribution on a real repository: collection, conftest and shared-fixture code
belongs to the tests that can observe it (precise), and a change there still selects every
test it can fail (safe)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from ect_testutil import git, write
from fp_testutil import FP_SAMPLE, LOG_HELPER, check, edit

FILES = {
    "pyproject.toml": FP_SAMPLE["pyproject.toml"],
    "pkg/__init__.py": "",
    "pkg/registry.py": """
        REG = {}


        def register(name):
            def deco(f):
                REG[name] = f
                return f

            return deco
    """,
    "pkg/plugins.py": """
        from pkg.registry import register


        @register("double")
        def double(x):
            return 2 * x
    """,
    "pkg/store.py": """
        def rows():
            return [1, 2, 3]


        def make_db():
            return {"rows": rows()}
    """,
    "pkg/cases.py": "def cases():\n    return [1, 2, 3]\n",
    "pkg/settings.py": "def setting():\n    return 5\n",
    "pkg/lazy.py": "def compute():\n    return 3\n\n\nVALUE = compute()\n",
    "tests/conftest.py": """
        import pytest
        from pkg.store import make_db


        @pytest.fixture(scope="session")
        def db():
            return make_db()


        @pytest.fixture
        def conn(db):
            return db
    """,
    "tests/test_db1.py": LOG_HELPER
    + """
def test_one(db):
    _ran("test_one")
    assert db["rows"] == [1, 2, 3]
""",
    "tests/test_db2.py": LOG_HELPER
    + """
def test_two(conn):
    _ran("test_two")
    assert len(conn["rows"]) == 3


def test_dynamic(request):
    _ran("test_dynamic")
    assert request.getfixturevalue("db")["rows"][0] == 1


def test_nodb():
    _ran("test_nodb")
""",
    "tests/test_param.py": LOG_HELPER
    + """
import pytest
from pkg.cases import cases


@pytest.mark.parametrize("x", cases(), ids=["a", "b", "c"])
def test_case(x):
    _ran("test_case")
    assert x > 0
""",
    "tests/test_registry.py": LOG_HELPER
    + """
import pkg.plugins
from pkg.registry import REG


def test_registered():
    _ran("test_registered")
    assert sorted(REG) == ["double"]


def test_lazy():
    _ran("test_lazy")
    from pkg import lazy

    assert lazy.VALUE == 3
""",
    "pkg/dyn.py": "import importlib\n\n\ndef load(name):\n    return importlib.import_module(name)\n",
    "tools/report.py": "def main():\n    return 1\n",
    "examples/demo.py": "RESULT = 6\n",
    "tests/test_tools.py": LOG_HELPER
    + """
import runpy
from pathlib import Path

from pkg.dyn import load


def test_dyn():
    _ran("test_dyn")
    assert load("json").dumps(1) == "1"


def test_example():
    _ran("test_example")
    assert runpy.run_path(str(Path(__file__).parents[1] / "examples/demo.py"))["RESULT"] == 6
""",
    "pkg/shapes.py": """
        def area(kind, x):
            return square(x) if kind == "square" else circle(x)


        def square(x):
            return x * x


        def circle(x):
            return 3 * x * x
    """,
    "tests/test_shapes.py": LOG_HELPER
    + """
import pytest
from pkg.shapes import area


@pytest.mark.parametrize("kind,x,want", [("square", 2, 4), ("circle", 1, 3)], ids=["sq", "ci"])
def test_area(kind, x, want):
    _ran("test_area_" + kind[:2])
    assert area(kind, x) == want
""",
    "tests/sub/conftest.py": """
        import pytest
        from pkg.settings import setting

        SETTING = setting()


        @pytest.fixture
        def sub_setting():
            return SETTING
    """,
    "tests/sub/test_sub.py": LOG_HELPER
    + """
def test_setting(sub_setting):
    _ran("test_setting")
    assert sub_setting == 5
""",
}
ALL = [
    "test_area_ci",
    "test_area_sq",
    "test_case",
    "test_dyn",
    "test_dynamic",
    "test_example",
    "test_lazy",
    "test_nodb",
    "test_one",
    "test_registered",
    "test_setting",
    "test_two",
]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One recorded repository for the module; each test reverts what it changed."""
    root = tmp_path_factory.mktemp("attr") / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    write(root, FILES)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "initial")
    mp = pytest.MonkeyPatch()
    log = root.parent / "ran.log"
    mp.setenv("RAN_LOG", str(log))
    proc = check(root, "--all")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _ran(log) == ALL
    yield root
    mp.undo()


def _ran(log: Path) -> list[str]:
    names = sorted(set(log.read_text().split())) if log.exists() else []
    log.write_text("")
    return names


def _change(repo: Path, rel: str, old: str, new: str) -> tuple[int, str, list[str]]:
    """Apply one edit, run `ect check --explain`, revert and settle; (exit, output, tests run)."""
    log = repo.parent / "ran.log"
    _ran(log)
    edit(repo, rel, old, new)
    try:
        proc = check(repo, "--explain")
        ran = _ran(log)
    finally:
        edit(repo, rel, new, old)
    settle = check(repo)  # reruns what failed: back to the recorded state
    assert settle.returncode == 0, settle.stdout
    _ran(log)
    return proc.returncode, proc.stdout, ran


def test_session_fixture_code_selects_every_test_using_it_and_no_other(repo: Path) -> None:
    # db is set up once, during test_one; test_two uses it through conn, test_dynamic by name
    code, out, ran = _change(repo, "pkg/store.py", "return [1, 2, 3]", "return [0, 2, 3]")
    assert code == 1, out
    assert ran == ["test_dynamic", "test_one", "test_two"]
    assert "ran in session fixture 'db' (tests), which the test uses" in out


def test_parametrisation_code_selects_only_its_module(repo: Path) -> None:
    code, out, ran = _change(repo, "pkg/cases.py", "return [1, 2, 3]", "return [1, 0, 3]")
    assert code == 1, out
    assert ran == ["test_case"]
    assert "ran while collecting tests/test_param.py" in out


def test_conftest_module_level_code_selects_the_tests_under_it(repo: Path) -> None:
    code, out, ran = _change(repo, "pkg/settings.py", "return 5", "return 6")
    assert code == 1, out
    assert ran == ["test_setting"]
    assert "while collecting tests/sub" in out


def test_import_time_registration_selects_the_importers(repo: Path) -> None:
    code, out, ran = _change(repo, "pkg/registry.py", "REG[name] = f", "REG[name.upper()] = f")
    assert code == 1, out
    assert "test_registered" in ran
    assert {"test_one", "test_case", "test_setting"}.isdisjoint(ran)
    assert "pkg/registry.py::register changed (it runs while a module is imported" in out


def test_code_run_by_a_lazy_import_in_a_test_selects_that_test(repo: Path) -> None:
    code, out, ran = _change(repo, "pkg/lazy.py", "return 3", "return 4")
    assert code == 1, out
    assert "test_lazy" in ran
    assert {"test_one", "test_case", "test_setting", "test_nodb"}.isdisjoint(ran)


def test_a_file_no_test_loaded_selects_nothing_even_behind_a_dynamic_import(repo: Path) -> None:
    # statically, pkg/dyn.py's import_module(...) could load any changed module
    code, out, ran = _change(repo, "tools/report.py", "return 1", "return 2")
    assert code == 0, out
    assert ran == []
    assert "tools/report.py: no recorded test imported it" in out


def test_a_script_a_test_runs_by_path_selects_that_test(repo: Path) -> None:
    code, out, ran = _change(repo, "examples/demo.py", "RESULT = 6", "RESULT = 7")
    assert code == 1, out
    assert ran == ["test_example"]
    assert "read examples/demo.py, which changed" in out


def test_a_change_only_some_parameters_ran_selects_just_those(repo: Path) -> None:
    code, out, ran = _change(repo, "pkg/shapes.py", "return x * x\n", "return x * x + 1\n")
    assert code == 1, out
    assert ran == ["test_area_sq"]


def test_attribution_rules_and_the_global_fallback() -> None:
    from ect.fingerprints.recorder import COLLECT, IMPORT_TIME, attribute, fixture_key

    db = fixture_key("session", "tests", "db")
    orphan = fixture_key("module", "tests/test_b.py", "unused")
    tests = ["tests/test_a.py::test_x", "tests/test_a.py::C::test_y", "tests/sub/test_b.py::test_z"]
    hits = {
        IMPORT_TIME: {"pkg/core.py": {"<module>"}},
        COLLECT + "tests/test_a.py": {"pkg/cases.py": {"cases"}},
        COLLECT + "tests/sub": {"pkg/settings.py": {"setting"}},
        COLLECT + "tests/gone.py": {"pkg/gone.py": {"g"}},  # no test ran under it: global
        db: {"pkg/store.py": {"make_db"}},
        orphan: {"pkg/orphan.py": {"o"}},  # no known user: global
        "tests/test_a.py::test_x": {"pkg/store.py": {"make_db", "rows"}},
    }
    att = attribute(
        tests,
        {db: {"tests/sub/test_b.py::test_z", "tests/test_a.py::test_x"}},
        hits,
        {db: {"data.txt"}},
        {COLLECT + "tests": {"tests"}},
        {db},
    )
    assert att.executed["tests/test_a.py::C::test_y"] == {"pkg/cases.py": {"cases"}}
    assert att.executed["tests/sub/test_b.py::test_z"] == {
        "pkg/settings.py": {"setting"},
        "pkg/store.py": {"make_db"},
    }
    assert att.executed[IMPORT_TIME] == {
        "pkg/core.py": {"<module>"},
        "pkg/gone.py": {"g"},
        "pkg/orphan.py": {"o"},
    }
    assert att.via["tests/sub/test_b.py::test_z"]["pkg/store.py"]["make_db"].startswith(
        "in session fixture 'db'"
    )
    assert "pkg/store.py" not in att.via.get("tests/test_a.py::test_x", {})  # it ran make_db itself
    assert att.reads["tests/sub/test_b.py::test_z"] == {"data.txt"}
    assert att.opaque == {"tests/sub/test_b.py::test_z", "tests/test_a.py::test_x"}
    assert att.dirs == {IMPORT_TIME: {"tests"}}  # pytest listing a directory to collect it


def test_raw_recordings_merge_by_content_and_a_bad_one_records_nothing(tmp_path: Path) -> None:
    import json

    from ect.fingerprints.ingest import load_raw
    from ect.fingerprints.recorder import RAW_FORMAT

    def raw(
        pid: int, names: list[list[str]], executed: dict, vias: list[dict], rules: list[str], via: dict
    ) -> None:
        data = {"format": RAW_FORMAT, "pid": pid, "names": names, "executed": executed, "rules": rules}
        data |= {"vias": vias, "via": via, "modules": {"pkg/a.py": "d1"}, "reads": {}, "dirs": {}}
        (tmp_path / f"raw-{pid}.json").write_text(json.dumps(data))

    # two workers, each with its own tables: import time ran different blocks in each
    raw(
        1,
        [["f"], ["g", "h"]],
        {"": {"pkg/a.py": 0}, "t1": {"pkg/a.py": 1}},
        [{"g": 0}],
        ["collecting"],
        {"t1": {"pkg/a.py": 0}},
    )
    raw(
        2,
        [["k"], ["f", "g"]],
        {"": {"pkg/a.py": 0}, "t2": {"pkg/a.py": 1}},
        [{"f": 0}],
        ["a fixture"],
        {"t2": {"pkg/a.py": 0}},
    )
    merged = load_raw(tmp_path)
    assert merged is not None
    assert merged["executed"] == {
        "": {"pkg/a.py": ["f", "k"]},
        "t1": {"pkg/a.py": ["g", "h"]},
        "t2": {"pkg/a.py": ["f", "g"]},
    }
    assert merged["via"] == {"t1": {"pkg/a.py": {"g": "collecting"}}, "t2": {"pkg/a.py": {"f": "a fixture"}}}

    raw(3, [["x"]], {"t3": {"pkg/a.py": 5}}, [], [], {})  # an index past its table
    assert load_raw(tmp_path) is None
    (tmp_path / "raw-3.json").write_text(json.dumps({"format": RAW_FORMAT - 1, "executed": {}}))
    assert load_raw(tmp_path) is None  # another ect's format
    (tmp_path / "raw-3.json").write_text("{truncated")
    assert load_raw(tmp_path) is None
