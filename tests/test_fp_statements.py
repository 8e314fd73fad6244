"""Top-level statements of a test module that reach one test function (`ect.fingerprints.statements`)."""

from __future__ import annotations

import importlib.util
import sys
import textwrap

from ect.fingerprints.statements import narrowed_statements, trace_module_import, untraced

MODULE = textwrap.dedent(
    """
    import functools
    import unittest

    import pytest

    LIMIT = len("abc")


    @pytest.mark.parametrize("x", [
        len("ab"),
    ])
    @pytest.mark.slow
    def test_narrowed(x, y=len("a")):
        assert x


    @register(len("xyz"))
    def test_registered():
        pass


    def test_aliased():
        pass


    also = test_aliased


    async def test_async(z=len("q")):
        pass


    def helper(w=len("w")):
        pass


    @pytest.mark.slow
    @unittest.skipIf(len("") > 0, "never")
    class TestNarrowedClass(unittest.TestCase):
        TABLE = len("table")

        def test_it(self):
            assert TestNarrowedClass.TABLE


    class Base:
        SHARED = len("shared")


    class TestSub(Base):
        pass


    @functools.total_ordering
    class TestDecorated:
        pass
    """
).encode()


def test_only_mark_decorated_test_functions_and_classes_named_once_are_narrowed() -> None:
    spans = narrowed_statements(MODULE)
    assert [name for _, _, name in spans] == ["test_narrowed", "test_async", "TestNarrowedClass", "TestSub"]
    start, end, _ = spans[0]
    lines = MODULE.decode().splitlines()
    assert lines[start - 1].startswith("@pytest.mark.parametrize") and "assert x" in lines[end - 1]


def test_a_mark_needs_pytest_imported_as_itself_and_a_syntax_error_narrows_nothing() -> None:
    spans = narrowed_statements(MODULE.replace(b"import pytest\n", b"from pytest import mark\n"))
    assert [name for _, _, name in spans] == ["test_async", "TestSub"]
    assert narrowed_statements(b"import pytest\ndef test_x(:\n") == []


def test_the_import_is_traced_statement_by_statement_and_tracing_stops_after_it(tmp_path) -> None:
    path = tmp_path / "test_sample.py"
    path.write_text(
        "import pytest\ntry:\n    import no_such_module\nexcept ImportError:\n    pass\nA = 1\n\n"
        "@pytest.mark.parametrize('x', [A + 1])\ndef test_one(x):\n    pass\n\nB = 2\n"
    )
    switched: list[str] = []

    def switch(ctx: str) -> str:
        if not switched or switched[-1] != ctx:
            switched.append(ctx)
        return ctx

    if sys.gettrace() is not None:  # under coverage or a debugger nothing is traced, by design
        assert trace_module_import(str(path), narrowed_statements(path.read_bytes()), "c:m", switch) is None
        return
    stop = trace_module_import(str(path), narrowed_statements(path.read_bytes()), "c:m", switch)
    assert stop is not None
    try:
        spec = importlib.util.spec_from_file_location("test_sample_traced", path)
        assert spec is not None and spec.loader is not None
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
    finally:
        stop()
    assert switched == ["c:m", "c:m::test_one", "c:m"]
    assert sys.gettrace() is None


def test_untraced_suspends_the_import_tracer_only(tmp_path) -> None:
    """pytest's assertion rewriting runs inside the import: it is kept out of ect's tracer (it ran
    2-3x slower under it), and another tracer (coverage, a debugger) is left alone."""
    seen: list[object] = []
    inner = untraced(lambda: seen.append(sys.gettrace()) or "done")
    if sys.gettrace() is not None:  # under coverage: its tracer is not ect's, so it stays
        tracer = sys.gettrace()
        assert inner() == "done" and seen == [tracer] and sys.gettrace() is tracer
        return
    path = tmp_path / "test_sample.py"
    path.write_text("import pytest\n\n@pytest.mark.parametrize('x', [1])\ndef test_one(x):\n    pass\n")
    stop = trace_module_import(str(path), narrowed_statements(path.read_bytes()), "c:m", lambda c: c)
    assert stop is not None
    ours = sys.gettrace()
    try:
        assert inner() == "done"
        assert sys.gettrace() is ours  # back on after the call
    finally:
        stop()
    assert seen == [None] and sys.gettrace() is None

    def other(frame: object, event: str, arg: object) -> None:
        return None

    sys.settrace(other)
    try:
        inner()
    finally:
        sys.settrace(None)
    assert seen == [None, other]


VALUES = textwrap.dedent(
    """
    import pytest


    def _make(n):
        return list(range(n))


    CASES = _make(3)
    WIDER: list = CASES + [9]
    SHARED = _make(2)
    UNUSED = _make(1)
    pytestmark = pytest.mark.slow
    a = _make(1); b = _make(2)


    def helper():
        return SHARED


    @pytest.mark.parametrize("c", CASES)
    def test_cases(c):
        assert b


    @pytest.mark.parametrize("w", WIDER)
    def test_wider(w):
        assert a


    class TestTable:
        def test_it(self):
            assert CASES
    """
).encode()


def test_a_module_level_value_reaches_the_tests_and_classes_that_name_it_directly_or_through_values() -> None:
    lines = VALUES.decode().splitlines()
    spans = [
        (lines[start - 1].split(" ")[0], names.split("\0")) for start, _, names in narrowed_statements(VALUES)
    ]
    # a helper reads SHARED (called from anywhere), nothing names UNUSED (a plugin may read it),
    # pytest reads pytestmark itself, and `a` and `b` share a line: the module's rule for them
    assert spans == [
        ("CASES", ["TestTable", "test_cases", "test_wider"]),
        ("WIDER:", ["test_wider"]),
        ('@pytest.mark.parametrize("c",', ["test_cases"]),
        ('@pytest.mark.parametrize("w",', ["test_wider"]),
        ("class", ["TestTable"]),
    ]


def test_a_recording_run_keeps_pytests_assertion_rewriting_out_of_the_tracer(make_repo) -> None:
    """Wired in ect's plugin: a real recording run (byte-code caches off, as in many CI images)
    rewrites the test module with the untraced `_rewrite_test`, and the narrowed statement is
    still attributed (only the changed parametrisation's test runs)."""
    from ect_testutil import git, run_ect

    test = """
        import pytest
        import _pytest.assertion.rewrite as rewrite

        from pkg.calc import double

        CASES = [double(1)]


        @pytest.mark.parametrize("x", CASES)
        def test_cases(x):
            assert x == 2


        def test_wrapped():
            assert getattr(rewrite._rewrite_test, "ect_untraced", False) is True
    """
    repo = make_repo(
        {
            "pkg/__init__.py": "",
            "pkg/calc.py": "def double(x):\n    return 2 * x\n",
            "tests/test_calc.py": textwrap.dedent(test),
            "pyproject.toml": '[tool.pytest.ini_options]\ntestpaths = ["tests"]\npythonpath = ["."]\n',
        }
    )
    env = {"PYTHONDONTWRITEBYTECODE": "1"}
    proc = run_ect(repo, "check", "--all", env=env)
    assert proc.returncode == 0 and "2 passed" in proc.stdout, proc.stdout + proc.stderr
    calc = repo / "pkg/calc.py"
    calc.write_text("def double(x):\n    return x + x\n")
    proc = run_ect(repo, "check", "--explain", env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "1 passed, 1 deselected" in out, out
    assert "test_cases" in out and "test_wrapped" not in out, out
    assert git(repo, "status", "--short") == " M pkg/calc.py\n"
