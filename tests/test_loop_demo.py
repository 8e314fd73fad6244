"""`ect demo`: the README's first command shows the loop on a throw-away repository."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_demo_selects_few_tests_explains_and_blocks_a_staged_error(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ect", "demo"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "TMPDIR": str(tmp_path)},
        timeout=120,
        check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "1 of 3 test files selected" in out
    assert "2 of 3 test files selected" in out
    assert "executed shop/prices.py::discount, which changed" in out
    assert "commit blocked" in out and "temporary checkout" in out
    assert list(tmp_path.iterdir()) == []  # the demo repository is removed
