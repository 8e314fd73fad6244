"""`ect fix` on real temporary repositories: each fault kind is fixed, verified and applied; a wrong fix
is never shown."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from ect_testutil import processes_in, run_ect, write

BASE = {
    "pyproject.toml": """
        [project]
        name = "acme"
        version = "0.1.0"
        [tool.pytest.ini_options]
        testpaths = ["tests"]
        pythonpath = ["."]
        [tool.ect.fix]
        moved = {"acme.legacy.add" = "acme.core.add"}
    """,
    "acme/__init__.py": "",
    "acme/core.py": """
        def add(a, b):
            return a + b


        def scale(x, k=2):
            return x * k
    """,
    "acme/util.py": """
        from acme.core import add


        def total(xs):
            t = 0
            for x in xs:
                t = add(t, x)
            return t
    """,
    "tests/test_util.py": """
        from acme.util import total


        def test_total():
            assert total([1, 2, 3]) == 6
    """,
}

BODY = """
def total(xs):
    t = 0
    for x in xs:
        t = {call}
    return t
"""

# fault kind -> (broken acme/util.py, expected title of the best fix, text the fixed file must contain)
FAULTS = {
    "removed-import": (
        BODY.format(call="add(t, x)"),
        "Add `from acme.core import add`",
        "from acme.core import add",
    ),
    "misspelled-name": (
        "from acme.core import add\n" + BODY.format(call="ad(t, x)"),
        "Change `ad` to `add`",
        "t = add(t, x)",
    ),
    "module-attribute": (
        "from acme import core\n" + BODY.format(call="core.ad(t, x)"),
        "Change `.ad` to `.add`",
        "core.add(t, x)",
    ),
    "cannot-import": (
        "from acme.core import ad\n" + BODY.format(call="ad(t, x)"),
        "Change `ad` to `add`",
        "from acme.core import add\n",
    ),
    "wrong-keyword": (
        "from acme.core import add, scale\n" + BODY.format(call="add(t, scale(x, kk=1))"),
        "Change keyword `kk=` to `k=`",
        "scale(x, k=1)",
    ),
    "arg-count": (
        "from acme.core import add\n" + BODY.format(call="add(t, x, 1)"),
        "Remove positional argument 3 of `add()`",
        "t = add(t, x)\n",
    ),
    "moved-symbol": (
        "from acme.legacy import add\n" + BODY.format(call="add(t, x)"),
        "Import `acme.core.add` (moved from `acme.legacy.add`)",
        "from acme.core import add",
    ),
}


def _events(repo: Path, kind: str) -> list[tuple[str, str]]:
    with sqlite3.connect(repo / ".ect" / "events.db") as conn:
        return conn.execute("SELECT kind, outcome FROM events WHERE kind = ?", (kind,)).fetchall()


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_each_fault_kind_gets_a_verified_fix(make_repo, fault: str) -> None:
    broken, title, expected = FAULTS[fault]
    repo = make_repo(BASE)
    (repo / "acme/util.py").write_text(broken)
    proc = run_ect(repo, "fix", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(proc.stdout)
    assert data["loop"]["outcome"] == "fail"
    [result] = data["results"]
    assert result["failure"]["path"] == "acme/util.py"
    assert result["fixes"], result
    assert result["fixes"][0]["title"] == title
    assert (repo / "acme/util.py").read_text() == broken  # offering never writes

    proc = run_ect(repo, "fix", "--apply")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"applied: acme/util.py: {title}" in proc.stdout
    assert expected in (repo / "acme/util.py").read_text()
    check = run_ect(repo, "check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert _events(repo, "fix.offered") and _events(repo, "fix.applied") == [("fix.applied", "verified")]


def test_apply_preserves_formatting_and_comments(make_repo) -> None:
    repo = make_repo(BASE)
    broken = (
        '"""Totals."""\n# keep me\n\n\ndef total(xs):  # sum it\n    t = 0\n    for x in xs:\n'
        "        t = add(t,   x)  # odd spacing stays\n    return t\n"
    )
    (repo / "acme/util.py").write_text(broken)
    proc = run_ect(repo, "fix", "--apply")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = (repo / "acme/util.py").read_text()
    assert text == broken.replace('"""Totals."""\n', '"""Totals."""\nfrom acme.core import add\n', 1)


def test_no_correct_fix_means_no_suggestion(make_repo) -> None:
    """`scael` is close to `scale`, but `scale` does not make the test pass: nothing is offered."""
    repo = make_repo(BASE)
    write(
        repo,
        {
            "acme/util.py": "from acme.core import scale\n\n\ndef triple(x):\n    return scael(x)\n",
            "tests/test_util.py": "from acme.util import triple\n\n\ndef test_triple():\n"
            "    assert triple(2) == 6\n",
        },
    )
    proc = run_ect(repo, "fix", "--json")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    [result] = json.loads(proc.stdout)["results"]
    assert result["failure"]["kind"] == "name"
    assert result["fixes"] == []
    assert any("scale" in r["title"] for r in result["rejected"])  # the wrong fix was tried and refused
    plain = run_ect(repo, "fix", "--apply")
    assert plain.returncode == 1
    assert "no verified fix" in plain.stdout
    assert "scael(x)" in (repo / "acme/util.py").read_text()


def test_deprecated_import_found_statically_and_fixed(make_repo) -> None:
    repo = make_repo(BASE)
    write(repo, {"acme/compat.py": "from acme.core import add as plus\n"})
    pyproject = (
        (repo / "pyproject.toml")
        .read_text()
        .replace(
            'moved = {"acme.legacy.add" = "acme.core.add"}',
            'deprecated = {"acme.compat.plus" = "acme.core.add"}',
        )
    )
    (repo / "pyproject.toml").write_text(pyproject)
    (repo / "acme/util.py").write_text("from acme.compat import plus\n" + BODY.format(call="plus(t, x)"))
    proc = run_ect(repo, "fix", "acme/util.py", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [result] = json.loads(proc.stdout)["results"]
    assert result["failure"]["kind"] == "moved"
    assert result["fixes"][0]["title"] == "Import `acme.core.add` instead of `acme.compat.plus`"
    assert "+from acme.core import add as plus" in result["fixes"][0]["diff"]


def test_clean_tree_has_nothing_to_fix(make_repo) -> None:
    repo = make_repo(BASE)
    proc = run_ect(repo, "fix")
    assert proc.returncode == 0
    assert proc.stdout.strip() == "nothing to fix"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("moved = 3", "'fix.moved' must be dict[str,str]"),
        ("colour = true", "unknown key 'fix.colour'"),
    ],
)
def test_bad_fix_config_is_one_line_error(make_repo, table: str, message: str) -> None:
    repo = make_repo(BASE)
    text = (
        (repo / "pyproject.toml").read_text().replace('moved = {"acme.legacy.add" = "acme.core.add"}', table)
    )
    (repo / "pyproject.toml").write_text(text)
    proc = run_ect(repo, "fix")
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_path_is_usage_error(make_repo) -> None:
    repo = make_repo(BASE)
    proc = run_ect(repo, "fix", "nope.py")
    assert proc.returncode == 2
    assert "no such file" in proc.stderr and "Traceback" not in proc.stderr


def test_keyword_rejected_inside_the_callee_is_fixed_at_the_call(make_repo) -> None:
    """The callee raises the TypeError itself (it checks `**kw`): the fix goes to the caller's line."""
    repo = make_repo(BASE)
    write(
        repo,
        {
            "acme/node.py": """
                class Node:
                    fields = ("lineno", "name")

                    def __init__(self, **kw):
                        for key in kw:
                            if key not in self.fields:
                                raise TypeError(f"unknown attribute {key!r}")
                        self.__dict__.update(kw)
            """,
            "acme/util.py": """
                from acme.node import Node


                def make(n):
                    first = Node(lineno=1, name=n)
                    return Node(lienno=first.lineno + 1, name=n)
            """,
            "tests/test_util.py": """
                from acme.util import make


                def test_make():
                    assert make("x").lineno == 2
            """,
        },
    )
    proc = run_ect(repo, "fix", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [result] = json.loads(proc.stdout)["results"]
    assert result["failure"]["kind"] == "keyword" and result["failure"]["path"] == "acme/util.py"
    assert result["fixes"][0]["title"] == "Change keyword `lienno=` to `lineno=`"


def test_moved_import_merges_into_the_existing_import() -> None:
    from ect.fix.edits import move_from_import

    merged = move_from_import(
        "from acme.core import scale\nfrom acme.legacy import add\n\nprint(add, scale)\n",
        "acme.util",
        False,
        "acme.legacy",
        "add",
        "acme.core",
        "add",
    )
    assert merged == "from acme.core import scale, add\n\nprint(add, scale)\n"
    already = move_from_import(
        "from acme.core import add\nfrom acme.legacy import add\n\nprint(add)\n",
        "acme.util",
        False,
        "acme.legacy",
        "add",
        "acme.core",
        "add",
    )
    assert already == "from acme.core import add\n\nprint(add)\n"  # not a second identical line


def test_moved_scan_reads_import_statements_only(tmp_path: Path) -> None:
    from ect.fix.engine import import_statements, scan_moved
    from ect.fix.settings import FixSettings

    source = "import os\nfrom acme.legacy import (\n    add,\n)\n" + "def f(x):\n    return x\n" * 20_000
    assert import_statements(source)[:2] == [(1, "import os"), (2, "from acme.legacy import ( add, )")]
    (tmp_path / "big.py").write_text(source)
    settings = FixSettings(moved={"acme.legacy.add": "acme.core.add"})
    [found] = scan_moved(tmp_path, ["big.py"], settings)
    assert (found.line, found.name) == (2, "acme.legacy.add")
    (tmp_path / "other.py").write_text(source.replace("acme.legacy", "elsewhere"))
    assert scan_moved(tmp_path, ["other.py"], settings) == []


@pytest.mark.parametrize(
    "warm", [True, pytest.param(False, marks=pytest.mark.slow)], ids=["warm-pytest", "cold-pytest"]
)
def test_a_test_that_hangs_after_a_candidate_fix_is_stopped_at_test_timeout(make_repo, warm: bool) -> None:
    """`ad` is misspelled; with the obvious fix `add`, the test reaches `add`, which never returns. The
    verification stops that test after `test_timeout` (not the fix's whole-run limit of 60 s), rejects
    the candidate naming the test, and leaves no test process behind."""
    import sys
    import time

    if not sys.platform.startswith("linux"):
        pytest.skip("counts processes through /proc")
    from ect.changes import Scope
    from ect.config import load_config
    from ect.fix.engine import FixEngine

    files = dict(BASE)
    files["pyproject.toml"] = BASE["pyproject.toml"] + "        [tool.ect]\n        test_timeout = 3\n"
    files["acme/core.py"] = "def add(a, b):\n    while True:\n        pass\n"
    repo = make_repo(files)
    (repo / "acme/util.py").write_text("from acme.core import add\n" + BODY.format(call="ad(t, x)"))
    cfg = load_config(repo)
    assert cfg.test_timeout == 3
    engine = FixEngine(repo, cfg)
    if warm:
        engine.use_warm_pytest().start()
    try:
        _, failures = engine.find_failures(Scope(mode="all"))
        [failure] = [f for f in failures if f.kind == "name" and f.name == "ad"]
        started = time.monotonic()
        res = engine.fix(failure)
        took = time.monotonic() - started
        assert not res.fixes, res.to_json()  # the candidate makes the test hang: never offered
        reasons = [why for title, why in res.rejected if "`add`" in title]
        assert reasons, res.to_json()
        assert "tests/test_util.py::test_total ran longer than 3 s (test_timeout)" in reasons[0], reasons
        assert took < 30, took  # the fix's own limit is 60 s per run
        time.sleep(0.3)
        assert processes_in(engine.scratch.path) == []  # the hung test was killed
    finally:
        engine.close()
