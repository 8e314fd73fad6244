"""The language server's parts without a client: completions, cancellation of older runs, telemetry,
the warm pytest process."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import pytest
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


def test_members_are_ranked_once_per_receiver_and_the_list_is_cut_at_the_limit(make_repo) -> None:
    """Typing `big.f_1` key by key ranks the module's members once (not per keystroke); the first
    `limit` items are the same as the full list's, with the full count for `isIncomplete`."""
    files = dict(PKG)
    files["acme/big.py"] = "".join(f"def f_{i}(x):\n    return x\n\n\n" for i in range(120)) + "_hidden = 1\n"
    files["acme/user.py"] = "from acme import big\n"
    repo = make_repo(files)
    index = SymbolIndex.build(repo)
    calls: list[str] = []
    members = index.members

    def counted(qual: str) -> list:  # type: ignore[type-arg]
        calls.append(qual)
        return members(qual)

    index.members = counted  # type: ignore[method-assign]
    user = Completer(index, "acme.user", False)
    for typed in ("big.", "big.f", "big.f_", "big.f_1", "big.f_11"):
        text = f"from acme import big\n{typed}\n"
        top, total = user.complete_top(text, 1, len(typed), 50)
        full = user.complete(text, 1, len(typed))
        assert [i.label for i in top] == [i.label for i in full[:50]] and total == len(full)
        assert all(i.label.startswith(typed.split(".")[1]) and not i.label.startswith("_") for i in full)
    assert calls == ["acme.big"]  # ranked once for the whole typing
    assert user.complete_top("from acme import big\nbig.f_11\n", 1, 8, 50)[1] == 11  # f_11, f_110..f_119
    assert [i.label for i in user.complete("from acme import big\nbig._\n", 1, 5)] == ["_hidden"]


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


def test_positions_in_each_encoding() -> None:
    from ect.lsp.positions import UTF8, UTF16, UTF32, normalize, offset_of, to_index, to_units

    line = 'print("café😋", core.'
    end = len(line)  # 21 code points
    assert [to_units(line, end, e) for e in (UTF8, UTF16, UTF32)] == [end + 1 + 3, end + 1, end]
    for enc in (UTF8, UTF16, UTF32):
        assert to_index(line, to_units(line, end, enc), enc) == end
        assert to_index(line, to_units(line, 10, enc), enc) == 10  # just after the emoji
        assert to_index(line, 10**6, enc) == end  # past the end: clamped
    assert to_index(line, 11, UTF8) == 10  # inside the emoji's bytes: before it
    assert normalize("utf-8") == UTF8 and normalize(None) == UTF16
    doc = "a\r\nbé\nc"
    assert doc[offset_of(doc, 1, 1)] == "é" and doc[offset_of(doc, 2, 0)] == "c"


def test_completion_after_a_non_ascii_string(make_repo) -> None:
    """The client's column is in code units; converted, the items are those after `core.`."""
    from ect.lsp.positions import UTF8, to_index

    repo = make_repo(PKG)
    util = Completer(SymbolIndex.build(repo), "acme.util", False)
    line = 'print("café", core.'
    text = (repo / "acme/util.py").read_text() + line + ")\n"
    at = text.splitlines().index(line + ")")
    col = to_index(line + ")", len(line.encode()), UTF8)  # what Neovim sends: bytes
    assert [i.label for i in util.complete(text, at, col)] == ["Box", "add"]


def test_warm_pytest_times_out_and_names_the_test(tmp_path: Path) -> None:
    from ect.runner import TIMED_OUT

    write(
        tmp_path,
        {"test_h.py": "def test_fine():\n    pass\n\ndef test_hang():\n    while True:\n        pass\n"},
    )
    cfg = FixEngine(tmp_path, load_config(tmp_path)).loop_config()  # with the capture plugin
    warm = WarmPytest(tmp_path)
    try:
        started = time.monotonic()
        run = warm.run_pytest(tmp_path, cfg, ["test_h.py"], stream=False, timeout=6.0)
        assert time.monotonic() - started < 30
        assert run.exit_code == TIMED_OUT and run.outcomes == {"test_h.py::test_hang": "failed"}, run
        assert "timed out after 6.0 s in test_h.py::test_hang" in run.output
        warm.stop()
        stopped = warm.run_pytest(tmp_path, cfg, ["test_h.py"], stream=False)
        assert stopped.exit_code == 2 and "cancelled" in stopped.output  # no fresh run after stop
    finally:
        warm.stop()


KILLED_OWNER = """
import sys, time
from pathlib import Path
from ect.fix.warm_pytest import WarmPytest
warm = WarmPytest(Path(sys.argv[1]))
warm.run(["-q", "-p", "no:cacheprovider", "test_h.py"], Path(sys.argv[1]), {}, [], None)
"""


def test_nothing_outlives_a_killed_owner(tmp_path: Path) -> None:
    """kill -9 of the process that owns the warm pytest: the warm process and the spinning test die."""
    import os
    import signal
    import subprocess
    import sys

    write(
        tmp_path,
        {
            "test_h.py": "import subprocess, sys\n\ndef test_hang():\n"
            "    subprocess.Popen([sys.executable, '-c', 'while True: pass'])\n"
            "    while True:\n        pass\n"
        },
    )
    owner = subprocess.Popen([sys.executable, "-c", KILLED_OWNER, str(tmp_path)], cwd=tmp_path)

    def ours() -> list[int]:
        pids = []
        for entry in filter(str.isdigit, os.listdir("/proc")):
            try:
                if os.readlink(f"/proc/{entry}/cwd") == str(tmp_path.resolve()):
                    with open(f"/proc/{entry}/stat") as fh:
                        if fh.read().rsplit(")", 1)[1].split()[0] != "Z":
                            pids.append(int(entry))
            except OSError:
                continue
        return pids

    try:
        deadline = time.monotonic() + 60
        while len(ours()) < 4 and time.monotonic() < deadline:  # owner, warm, test, its subprocess
            time.sleep(0.1)
        assert len(ours()) >= 4, ours()
    finally:
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait()
    deadline = time.monotonic() + 10
    while ours() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ours() == []


def test_model_suggestion_follows_typing_and_windows_big_documents(tmp_path: Path) -> None:
    from ect.lsp.model_bridge import WINDOW_BEFORE, ModelBridge, Suggestion, window

    bridge = ModelBridge(load_config(tmp_path))
    bridge._last[("u", 3)] = Suggestion("u", 3, "x = os.pa", "th.join(a, b)")
    assert bridge.suggestion("u", 3, "x = os.pa") == Suggestion("u", 3, "x = os.pa", "th.join(a, b)")
    got = bridge.suggestion("u", 3, "x = os.path.jo")  # typed along: the rest
    assert got is not None and got.text == "in(a, b)"
    assert bridge.suggestion("u", 3, "x = os.pat_") is None  # typed something else: ask again
    assert bridge.suggestion("u", 4, "x = os.pa") is None
    assert not bridge.request("u", "m", "x", 1, 0, "x")  # no model: nothing pending
    big = "import os\n" + "a = 1\n" * 20_000
    part, at = window(big, len(big) - 3)
    assert len(part) < WINDOW_BEFORE + 10_000 and part.startswith("import os\n")
    assert part[at:] == big[len(big) - 3 :]


def test_model_reload_check_reads_where_head_is_without_running_git(make_repo, monkeypatch) -> None:
    from ect_testutil import git

    from ect.lsp.model_bridge import ModelBridge, head_fingerprint

    repo = make_repo(PKG)
    git(repo, "worktree", "add", "-q", "-b", "side", str(repo.parent / "side"))
    side = repo.parent / "side"
    bridge = ModelBridge(load_config(repo))
    stamps = [bridge.stamp(), head_fingerprint(side)]
    head = git(repo, "rev-parse", "HEAD").strip()
    assert stamps[0] is not None and head in stamps[0][0] and head in stamps[1]
    git(repo, "commit", "-q", "--allow-empty", "-m", "loose ref")
    git(side, "commit", "-q", "--allow-empty", "-m", "in the worktree")
    git(repo, "pack-refs", "--all")  # refs only in packed-refs now
    git(repo, "commit", "-q", "--allow-empty", "-m", "after packing")
    git(repo, "pack-refs", "--all")
    monkeypatch.setenv("PATH", "")  # no git from here on: the check reads .git itself
    after = [bridge.stamp(), head_fingerprint(side)]
    assert after[0] != stamps[0] and after[1] != stamps[1]
    assert bridge.stamp() == after[0]  # nothing moved: the same answer (no reload)


PROBE = """
import os

def test_probe(pytestconfig):
    pm = pytestconfig.pluginmanager
    with open(os.environ["PROBE_OUT"], "w") as fh:
        fh.write(" ".join(sorted(n for n in ("asyncio", "anyio.pytest_plugin", "ect.pytest_plugin")
                                 if pm.has_plugin(n))))

def test_hang():
    while True:
        pass
"""


def _probe(tmp_path: Path, config: str) -> tuple[WarmPytest, object, Path]:
    write(tmp_path, {"test_probe.py": PROBE, "ect.toml": config})
    out = tmp_path / "probe.txt"
    os.environ["PROBE_OUT"] = str(out)
    return WarmPytest(tmp_path, load_config(tmp_path)), load_config(tmp_path), out


def test_warm_pytest_loads_plugins_times_out_tests_and_owns_its_group_like_the_runner(tmp_path: Path) -> None:
    """ect's own interpreter: autoload off, the listed plugins on; `test_timeout` stops a hung test and
    names it; the warm process leads its own process group and nothing of it is left after stop()."""
    from ect.runner import TIMED_OUT

    warm, cfg, out = _probe(tmp_path, 'pytest_plugins = ["anyio.pytest_plugin"]\ntest_timeout = 2\n')
    try:
        assert warm.start() and warm.proc is not None
        group = os.getpgid(warm.proc.pid)
        assert group == warm.proc.pid  # its own group: ended as a whole
        run = warm.run_pytest(tmp_path, cfg, ["test_probe.py::test_probe"], stream=False)
        assert run.exit_code == 0, run.output
        assert out.read_text().split() == [
            "anyio.pytest_plugin",
            "ect.pytest_plugin",
        ]  # no autoloaded asyncio
        started = time.monotonic()
        hung = warm.run_pytest(tmp_path, cfg, ["test_probe.py"], stream=False)  # no run timeout given
        assert time.monotonic() - started < 30
        assert hung.exit_code == TIMED_OUT, hung
        assert "test_probe.py::test_hang ran longer than 2 s (test_timeout)" in hung.output
        assert hung.outcomes.get("test_probe.py::test_hang") == "failed"
    finally:
        warm.stop()
        os.environ.pop("PROBE_OUT", None)
    deadline = time.monotonic() + 10
    while _group_members(group) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _group_members(group) == []


def _group_members(pgid: int) -> list[int]:
    out = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            out.append(int(entry))
    return out


@pytest.mark.slow
def test_warm_pytest_runs_the_configured_project_python_with_its_plugins(tmp_path: Path) -> None:
    used = tmp_path / "used"
    wrapper = tmp_path / "project-python"
    wrapper.write_text(f'#!/bin/sh\ntouch {used}\nexec {sys.executable} "$@"\n')
    os.chmod(wrapper, 0o755)
    repo = tmp_path / "repo"
    warm, cfg, out = _probe(repo, f'python = "{wrapper}"\n')
    try:
        run = warm.run_pytest(repo, cfg, ["test_probe.py::test_probe"], stream=False)
        assert run.exit_code == 0, run.output
        assert used.exists() and warm.started_as is not None and warm.started_as[0] == str(wrapper)
        plugins = out.read_text().split()
        assert "asyncio" in plugins and "ect.pytest_plugin" in plugins  # its own plugins autoload
    finally:
        warm.stop()
        os.environ.pop("PROBE_OUT", None)


@pytest.mark.parametrize(
    "header",
    [b"Content-Length: 99999999999\r\n\r\n", b"X-Junk: " + b"a" * (70 << 10) + b"\r\n"],
    ids=["huge-message", "huge-header-line"],
)
def test_an_oversized_message_ends_the_session_without_reading_it(make_repo, header: bytes) -> None:
    import subprocess

    repo = make_repo()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ect", "lsp"],
        cwd=repo,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdin is not None
        try:
            proc.stdin.write(header + b"{")  # and then the editor keeps the pipe open, sending nothing
            proc.stdin.flush()
        except BrokenPipeError:
            pass  # the server stopped reading at its limit, before the whole line was written
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert b"over" in err and b"stopping" in err, err
    assert b"Traceback" not in err
