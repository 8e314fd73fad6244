"""The language server's parts without a client: completions, cancellation of older runs, telemetry,
the warm pytest process."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from ect.models.index import SymbolIndex
from ect_testutil import write

from ect import events
from ect.config import load_config
from ect.fix.engine import FixEngine
from ect.fix.warm_pytest import WarmPytest
from ect.lsp.completion import Completer
from ect.lsp.diagnose import Diagnoser, Run
from ect.lsp.telemetry import Telemetry

PKG = {
    "pyproject.toml": """
        [project]
        name = "acme"
        version = "0.1.0"
        [tool.pytest.ini_options]
        testpaths = ["tests"]
        pythonpath = ["."]
    """,
    "acme/__init__.py": "",
    "acme/core.py": """
        def add(a, b):
            return a + b


        class Box:
            def __init__(self):
                self.size = 1

            def grow(self, by):
                return self.size + by

            def shrink(self):
                return self.size
    """,
    "acme/util.py": """
        from . import core
        from .core import Box as B
    """,
}


def test_completions_of_modules_classes_and_self(make_repo) -> None:
    repo = make_repo(PKG)
    index = SymbolIndex.build(repo)
    util = Completer(index, "acme.util", False)
    text = (repo / "acme/util.py").read_text() + "core.\nB.gr\nc"
    lines = text.splitlines()
    assert [i.label for i in util.complete(text, 2, len("core."))] == ["Box", "add"]
    assert [i.label for i in util.complete(text, 3, len("B.gr"))] == ["grow"]
    assert util.complete(text, 3, len("B.gr"))[0].remainder == "ow"
    assert [i.label for i in util.complete(text, 4, 1)] == ["core"]
    assert util.complete(text + "\nnot_a_name.", len(lines), len("not_a_name.")) == []
    core = Completer(index, "acme.core", False)
    source = (repo / "acme/core.py").read_text().replace("return self.size", "return self.")  # unsaved buffer
    at = source.splitlines().index("        return self.")
    assert sorted(i.label for i in core.complete(source, at, len("        return self."))) == [
        "grow",
        "shrink",
        "size",
    ]
    broken = "from .core import (\n core.ad"  # a document that does not parse still completes
    assert [i.label for i in util.complete(broken, 1, len(" core.ad"))] == ["add"]


def test_newer_save_cancels_the_older_run(make_repo) -> None:
    repo = make_repo(
        {
            **PKG,
            "acme/core.py": "def add(a, b):\n    return a + b\n",
            "tests/test_slow.py": "import time\nfrom acme.core import add\n\n\ndef test_slow():\n"
            "    time.sleep(60)\n    assert add(1, 1) == 2\n",
            "tests/test_fast.py": "from acme.core import add\n\n\ndef test_fast():\n"
            "    assert add(1, 1) == 3\n",
        }
    )
    engine = FixEngine(repo, load_config(repo))
    published: list[Run] = []
    done = threading.Event()

    def publish(run: Run) -> None:
        published.append(run)
        done.set()

    diag = Diagnoser(engine, publish, fixes=False)
    try:
        started = time.monotonic()
        diag.schedule("tests/test_slow.py")
        time.sleep(1.5)  # the slow test is running now
        diag.schedule("tests/test_fast.py")
        assert done.wait(60)
        elapsed = time.monotonic() - started
    finally:
        diag.stop()
    assert elapsed < 30  # the 60 s test was killed, not waited for
    assert [r.path for r in published] == ["tests/test_fast.py"]
    problems = {p.line: p.message for p in published[0].problems if p.path == "tests/test_fast.py"}
    assert "assert 2 == 3" in problems[5]  # where it failed
    assert problems[4] == "test failed: tests/test_fast.py::test_fast"  # the test's def


def test_telemetry_shown_accepted_dismissed(tmp_path: Path) -> None:
    state = tmp_path / ".ect"
    tel = Telemetry(state, "repo")
    first = tel.shown("file:///a.py", "index", "index", 3, 2)
    tel.shown("file:///a.py", "index", "index", 2, 2)  # the first was never accepted: dismissed
    third = tel.shown("file:///b.py", "model", "tiny", 1, 9)
    assert tel.accepted(third, 9, "x = 1")
    assert not tel.accepted(third, 9, "x = 1")  # once
    assert not tel.accepted(first + 100, 1, "?")
    tel.close()  # the open one in a.py is dismissed at shutdown
    rows = events.query(state)
    kinds = sorted(r["kind"] for r in rows)
    assert kinds == [
        "completion.accepted",
        "completion.dismissed",
        "completion.dismissed",
        "completion.shown",
        "completion.shown",
        "completion.shown",
    ]
    [acc] = [r for r in rows if r["kind"] == "completion.accepted"]
    assert acc["chars"] == 9 and acc["source"] == "lsp"


def test_warm_pytest_runs_and_cancels(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "test_a.py": "import time\n\ndef test_ok():\n    pass\n\ndef test_bad():\n    assert 0\n\n"
            "def test_sleep():\n    time.sleep(60)\n"
        },
    )
    warm = WarmPytest(tmp_path)
    try:
        assert warm.start()
        assert warm.run(["-q", "-p", "no:cacheprovider", "test_a.py::test_ok"], tmp_path, {}, [], None) == 0
        assert warm.run(["-q", "-p", "no:cacheprovider", "test_a.py::test_bad"], tmp_path, {}, [], None) == 1
        timer = threading.Timer(1.0, warm.cancel)
        timer.start()
        started = time.monotonic()
        code = warm.run(["-q", "-p", "no:cacheprovider", "test_a.py::test_sleep"], tmp_path, {}, [], None)
        assert code == -9 and time.monotonic() - started < 30
        assert warm.run(["-q", "-p", "no:cacheprovider", "test_a.py::test_ok"], tmp_path, {}, [], None) == 0
    finally:
        warm.stop()


def test_model_completion_item_replaces_the_word_being_typed() -> None:
    from ect.lsp.server import word_before

    doc = "import os\n    value = os.pa\nx = café\n"
    assert word_before(doc, 1, len("    value = os.pa")) == "pa"  # the item carries `pa` + the model's rest
    assert word_before(doc, 1, len("    value = os.")) == ""
    assert word_before(doc, 1, len("    val")) == "val"
    assert word_before(doc, 2, len("x = café")) == "café"
    assert word_before(doc, 9, 3) == ""  # a position past the end (a stale request) is not an error
