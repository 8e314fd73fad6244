"""The literals digest of a constants read: blind to code, never blind to what a harvester keeps."""

from __future__ import annotations

import pytest

from ect.fingerprints.constants import constants_path, describe, literals_digest, source_of

BASE = '''
"""Docstring 2000."""
LIMIT = 1000


def f(x):
    if x > LIMIT and x < 5000:
        return -250
    return f"{x} over {4000}"
'''

# (edited source, whether a harvester can see the edit)
EDITS = [
    (BASE.replace("x > LIMIT and", "x >= LIMIT or"), False),
    (BASE.replace("return -250", "return (-250)"), False),
    (BASE + "\n\ndef g(y):\n    return f(y)\n", False),
    (BASE.replace("1000", "1001"), True),
    (BASE.replace("-250", "250"), True),  # hypothesis keeps -250 for `-250`
    (BASE.replace("5000", "2000"), True),  # 2000 was only in the docstring, which hypothesis skips
    (BASE.replace("{4000}", "{4001}"), True),  # skipped inside f-strings today, kept in the digest
    (BASE.replace("and x < 5000", ""), True),
]


@pytest.mark.parametrize(("edited", "visible"), EDITS)
def test_the_digest_changes_exactly_when_the_literals_or_their_context_do(edited: str, visible: bool) -> None:
    assert (literals_digest(edited.encode()) != literals_digest(BASE.encode())) is visible


@pytest.mark.parametrize(("edited", "visible"), EDITS)
def test_whatever_hypothesis_harvests_changes_only_with_the_digest(edited: str, visible: bool) -> None:
    constants_ast = pytest.importorskip("hypothesis.internal.constants_ast")
    harvest = constants_ast._constants_from_source
    if harvest(edited, limit=True) != harvest(BASE, limit=True):
        assert literals_digest(edited.encode()) != literals_digest(BASE.encode())


def test_a_source_that_does_not_parse_is_judged_by_its_bytes() -> None:
    broken = b"def f(:\n    return 1\n"
    assert literals_digest(broken) != literals_digest(broken + b"# comment\n")
    assert literals_digest(b"(" * 10_000 + b")" * 10_000).startswith("bytes-")  # too deep for the parser


def test_a_constants_read_is_a_pseudo_path_of_its_source() -> None:
    path = constants_path("pkg/mod.py")
    assert source_of(path) == "pkg/mod.py" and source_of("pkg/mod.py") is None
    assert describe(path) == "the literal constants of pkg/mod.py"
