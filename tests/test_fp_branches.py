"""A function's branches are blocks of their own (`ect.fingerprints.branches`): units and real runs."""

from __future__ import annotations

import ast
import textwrap

import pytest
from fp_testutil import FP_SAMPLE, LOG_HELPER, check, edit

from ect.fingerprints.blocks import parse_blocks
from ect.fingerprints.branches import differs, expand, hit, reached, spread
from ect.fingerprints.recorder import instrument

SOURCE = textwrap.dedent(
    '''
    LIMIT = 10


    def classify(x):
        """doc"""
        y = 1
        if x > 0:
            return "pos"
        elif x < 0:
            try:
                return int("neg")
            except ValueError:
                return "neg"
        for i in range(3):
            if i == 2:
                y += i
        return LIMIT + y
    '''
)


def changed(old: str, new: str) -> set[str]:
    before, after = parse_blocks(old).blocks, parse_blocks(new).blocks
    return {k for k in {*before, *after} if before.get(k) != after.get(k)}


def test_each_branch_body_has_its_own_checksum_and_the_function_keeps_the_rest() -> None:
    names = set(parse_blocks(SOURCE).blocks)
    # the if body, its orelse (the elif), the elif's body, its except handler, `if i == 2` in the loop
    assert names == {"classify", *(f"classify|{n}" for n in range(1, 6))}
    assert changed(SOURCE, SOURCE.replace('return "pos"', 'return "POS"')) == {"classify|1"}
    assert changed(SOURCE, SOURCE.replace('return "neg"\n', 'return "NEG"\n')) == {"classify|4"}
    assert changed(SOURCE, SOURCE.replace("y += i", "y -= i")) == {"classify|5"}
    # a condition, a loop, a statement every call runs: the function
    assert changed(SOURCE, SOURCE.replace("x > 0", "x >= 0")) == {"classify"}
    assert changed(SOURCE, SOURCE.replace("range(3)", "range(4)")) == {"classify"}
    assert changed(SOURCE, SOURCE.replace("y = 1", "y = 2")) == {"classify"}
    # a try body runs with the branch around it; the elif's condition is the orelse's
    assert changed(SOURCE, SOURCE.replace('int("neg")', 'int("-1")')) == {"classify|3"}
    assert changed(SOURCE, SOURCE.replace("x < 0", "x < -1")) == {"classify|2"}


@pytest.mark.parametrize(
    "edit_to",
    [
        'LIMIT = "pos"',  # assigning LIMIT makes it local in the whole function: other calls fail
        'yield "pos"',  # a generator now, whichever branch a call takes
        "import os",  # a new local name
        "return lambda: y",  # y becomes a cell variable
        "global y",  # y was assigned before: no longer compiles, so the function is one block
    ],
)
def test_a_branch_that_changes_the_functions_scope_changes_the_function(edit_to: str) -> None:
    assert "classify" in changed(SOURCE, SOURCE.replace('return "pos"', edit_to))


def test_a_global_declared_in_a_branch_for_a_name_only_read_changes_only_that_branch() -> None:
    # LIMIT was already global in every branch (only read): the other branches behave the same
    assert changed(SOURCE, SOURCE.replace('return "pos"', "global LIMIT")) == {"classify|1"}


def test_the_recorder_marks_each_branch_and_nested_functions_mark_the_whole_block() -> None:
    src = SOURCE + "\n\ndef make(x):\n    if x:\n        return lambda: x\n    return None\n"
    tree = ast.parse(src)
    names = instrument(tree)
    assert {"classify|1", "classify|5", "make|1", "make|*"} <= set(names)
    assert "classify|*" not in names  # no nested function: nothing runs later on its values
    code = compile(tree, "<m>", "exec")
    hits = bytearray(len(names))
    ns: dict[str, object] = {"__ect_hits__": hits}
    exec(code, ns)

    def ran() -> set[str]:
        found = {names[i] for i, v in enumerate(hits) if v}
        hits[:] = bytes(len(hits))
        return found

    ran()
    assert ns["classify"](-1) == "neg"  # type: ignore[operator]
    assert ran() == {"classify", "classify|2", "classify|3", "classify|4"}  # returns in the handler
    assert ns["classify"](0) == 13  # type: ignore[operator]
    assert ran() == {"classify", "classify|2", "classify|5"}
    later = ns["make"](1)  # type: ignore[operator]
    assert ran() == {"make", "make|1"}
    assert later() == 1
    assert ran() == {"make", "make|*"}  # the lambda: any change of make may reach its result


def test_a_change_reaches_the_tests_of_its_branch_of_its_function_and_a_closures_callers() -> None:
    now = expand(frozenset({"f|2"}))
    assert hit(now, "f|2") and hit(now, "f|*")
    assert not hit(now, "f") and not hit(now, "f|1")
    whole = expand(frozenset({"f"}))
    assert hit(whole, "f|1") and hit(whole, "f|*") and hit(whole, "f")  # a branch runs inside f
    old, new = {"f": "a", "f|1": "b", "f|2": "c"}, {"f": "a", "f|1": "b", "f|2": "X"}
    assert differs(old, new, "f|*") and differs(old, new, "f|2")
    assert not differs(old, new, "f|1") and not differs(old, new, "f")
    assert differs({"f": "a", "f|1": "b"}, {"f": "Z", "f|1": "b"}, "f|1")


MAPS = [
    ({"f": "a", "f|1": "b", "f|2": "c", "g": "d"}, {"f": "a", "f|1": "b", "f|2": "X", "g": "d"}),
    ({"f": "a", "f|1": "b", "g": "d"}, {"f": "Z", "f|1": "b", "g": "d"}),  # the function itself
    ({"f": "a", "f|1": "b"}, {"f": "a"}),  # a branch removed
    ({"f": "a"}, {"f": "a", "f|1": "b", "h": "n"}),  # a branch and a function added
    ({"f": "a", "g": "d"}, {"f": "a", "g": "d"}),  # nothing changed
]
NAMES = ["f", "f|1", "f|2", "f|3", "f|*", "g", "g|1", "g|*", "h", "h|*", "gone", "gone|1"]


@pytest.mark.parametrize(("old", "new"), MAPS)
def test_the_changed_set_says_what_differs_says_for_every_name(old, new) -> None:
    """`reached` is the set form of `differs` that selection uses for speed: it must agree on
    every name, also on names in neither map (a branch the recording saw but no map has)."""
    changed = reached(old, new)
    for name in NAMES:
        assert changed.differs(old, new, name) == differs(old, new, name), name
    assert changed.names <= changed.known
    # the same sets for a change given as names (`Reach`, which adds blocks that read a changed name)
    keys = old.keys() | new.keys()
    for given in (frozenset({"f"}), frozenset({"f|1", "g"}), frozenset()):
        for name in NAMES:
            if name in changed.known:  # the names `Reach` decides with the set
                assert (name in spread(given, keys)) == hit(expand(given), name), (given, name)


BRANCHY = {
    "shop/grade.py": (
        "PASS_MARK = 50\n\n\ndef grade(score):\n    if score >= PASS_MARK:\n        return 'pass'\n"
        "    else:\n        return 'fail'\n\n\ndef scaler(factor):\n    if factor > 1:\n"
        "        return lambda s: s * factor\n    return lambda s: s\n"
    ),
    "tests/test_grade.py": LOG_HELPER
    + (
        "from shop.grade import grade, scaler\n\n\ndef test_pass():\n    _ran('test_pass')\n"
        "    assert grade(70) == 'pass'\n\n\ndef test_fail():\n    _ran('test_fail')\n"
        "    assert grade(20) == 'fail'\n\n\nMADE = []\n\n\ndef test_make():\n    _ran('test_make')\n"
        "    MADE.append(scaler(2))\n\n\ndef test_double():\n    _ran('test_double')\n"
        "    assert MADE[0](3) == 6\n"
    ),
}


@pytest.fixture
def branchy(make_repo, ran_log):
    repo = make_repo({**FP_SAMPLE, **BRANCHY})
    assert check(repo, "--all").returncode == 0
    assert {"test_pass", "test_fail", "test_make", "test_double"} <= set(ran_log())
    return repo


def test_a_change_in_one_branch_runs_only_the_tests_that_entered_it(branchy, ran_log) -> None:
    edit(branchy, "shop/grade.py", "return 'fail'", "return 'FAIL'")
    proc = check(branchy, "--explain")
    assert proc.returncode == 1, proc.stdout
    assert ran_log() == ["test_fail"], proc.stdout
    assert "FAILED tests/test_grade.py::test_fail" in proc.stdout
    assert "test_fail: executed shop/grade.py::grade (branch 2), which changed" in proc.stdout

    # the condition every call runs: both tests
    edit(branchy, "shop/grade.py", "return 'FAIL'", "return 'fail'")
    edit(branchy, "shop/grade.py", "score >= PASS_MARK", "score > PASS_MARK + 30")
    proc = check(branchy)
    assert proc.returncode == 1, proc.stdout
    assert ran_log() == ["test_fail", "test_pass"], proc.stdout


def test_a_branch_that_makes_a_global_local_reaches_the_other_branches_tests(branchy, ran_log) -> None:
    # `PASS_MARK = ...` in the else branch makes PASS_MARK local to grade: grade(70) now raises
    # UnboundLocalError in the condition, though test_pass never enters the else branch
    edit(branchy, "shop/grade.py", "        return 'fail'", "        PASS_MARK = 0\n        return 'fail'")
    proc = check(branchy)
    assert proc.returncode == 1, proc.stdout
    assert ran_log() == ["test_fail", "test_pass"], proc.stdout
    assert "FAILED tests/test_grade.py::test_pass" in proc.stdout


def test_a_closure_made_in_a_branch_reaches_a_later_test_calling_it(branchy, ran_log) -> None:
    # test_make makes the lambda (it runs scaler's branch); test_double only calls it
    edit(branchy, "shop/grade.py", "return lambda s: s * factor", "return lambda s: s * factor + 1")
    proc = check(branchy, "--explain")
    assert proc.returncode == 1, proc.stdout
    assert ran_log() == ["test_double", "test_make"], proc.stdout
    assert "FAILED tests/test_grade.py::test_double" in proc.stdout
    assert "test_double: executed shop/grade.py::scaler (a function or lambda it made), which changed" in (
        proc.stdout
    )


def test_checksums_do_not_repeat_the_compilers_warnings(recwarn) -> None:
    # the compile step reports `x is 1` once; selection compiling the file again stays quiet
    blocks = parse_blocks("def f(x):\n    if x is 1:\n        return 'a'\n    return 'b'\n").blocks
    assert set(blocks) == {"f", "f|1"}
    assert not [w for w in recwarn if issubclass(w.category, SyntaxWarning)]
