"""A generated module over `max_file_size` is not instrumented while recording, and a change to it
still selects every test that imports it (import graph), with the reason in `--explain`."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from ect_testutil import SAMPLE, git, run_ect

LIMIT = 100_000  # bytes: the test's max_file_size, so that a ~0.5 MB file stands for an 18 MB one
LINE = "VALUES_%d = [" + ", ".join(str(i) for i in range(40)) + "]\n"
TOTAL = "\n\ndef total():\n    return VALUES_0[3]\n"


def generated(n_lines: int, tail: str) -> str:
    return "".join(LINE % i for i in range(n_lines)) + tail


@pytest.mark.slow
def test_huge_module_is_not_recorded_and_a_change_selects_its_importers(make_repo) -> None:
    files = {
        **SAMPLE,
        "ect.toml": f"max_file_size = {LIMIT}\n",
        "tests/test_generated.py": "from acme.generated import total\n\n\ndef test_total():\n"
        "    assert total() == 3\n",
    }
    repo: Path = make_repo(files)
    big = repo / "acme/generated.py"
    big.write_text(generated(3000, TOTAL))  # ~0.5 MB
    assert big.stat().st_size > 4 * LIMIT
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "generated table")

    proc = run_ect(repo, "check", "--all")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with sqlite3.connect(repo / ".ect" / "fingerprints.db") as conn:
        versions = {row[0] for row in conn.execute("SELECT DISTINCT path FROM versions")}
        recorded = {row[0] for row in conn.execute("SELECT nodeid FROM tests")}
    assert "acme/core.py" in versions, versions  # the recording ran and instrumented the rest
    assert "acme/generated.py" not in versions, versions  # the huge module was not traced
    assert "tests/test_generated.py::test_total" in recorded

    big.write_text(generated(3000, TOTAL.replace("VALUES_0[3]", "VALUES_0[4]")))  # breaks test_total
    proc = run_ect(repo, "check", "--explain")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "FAILED tests/test_generated.py::test_total" in out, out
    assert "acme/generated.py: over max_file_size (100000 bytes), so not fingerprinted" in out, out
    assert "  tests/test_generated.py\n" in out, out
    assert "Traceback" not in out
