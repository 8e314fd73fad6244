"""The literals digest of a constants read: blind to code, never blind to what a harvester keeps."""

from __future__ import annotations

import pytest

from ect.fingerprints import constants
from ect.fingerprints.constants import constants_path, describe, literals_changed, literals_digest, source_of

BASE = '''
"""Docstring 2000."""
LIMIT = 1000


def f(x):
    if x > LIMIT and x < 5000:
        return -250
    return f"{x} over {4000}"
'''

# (edited source, whether some harvester can see the edit, whether hypothesis' can)
EDITS = [
    (BASE.replace("x > LIMIT and", "x >= LIMIT or"), False, False),
    (BASE.replace("return -250", "return (-250)"), False, False),
    (BASE + "\n\ndef g(y):\n    return f(y)\n", False, False),
    (BASE.replace("1000", "1001"), True, True),
    (BASE.replace("-250", "250"), True, True),  # hypothesis keeps -250 for `-250`
    (BASE.replace("5000", "2000"), True, True),  # 2000 was only in the docstring, which hypothesis skips
    (BASE.replace("{4000}", "{4001}"), True, False),  # skipped inside f-strings today
    (BASE.replace("and x < 5000", ""), True, True),
    (BASE.replace("x > LIMIT", "x > 50"), True, False),  # hypothesis skips -99..99
    (BASE.replace("Docstring 2000", "Docstring 3000"), True, False),
    (BASE.replace("over", "above"), True, False),  # in the f-string
    (BASE + '\nNAME = "a string of more than twenty characters"\n', True, False),
    (BASE + '\nNAME = "twenty characters ok"\n', True, True),
]


def digest(source: str) -> str:
    return literals_digest(source.encode())


@pytest.mark.parametrize(("edited", "visible", "kept"), EDITS)
def test_the_digest_changes_exactly_when_the_literals_or_their_context_do(
    edited: str, visible: bool, kept: bool
) -> None:
    every = digest(edited).partition("+")[0] != digest(BASE).partition("+")[0]
    assert every is visible
    # what hypothesis keeps, when the recording saw its filter match: a verified digest
    assert literals_changed(digest(BASE), digest(edited)) is kept
    # a recording without that check (no hypothesis, another version) is judged by every literal
    assert literals_changed(digest(BASE).partition("+")[0], digest(edited)) is visible


@pytest.mark.parametrize(("edited", "visible", "kept"), EDITS)
def test_the_kept_digest_changes_exactly_when_what_hypothesis_harvests_does(
    edited: str, visible: bool, kept: bool
) -> None:
    constants_ast = pytest.importorskip("hypothesis.internal.constants_ast")
    harvest = constants_ast._constants_from_source
    assert (harvest(edited, limit=True) != harvest(BASE, limit=True)) is kept
    assert literals_changed(digest(BASE), digest(edited)) is kept


def test_the_replica_is_trusted_only_when_the_loaded_hypothesis_keeps_the_same(monkeypatch) -> None:
    constants_ast = pytest.importorskip("hypothesis.internal.constants_ast")
    assert constants._check_harvester(constants_ast)
    assert not constants._check_harvester(None)  # no hypothesis in the process
    # a version that keeps small integers too, or has another limit: every literal counts again
    monkeypatch.setattr(constants_ast.ConstantVisitor, "CONSTANTS_LIMIT", 4096)
    assert not constants._check_harvester(constants_ast)
    monkeypatch.undo()
    keep = constants_ast.ConstantVisitor._add_constant

    def keeps_small_ints(self, value):  # what a later hypothesis might do
        if type(value) is int and -100 < value < 100:
            self.constants.add(value)
            return None
        return keep(self, value)

    monkeypatch.setattr(constants_ast.ConstantVisitor, "_add_constant", keeps_small_ints)
    assert not constants._check_harvester(constants_ast)
    recorded = constants.combined("c", BASE.encode(), kept=constants._check_harvester(constants_ast))
    assert literals_changed(recorded.partition(":")[2], digest(BASE.replace("x > LIMIT", "x > 50")))


def test_a_module_at_hypothesis_limit_is_judged_by_every_literal() -> None:
    many = "".join(f"C{i} = {1000 + i}\n" for i in range(1100))
    assert "+" not in digest(many)  # past 1024 constants hypothesis keeps none: order would decide
    assert literals_changed(digest(many), digest(many.replace("= 1005", "= 1005 + 0 * 3")))
    huge = "X = 5000\n" + "# padding\n" * 60_000  # over 512 KiB: hypothesis reads nothing
    assert not literals_changed(digest(huge), digest(huge.replace("5000", "6000")))


def test_a_source_that_does_not_parse_is_judged_by_its_bytes() -> None:
    broken = b"def f(:\n    return 1\n"
    assert literals_digest(broken) != literals_digest(broken + b"# comment\n")
    assert literals_digest(b"(" * 10_000 + b")" * 10_000).startswith("bytes-")  # too deep for the parser


def test_a_constants_read_is_a_pseudo_path_of_its_source() -> None:
    path = constants_path("pkg/mod.py")
    assert source_of(path) == "pkg/mod.py" and source_of("pkg/mod.py") is None
    assert describe(path) == "the literal constants of pkg/mod.py"


@pytest.mark.parametrize(("edited", "visible", "kept"), EDITS)
@pytest.mark.parametrize("kind", ["integer", "float", "bytes", "string"])
def test_a_read_of_one_kind_changes_exactly_when_hypothesis_harvests_other_constants_of_it(
    edited: str, visible: bool, kept: bool, kind: str
) -> None:
    # a test that draws integers only can draw a harvested integer, never a harvested string
    constants_ast = pytest.importorskip("hypothesis.internal.constants_ast")
    harvest = constants_ast._constants_from_source
    before = harvest(BASE, limit=True).set_for_type(kind)
    after = harvest(edited, limit=True).set_for_type(kind)
    recorded = constants.combined("c", BASE.encode(), kept=True, kind=kind).partition(":")[2]
    assert recorded.partition("+")[2].startswith(f"{kind}=")
    assert literals_changed(recorded, digest(edited)) is (set(before) != set(after))


def test_a_constants_read_of_one_kind_names_its_kind() -> None:
    path = constants_path("pkg/mod.py", "integer")
    assert source_of(path) == "pkg/mod.py" and constants.kind_of(path) == "integer"
    assert constants.kind_of(constants_path("pkg/mod.py")) is None
    assert describe(path) == "the literal constants of pkg/mod.py (integer draws)"
