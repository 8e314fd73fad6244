"""Repositories with git submodules: `ect verify` and `--staged`/`--range` test the recorded commits.

Real repositories: a library repository added to a superproject with `git submodule add`; the
superproject's code and tests import the library from the submodule (pytest `pythonpath`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from ect_testutil import git, git_proc, run_ect, write

GOOD_MUL = "def mul(a, b):\n    return a * b\n"
BROKEN_MUL = "def mul(a, b):\n    return a + b\n"

SUPER = {
    "pyproject.toml": """
        [tool.pytest.ini_options]
        testpaths = ["tests"]
        pythonpath = [".", "vendor/lib"]
    """,
    "app/__init__.py": "",
    "app/shapes.py": """
        from mathlib.ops import mul


        def area(w, h):
            return mul(w, h)


        def perimeter(w, h):
            return 2 * (w + h)
    """,
    "tests/test_shapes.py": """
        from app.shapes import area, perimeter


        def test_area():
            assert area(2, 3) == 6


        def test_perimeter():
            assert perimeter(2, 3) == 10
    """,
}


def make_library(path: Path) -> Path:
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    write(path, {"mathlib/__init__.py": "", "mathlib/ops.py": GOOD_MUL})
    git(path, "add", "-A")
    git(path, "commit", "-qm", "mathlib")
    return path


def make_superproject(path: Path, library: Path) -> Path:
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    git(path, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(library), "vendor/lib")
    write(path, SUPER)
    git(path, "add", "-A")
    git(path, "commit", "-qm", "app using vendor/lib")
    return path


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A superproject with the library as a submodule, its suite recorded once."""
    base = tmp_path_factory.mktemp("submodules")
    repo = make_superproject(base / "super", make_library(base / "lib"))
    proc = run_ect(repo, "check", "--all")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return repo


@pytest.fixture
def repo(template: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "super"
    shutil.copytree(template, copy, symlinks=True)  # the submodule's links to .git/modules are relative
    return copy


def commit_in_submodule(repo: Path, text: str) -> str:
    """Commit `text` as mathlib/ops.py inside the superproject's submodule checkout; its commit id."""
    sub = repo / "vendor/lib"
    (sub / "mathlib/ops.py").write_text(text)
    git(sub, "commit", "-qam", "change mul")
    return git(sub, "rev-parse", "HEAD").strip()


@pytest.mark.slow
def test_staged_checks_the_submodule_commit_the_index_records(repo: Path) -> None:
    recorded = git(repo, "rev-parse", "HEAD:vendor/lib").strip()
    commit_in_submodule(repo, BROKEN_MUL)  # the working tree's submodule: broken, not staged
    shapes = repo / "app/shapes.py"
    # an edit test_area runs: it passes on the recorded library, fails on the broken one (2 + 3 != 6)
    shapes.write_text(shapes.read_text().replace("return mul(w, h)", "return mul(h, w)"))
    git(repo, "add", "app/shapes.py")
    proc = run_ect(repo, "check", "--staged")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "temporary checkout" in out and "1 passed" in out, out
    assert "Traceback" not in out
    # the pre-commit hook (git sets GIT_INDEX_FILE for it): the same, and the index stays intact
    assert run_ect(repo, "hooks", "install").returncode == 0
    proc = git_proc(repo, "commit", "-qm", "swap the operands")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert git(repo, "rev-parse", "HEAD:vendor/lib").strip() == recorded
    assert git(repo, "status", "--porcelain") == " M vendor/lib\n"
    # a plain run tests the working tree, whose submodule is broken
    assert run_ect(repo, "check").returncode == 1
    assert git(repo / "vendor/lib", "rev-parse", "HEAD").strip() != recorded  # left as it was


def test_staged_with_an_unchanged_submodule_links_the_working_tree_checkout(repo: Path) -> None:
    shapes = repo / "app/shapes.py"
    original = shapes.read_text()
    shapes.write_text(original.replace("return mul(w, h)", "return mul(w, h) + 1"))
    git(repo, "add", "app/shapes.py")
    shapes.write_text(original)  # the disk is fine; the index breaks test_area
    proc = run_ect(repo, "check", "--staged")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "FAILED tests/test_shapes.py::test_area" in out, out
    assert "ModuleNotFoundError" not in out, out  # the submodule's code was there


def test_range_checks_the_pushed_submodule_commit(repo: Path) -> None:
    good = git(repo / "vendor/lib", "rev-parse", "HEAD").strip()
    commit_in_submodule(repo, BROKEN_MUL)
    git(repo, "add", "vendor/lib")
    git(repo, "commit", "-qm", "bump vendor/lib")  # the pushed commit records a broken library
    git(repo / "vendor/lib", "checkout", "-q", good)  # the working tree is back on the good one
    proc = run_ect(repo, "check", "--range", "HEAD~1..HEAD")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "FAILED tests/test_shapes.py::test_area" in out, out
    assert "Traceback" not in out


def test_staged_with_a_submodule_not_available_locally_says_so_and_fails_closed(tmp_path: Path) -> None:
    library = make_library(tmp_path / "lib")
    make_superproject(tmp_path / "super", library)
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(tmp_path / "super"), str(clone))  # submodule not initialised
    shutil.rmtree(library)  # and its URL leads nowhere
    shapes = clone / "app/shapes.py"
    original = shapes.read_text()
    shapes.write_text(original + "\n\ndef half(x):\n    return x / 2\n")
    git(clone, "add", "app/shapes.py")
    shapes.write_text(original)  # the index differs from the working tree: a temporary checkout
    proc = run_ect(clone, "check", "--staged")
    out = proc.stdout + proc.stderr
    assert "ect: note: submodule vendor/lib: commit" in proc.stderr, out
    assert "is not available locally (run `git submodule update --init --recursive` first)" in out
    assert proc.returncode == 1, out  # the tests cannot import the library: not a pass
    assert "No module named 'mathlib'" in out and "internal error" not in out


@pytest.mark.slow
def test_verify_checks_out_the_submodules(repo: Path) -> None:
    worktrees = git(repo, "worktree", "list")
    proc = run_ect(repo, "verify", "--mutants", "2", timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "checked out submodules at their recorded commits: vendor/lib" in out, out
    assert "errored runs:               0" in out, out
    assert "mutants:                    2" in out, out
    assert "Traceback" not in out and "internal error" not in out
    assert git(repo, "worktree", "list") == worktrees  # the scratch worktree is gone
    assert git(repo, "status", "--porcelain") == ""
