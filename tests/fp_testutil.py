"""Helpers for the fingerprint tests: a sample repository whose tests log their own names."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from pathlib import Path

from ect_testutil import run_ect

# pytest starts faster without the dev environment's auto-loaded plugins
FAST = {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}

LOG_HELPER = """
import os
def _ran(name):
    with open(os.environ.get("RAN_LOG", os.devnull), "a") as f:
        f.write(name + "\\n")
"""

FP_SAMPLE = {
    "pyproject.toml": """
        [project]
        name = "shop"
        version = "0.1.0"
        [tool.pytest.ini_options]
        testpaths = ["tests"]
        pythonpath = ["."]
    """,
    "shop/__init__.py": "",
    "shop/prices.py": """
        RATE = 2


        def net(x):
            return x * RATE


        def gross(x):
            return net(x) + 1


        def label(k):
            return f"{k}$"


        TABLE = {k: label(k) for k in range(3)}
    """,
    "shop/menu.py": """
        from pathlib import Path


        def load():
            return (Path(__file__).parent / "menu.txt").read_text().split()


        def count(items):
            return len(items)
    """,
    "shop/menu.txt": "tea coffee\n",
    "tests/test_prices.py": LOG_HELPER
    + """
from shop.prices import TABLE, gross, net


def test_net():
    _ran("test_net")
    assert net(3) == 6


def test_gross():
    _ran("test_gross")
    assert gross(3) == 7


def test_table():
    _ran("test_table")
    assert TABLE[1] == "1$"
""",
    "tests/test_menu.py": LOG_HELPER
    + """
from shop.menu import count, load


def test_load():
    _ran("test_load")
    assert load() == ["tea", "coffee"]


def test_count():
    _ran("test_count")
    assert count([1, 2]) == 2
""",
}

# the sample's code without its tests, for a test that brings its own
FP_SOURCES = {k: v for k, v in FP_SAMPLE.items() if not k.startswith("tests/")}


def check(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`ect check` with pytest's plugin autoload off (faster); asserts no traceback."""
    proc = run_ect(repo, "check", *args, env=FAST)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    return proc


def edit(repo: Path, rel: str, old: str, new: str) -> None:
    path = repo / rel
    text = path.read_text()
    assert old in text, f"{old!r} not in {rel}"
    path.write_text(text.replace(old, new, 1))


def db_nodeids(db: Path) -> set[str]:
    conn = sqlite3.connect(db)
    try:
        return {
            row[0] for row in conn.execute("SELECT nodeid FROM tests WHERE id IN (SELECT test FROM records)")
        }
    finally:
        conn.close()


def env_with_log(log: Path) -> dict[str, str]:
    return {**os.environ, **FAST, "RAN_LOG": str(log)}
