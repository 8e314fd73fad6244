"""Module-level changes narrowed to the code that reads the names they bind (`ect.fingerprints.skeleton`)."""

from __future__ import annotations

import textwrap

import pytest
from ect_testutil import run_ect
from fp_testutil import FAST, LOG_HELPER, check, edit

from ect.fingerprints.skeleton import find_readers, module_use, read_in, skeleton_delta


def _delta(old: str, new: str):
    return skeleton_delta(textwrap.dedent(old).encode(), textwrap.dedent(new).encode())


BASE = """
    import re
    LIMIT = 3
    DOUBLE = LIMIT * 2
    PATTERN = re.compile("a+")

    def uses_limit():
        return LIMIT

    def uses_double():
        return DOUBLE

    def other(x=1):
        return x

    class Box:
        size = 1
        area = size * size

        def grow(self):
            return self.size + 1
"""


@pytest.mark.parametrize(
    ("old", "new", "names", "blocks"),
    [
        ("LIMIT = 3", "LIMIT = 4", {"LIMIT", "DOUBLE"}, {"uses_limit", "uses_double"}),
        ("def other(x=1):", "def other(x=2):", {"other"}, {"other"}),
        ('re.compile("a+")', 're.compile("b+")', {"PATTERN"}, set()),
        ("DOUBLE = LIMIT * 2", "pass", {"DOUBLE"}, {"uses_double"}),  # a dropped binding
        ("size = 1", "size = 2", {"size", "area"}, {"Box.grow"}),  # a plain class's attribute
        ("    size = 1", "    size = LIMIT", {"size", "area"}, {"Box.grow"}),
        # a statement added or removed whole: only what reads its names (nothing read a new one)
        (
            "def other(x=1):",
            "def added(y=(1, 2)) -> int:\n        return 1\n\n    def other(x=1):",
            {"added"},
            set(),
        ),
        (
            "    def other(x=1):\n        return x\n",
            "",
            {"other"},
            set(),
        ),  # callers that ran it ran its block
        ("LIMIT = 3", "LIMIT = 3\n    EXTRA = LIMIT + 1", {"EXTRA"}, set()),
        (
            "LIMIT = 3",
            "LIMIT = 3\n    EXTRA = 1\n    def uses_extra():\n        return EXTRA",
            {"EXTRA", "uses_extra"},
            {"uses_extra"},
        ),
        ("DOUBLE = LIMIT * 2", "", {"DOUBLE"}, {"uses_double"}),
        ("LIMIT = 3", "LIMIT = 3\n    __all__ = ['LIMIT']", {"__all__"}, set()),  # unless star-imported
        # a def replaced in place by one of another name: the old one removed, the new one added
        (
            "def uses_double():\n        return DOUBLE",
            "def halve():\n        return 1",
            {"uses_double", "halve"},
            set(),
        ),
    ],
)
def test_a_pure_binding_or_a_default_reaches_only_what_reads_it(old, new, names, blocks) -> None:
    found = _delta(BASE, BASE.replace(old, new))
    assert found is not None
    assert set(found.names) == names
    assert set(found.blocks) == blocks


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("LIMIT = 3", "LIMIT = int(input())"),  # a call that is not a pure builtin
        ("LIMIT = 3", "LIMIT = other(3)"),  # project code at import time
        ("class Box:", "@dataclass\n    class Box:"),  # a decorator reads the class body
        ("class Box:", "class Box(metaclass=Meta):"),  # so does a metaclass
        ("class Box:", "class Box(Model):"),  # and a base's __init_subclass__ or metaclass
        ("size = 1", "size: int = 2"),  # __annotations__
        ("area = size * size", "area = compute(size)"),  # a class-level call
        ("def grow(self):", "def grow(self, by=size):"),  # a method's default
        ("LIMIT = 3", "LIMIT = 3\nprint(LIMIT)"),  # a statement added that runs code
        ("def other(x=1):", "@cache\n    def added():\n        pass\n    def other(x=1):"),  # a decorator
        ("def other(x=1):", "def added(x=make()):\n        pass\n    def other(x=1):"),  # a default's call
        ("def other(x=1):", "def added(x: make() = 1):\n        pass\n    def other(x=1):"),
        ("def other(x=1):", "class Added:\n        pass\n    def other(x=1):"),  # a class may register
        ("import re", "import re\n    import json"),  # an import runs the imported module
        ("LIMIT = 3", "LIMIT = 3\n    EXTRA: int = 1"),  # __annotations__
        ("LIMIT = 3", "LIMIT = 3\n    def other():\n        pass"),  # a second def of a name
        # a binding dropped that the module level still reads: importing the module fails
        ("LIMIT = 3", "pass"),
        ("LIMIT = 3", ""),
        ("    def other(x=1):\n        return x\n", "OTHER = other\n"),
        ("def other(x=1):", "def other(x: int = 1):"),  # annotations are introspected
        ("def other(x=1):", "@app.command()\ndef other(x=2):"),  # decorators may read defaults
        ("import re", "import re\n__version__ = '1'"),
        ("LIMIT = 3", "LIMIT = 4\nglobals()['X'] = 1"),  # the module reads its own namespace
    ],
)
def test_other_module_level_changes_keep_the_whole_module_rule(old, new) -> None:
    assert _delta(BASE, BASE.replace(old, new)) is None


CONSTRUCTED = """
    import datetime
    from datetime import timedelta
    from decimal import Decimal as D

    HOUR = timedelta(hours=1)
    EPOCH = datetime.date(1970, 1, 1)
    TAX = D("0.2")

    def uses_hour():
        return HOUR
"""


@pytest.mark.parametrize(
    ("old", "new", "pure"),
    [
        ("timedelta(hours=1)", "timedelta(hours=2)", True),
        ("date(1970, 1, 1)", "date(1970, 1, 2)", True),
        ('D("0.2")', 'D("0.3")', False),  # an alias: it may be anything
        ("date(1970, 1, 1)", "date.today()", False),  # the clock is not a value
        ("timedelta(hours=1)", "timedelta(hours=len(input()))", False),  # arguments are judged too
    ],
)
def test_standard_library_value_constructors_are_pure_unless_rebound(old, new, pure) -> None:
    found = _delta(CONSTRUCTED, CONSTRUCTED.replace(old, new))
    assert (found is not None) is pure
    rebound = CONSTRUCTED + "\ndef later():\n    global timedelta\n    timedelta = print\n"
    assert _delta(rebound, rebound.replace("hours=1", "hours=2")) is None


def test_a_changed_name_read_by_a_decorator_or_class_body_keeps_the_whole_module_rule() -> None:
    src = BASE + "\n@register(LIMIT)\ndef hooked():\n    return 1\n"
    assert _delta(src, src.replace("LIMIT = 3", "LIMIT = 4")) is None
    assert _delta("X = 1\nclass C(object):\n    y = X\n", "X = 2\nclass C(object):\n    y = X\n") is None
    # a star import may shadow any builtin: no call counts as pure
    star = "from os import *\nX = len('ab')\n"
    assert _delta(star, star.replace("'ab'", "'abc'")) is None
    # nor once a function body rebinds it (`global len` would reach the module's own call)
    shadow = "X = len('ab')\n\ndef f():\n    global len\n    len = print\n"
    assert _delta(shadow, shadow.replace("'ab'", "'abc'")) is None
    assert _delta("X = len('ab')\n", "X = len('abc')\n") is not None


def test_readers_are_found_by_name_alias_string_and_dynamic_access() -> None:
    files = {
        "pkg/reexport.py": b"from pkg.config import LIMIT\n",  # a re-export reads nothing
        "pkg/alias.py": b"from pkg.config import LIMIT as CAP\n\ndef f():\n    return CAP\n",
        "pkg/attr.py": b"from pkg import config\n\ndef g():\n    return config.LIMIT\n",
        "pkg/dyn.py": b"def h(mod, name):\n    return getattr(mod, name), 'LIMIT'\n",
        "pkg/text.py": b"def k(mod):\n    return getattr(mod, 'LIMIT')\n",
        "pkg/top.py": b"from pkg.config import LIMIT\nHALF = LIMIT // 2\n",
        "pkg/memo.py": b"import functools\n@functools.lru_cache\ndef m():\n    return LIMIT\n",
        "pkg/none.py": b"def n():\n    return 1\n",
        "pkg/broken.py": b"def (:\n  LIMIT\n",
    }
    found = find_readers(files.items(), {"LIMIT", "OTHER"})
    assert set(found) == {
        "pkg/alias.py",
        "pkg/attr.py",
        "pkg/dyn.py",
        "pkg/text.py",
        "pkg/top.py",
        "pkg/memo.py",
        "pkg/broken.py",
    }
    assert found["pkg/alias.py"].blocks == {"f": {"LIMIT"}}  # CAP is LIMIT
    assert not found["pkg/alias.py"].skeleton
    assert found["pkg/attr.py"].blocks == {"g": {"LIMIT"}}
    assert found["pkg/dyn.py"].blocks == {"h": {"LIMIT", "OTHER"}}  # a computed name: any of them
    assert found["pkg/top.py"].skeleton == {"LIMIT"} and not found["pkg/top.py"].blocks
    assert found["pkg/memo.py"].skeleton == {"LIMIT"}  # a memoised result outlives the test that computed it
    assert found["pkg/broken.py"].skeleton == {"LIMIT", "OTHER"}  # cannot tell: the whole file
    assert read_in(b"x = 1\n", {"LIMIT"}) == (None, {})
    # in a test module: only the test functions that name it read it, unless a helper does
    only = read_in(b"def test_a():\n    return LIMIT\n\ndef test_b():\n    pass\n", {"LIMIT"})[0]
    assert only is not None and only.only_tests and set(only.blocks) == {"test_a"}
    helper = b"def helper():\n    return LIMIT\n\ndef test_b():\n    return helper()\n"
    assert not read_in(helper, {"LIMIT"})[0].only_tests
    called = b"def test_a():\n    return LIMIT\n\ndef test_b():\n    test_a()\n"
    assert not read_in(called, {"LIMIT"})[0].only_tests


@pytest.mark.parametrize(
    ("source", "escapes", "star"),
    [
        (b"from pkg import config\nx = config.LIMIT\n", False, False),
        (b"import pkg.config as c\ndef f():\n    return c.LIMIT\n", False, False),
        (b"from pkg import config\napp.from_object(config)\n", True, False),  # passed on
        (b"from . import config\nsettings = vars(config)\n", False, False),  # a dynamic read instead
        (b"from . import config\nsettings = [config]\n", True, False),
        (b"from pkg.config import *\n", False, True),
        (b"from pkg.config import LIMIT\n", False, False),  # a name, not the module
        (b"import pkg.config as c\nx = [c\n", True, False),  # does not parse: cannot tell
    ],
)
def test_the_module_object_escapes_when_used_other_than_by_attribute(source, escapes, star) -> None:
    assert module_use(source, ["pkg.config"]) == (escapes, star)


PKG = {
    "pyproject.toml": """
        [project]
        name = "calc"
        version = "0.1.0"
        [tool.pytest.ini_options]
        testpaths = ["tests"]
        pythonpath = ["."]
    """,
    "calc/__init__.py": "from calc.config import LIMIT, name\n",
    "calc/config.py": """
        LIMIT = 3
        _SCALE = {"a": 1, "b": 2}
        BOTH = (LIMIT, len(_SCALE))


        def name():
            return "calc"


        def capped(x):
            return min(x, LIMIT)


        def scale(k, factor=1):
            return _SCALE[k] * factor


        class Unit(object):
            SYMBOL = "m"

            def show(self, x):
                return f"{x}{self.SYMBOL}"
    """,
    "calc/report.py": """
        from calc.config import LIMIT as CAP


        def header():
            return f"limit {CAP}"
    """,
    "tests/test_calc.py": LOG_HELPER
    + """
import calc
from calc import config, report


def test_capped():
    _ran("test_capped")
    assert config.capped(10) == 3


def test_header():
    _ran("test_header")
    assert report.header() == "limit 3"


def test_name():
    _ran("test_name")
    assert calc.name() == "calc"


def test_scale():
    _ran("test_scale")
    assert config.scale("b") == 2


def test_unit():
    _ran("test_unit")
    assert config.Unit().show(2) == "2m"


def test_limit():
    _ran("test_limit")
    assert config.LIMIT == 3  # read by this test function alone: the other tests here do not run
""",
    "tests/test_dynamic.py": LOG_HELPER
    + """
from calc import config


def test_every_constant():
    _ran("test_every_constant")
    assert {k: getattr(config, k) for k in ("LIMIT", "BOTH")} == {"LIMIT": 3, "BOTH": (3, 2)}
""",
}


def _step(repo, ran_log, old, new, ran, code=0, *shown):
    """Edit calc/config.py, run `ect check --explain`: its exit code, the tests that ran (None:
    not read here), the lines it shows."""
    edit(repo, "calc/config.py", old, new)
    proc = check(repo, "--explain")
    assert proc.returncode == code, proc.stdout
    if ran is not None:
        assert ran_log() == ran, proc.stdout
    for line in shown:
        assert line in proc.stdout, proc.stdout
    return proc


def test_a_constant_change_runs_the_tests_that_read_it_and_catches_the_failure(make_repo, ran_log) -> None:
    repo = make_repo(PKG)
    assert check(repo, "--all").returncode == 0
    ran_log()
    edit(repo, "calc/config.py", "LIMIT = 3", "LIMIT = 4")
    proc = check(repo, "--explain")
    assert proc.returncode == 1, proc.stdout  # all three readers fail
    # test_name and test_scale imported the module but never read LIMIT (or BOTH)
    assert ran_log() == ["test_capped", "test_every_constant", "test_header", "test_limit"]
    assert "executed calc/config.py::capped, which reads BOTH, LIMIT" in proc.stdout
    assert "tests/test_calc.py::test_limit reads LIMIT" in proc.stdout
    assert "executed calc/report.py::header, which reads LIMIT" in proc.stdout  # through the alias CAP
    assert "tests/test_dynamic.py::test_every_constant reads" in proc.stdout
    edit(repo, "calc/config.py", "LIMIT = 4", "LIMIT = 3")
    assert check(repo).returncode == 0
    ran_log()

    # a private table read by one function; a default value read by its callers
    edit(repo, "calc/config.py", '"b": 2}', '"b": 5}')
    assert check(repo).returncode == 1
    assert ran_log() == ["test_every_constant", "test_scale"]  # BOTH depends on _SCALE
    edit(repo, "calc/config.py", '"b": 5}', '"b": 2}')
    assert check(repo).returncode == 0
    ran_log()
    edit(repo, "calc/config.py", "factor=1", "factor=2")
    proc = check(repo, "--explain")
    assert proc.returncode == 1
    # callers of scale ran it; test_every_constant reads the module by computed names
    assert ran_log() == ["test_every_constant", "test_scale"]
    edit(repo, "calc/config.py", "factor=2", "factor=1")
    assert check(repo).returncode == 0
    ran_log()

    # a plain class's attribute: the code that reads it (self.SYMBOL), not every importer
    edit(repo, "calc/config.py", 'SYMBOL = "m"', 'SYMBOL = "km"')
    proc = check(repo, "--explain")
    assert proc.returncode == 1
    assert ran_log() == ["test_every_constant", "test_unit"]
    assert "executed calc/config.py::Unit.show, which reads SYMBOL" in proc.stdout, proc.stdout
    edit(repo, "calc/config.py", 'SYMBOL = "km"', 'SYMBOL = "m"')
    assert check(repo).returncode == 0
    ran_log()

    # a function added: nothing read its name before (test_every_constant reads by computed names);
    # removed again, the module is as every test last passed with it: nothing runs
    doubled = "def doubled(x):\n    return 2 * x\n\n\n"
    _step(repo, ran_log, "def capped(x):", doubled + "def capped(x):", ["test_every_constant"])
    _step(repo, ran_log, doubled, "", [])
    # a function removed: the test that ran it runs (and fails), not every importer
    capped = "def capped(x):\n    return min(x, LIMIT)\n"
    _step(
        repo, ran_log, capped, "", ["test_capped", "test_every_constant"], 1,
        "test_capped: executed calc/config.py::capped, which was removed", "1 failed, 1 passed",
    )  # fmt: skip
    _step(repo, ran_log, "def scale(", capped + "\n\ndef scale(", [])  # as it last passed: nothing runs
    # one that a module re-exports (`from calc.config import LIMIT, name`): importing it fails
    edit(repo, "calc/config.py", 'def name():\n    return "calc"\n', "")
    proc = run_ect(repo, "check", "--explain", env=FAST)  # pytest shows the import error's traceback
    assert proc.returncode == 1, proc.stdout
    assert "2 of 2 test files selected" in proc.stdout, proc.stdout
    assert "module level of calc/__init__.py reads name" in proc.stdout, proc.stdout
    assert "2 errors during collection" in proc.stdout, proc.stdout
    edit(repo, "calc/config.py", "def capped(", 'def name():\n    return "calc"\n\n\ndef capped(')
    assert check(repo).returncode == 0
    ran_log()

    # `__all__` only steers `from calc.config import *`: no module star-imports it, so only code
    # that reads `__all__` (or computed names) can see it
    _step(repo, ran_log, "LIMIT = 3\n", 'LIMIT = 3\n__all__ = ["LIMIT", "capped"]\n', ["test_every_constant"])
    (repo / "calc/star.py").write_text("from calc.config import *\n")
    assert check(repo).returncode == 0
    ran_log()
    proc = _step(repo, ran_log, '"LIMIT", "capped"]', '"LIMIT"]', None)
    assert "calc/star.py star-imports it and its __all__ changed" in proc.stdout, proc.stdout
    assert len(ran_log()) == 7 and "7 passed" in proc.stdout, proc.stdout
    (repo / "calc/star.py").unlink()
    edit(repo, "calc/config.py", '__all__ = ["LIMIT"]\n', "")
    assert check(repo).returncode == 0
    ran_log()

    # a module named in a string may be read by name (settings modules): every importer
    (repo / "calc/loader.py").write_text('import importlib\nSETTINGS = "calc.config"\n')
    assert check(repo).returncode == 0
    ran_log()
    edit(repo, "calc/config.py", "LIMIT = 3", "LIMIT = 4")
    proc = check(repo, "--explain")
    assert proc.returncode == 1
    assert ran_log() == [
        "test_capped",
        "test_every_constant",
        "test_header",
        "test_limit",
        "test_name",
        "test_scale",
        "test_unit",
    ]
    assert "calc/loader.py mentions 'calc.config'" in proc.stdout


@pytest.mark.slow
def test_a_doctest_module_reruns_its_doctests_on_a_module_level_change(make_repo, ran_log) -> None:
    files = dict(PKG)
    files["pyproject.toml"] = files["pyproject.toml"].replace(
        'testpaths = ["tests"]', 'testpaths = ["tests", "calc"]\n        addopts = "--doctest-modules"'
    )
    files["calc/config.py"] = files["calc/config.py"].replace(
        "        LIMIT = 3\n", '        """\n        >>> LIMIT\n        3\n        """\n        LIMIT = 3\n'
    )
    repo = make_repo(files)
    assert check(repo, "--all").returncode == 0
    ran_log()
    edit(repo, "calc/config.py", "LIMIT = 3", "LIMIT = 4")
    proc = check(repo, "--explain")
    assert proc.returncode == 1
    assert "calc/config.py::calc.config" in proc.stdout + proc.stderr  # the doctest ran, and failed
    assert "a doctest of calc/config.py" in proc.stdout


def test_deltas_and_reads_survive_the_stores_format_and_a_bad_entry_means_compute_again() -> None:
    from ect.fingerprints.skeleton import delta_from_json, delta_to_json, read_from_json, read_to_json

    delta = skeleton_delta(b"A = 1\n\n\ndef f():\n    return A\n", b"A = 2\n\n\ndef f():\n    return A\n")
    assert delta is not None and delta.names == {"A"}
    assert delta_from_json(delta_to_json(delta)) == delta
    assert delta_from_json(delta_to_json(None)) is None  # the whole-module rule
    assert delta_from_json("not json") is None
    found = read_in(b"from m import A\nfrom m import A as B\n\n\ndef g():\n    return A\n", {"A"})
    assert found[0] is not None and found[0].blocks == {"g": {"A"}} and found[1] == {"B": {"A"}}
    assert read_from_json(read_to_json(found)) == found
    assert read_from_json("[1]") is None
