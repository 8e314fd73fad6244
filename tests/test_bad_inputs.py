"""Bad inputs and damaged state, tried on real repositories with real git and the real CLI.

Every case: no traceback, no `internal error:` line, the documented exit code (0 pass or
nothing to do, 1 compile error or failing test, 2 usage, configuration or environment
error), then a normal run works and the event history is still there.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from ect_testutil import GIT_ENV, SAMPLE, git, write

Setup = Callable[[Path], None]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample project with two commits, its suite run once (events and fingerprints recorded)."""
    repo = tmp_path_factory.mktemp("bad-inputs") / "template"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    write(repo, SAMPLE)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "initial")
    (repo / "acme/extra.py").write_text((repo / "acme/extra.py").read_text() + "\nLOUD = True\n")
    git(repo, "commit", "-qam", "second")
    proc = ect(repo, "check", "--all")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return repo


@pytest.fixture
def repo(template: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "repo"
    shutil.copytree(template, copy, symlinks=True)
    return copy


def ect(
    repo: Path, *args: str, env: dict[str, str] | None = None, preexec: Callable[[], None] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ect", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        env={**os.environ, **GIT_ENV, **(env or {})},
        timeout=180,
        check=False,
        preexec_fn=preexec,
    )


def history(repo: Path) -> int:
    """How many events the repository's event log holds."""
    db = repo / ".ect" / "events.db"
    if not db.exists():
        return 0
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])
    finally:
        conn.close()  # now: the last connection to close removes SQLite's -wal and -shm files


def assert_clean(proc: subprocess.CompletedProcess[str], code: int, needle: str = "") -> None:
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out, out
    assert "internal error:" not in out, out
    assert proc.returncode == code, out
    if needle:
        assert needle in out, out
    if code == 2:  # an error is one line
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def next_run_works(repo: Path, before: int | None) -> None:
    proc = ect(repo, "check")
    assert_clean(proc, 0)
    if before is not None:
        assert history(repo) > before, "the event history was lost"


def edit_extra(repo: Path) -> None:
    path = repo / "acme/extra.py"
    path.write_text(path.read_text() + "\n# edited\n")


def config(text: str) -> Setup:
    def setup(repo: Path) -> None:
        (repo / "ect.toml").write_text(text)
        edit_extra(repo)

    return setup


def undo_config(repo: Path) -> None:
    (repo / "ect.toml").unlink()
    git(repo, "checkout", "-q", "--", ".")


def nothing(repo: Path) -> None:
    pass


# (setup, ect arguments, exit code, text the output must hold, repair before the next normal run)
CASES: dict[str, tuple[Setup, tuple[str, ...], int, str, Setup]] = {
    "garbage config stamp": (
        lambda r: (r / ".ect" / "config.ok").write_bytes(b"\xff\xfe\x00\x81garbage"),
        ("check",),
        0,
        "nothing to check",
        nothing,
    ),
    "damaged state .gitignore": (
        lambda r: (r / ".ect" / ".gitignore").write_text("# emptied by a tool\n"),
        ("check",),
        0,
        "nothing to check",
        nothing,
    ),
    "garbage last_failed.json": (
        lambda r: (r / ".ect" / "last_failed.json").write_bytes(b"\x00{not json"),
        ("check",),
        0,
        "nothing to check",
        nothing,
    ),
    "state dir that cannot be created": (
        config('state_dir = "blocker/state"\n'),
        ("check",),
        2,
        "cannot create ect's state directory",
        undo_config,
    ),
    "negative watch debounce": (nothing, ("watch", "--debounce", "-5"), 2, "debounce", nothing),
    "negative --timeout": (nothing, ("check", "--timeout", "-1"), 2, "timeout", nothing),
    "conflicting modes": (nothing, ("check", "--staged", "--all"), 2, "choose one", nothing),
    "no such path": (nothing, ("check", "nosuch.py"), 2, "no such file: nosuch.py", nothing),
    "path outside the repository": (
        nothing,
        ("check", "/etc/hostname"),
        2,
        "outside the repository",
        nothing,
    ),
    "bad revision": (nothing, ("check", "--range", "nosuch..HEAD"), 2, "no such commit", nothing),
    "option as revision": (nothing, ("check", "--range", "--output=x"), 2, "bad revision", nothing),
    "missing source root": (
        config('source_roots = ["nope"]\n'),
        ("check",),
        2,
        "'source_roots' names 'nope', which does not exist",
        undo_config,
    ),
    "missing test path": (
        config('test_paths = ["nope"]\n'),
        ("check",),
        2,
        "'test_paths' names 'nope'",
        undo_config,
    ),
    "invalid TOML": (config("state_dir = [\n"), ("check",), 2, "invalid TOML", undo_config),
    "unknown key": (config("no_such_key = 1\n"), ("check",), 2, "unknown key", undo_config),
    "bad test_timeout type": (config('test_timeout = "soon"\n'), ("check",), 2, "test_timeout", undo_config),
    "null bytes in a module": (
        lambda r: (r / "acme/extra.py").write_bytes(b"def shout(s):\x00\n"),
        ("check",),
        1,
        "acme/extra.py:1:1",
        lambda r: git(r, "checkout", "-q", "--", "."),
    ),
    "undecodable module": (
        lambda r: (r / "acme/extra.py").write_bytes(b"X = '\xe9\xff'\n"),
        ("check",),
        1,
        "acme/extra.py",
        lambda r: git(r, "checkout", "-q", "--", "."),
    ),
    "absurdly nested module": (
        lambda r: (r / "acme/extra.py").write_text("X = " + "-" * 200_000 + "1\n"),
        ("check",),
        1,
        "acme/extra.py",
        lambda r: git(r, "checkout", "-q", "--", "."),
    ),
    "pytest missing for the project's python": (
        config('python = "/usr/bin/python3"\n'),
        ("check",),
        2,
        "pytest is not installed",
        undo_config,
    ),
    "ect fix with pytest missing": (
        config('python = "/usr/bin/python3"\n'),
        ("fix",),
        2,
        "pytest is not installed",
        undo_config,
    ),
    "bad pytest_args flag": (
        config('pytest_args = ["--no-such-flag"]\n'),
        ("check",),
        2,
        "pytest rejected its command line",
        undo_config,
    ),
}


SLOW = {"bad pytest_args flag", "state dir that cannot be created"}  # they start pytest


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in CASES])
def test_bad_input(repo: Path, name: str) -> None:
    setup, args, code, needle, repair = CASES[name]
    if "pytest missing" in name and (
        not Path("/usr/bin/python3").exists()
        or subprocess.run(["/usr/bin/python3", "-c", "import pytest"], capture_output=True).returncode == 0
    ):
        pytest.skip("needs a Python without pytest at /usr/bin/python3")
    if name == "state dir that cannot be created":
        (repo / "blocker").write_text("a file where a directory is expected\n")
    before = history(repo)
    setup(repo)
    assert_clean(ect(repo, *args), code, needle)
    repair(repo)
    next_run_works(repo, before)


def test_state_dir_that_is_a_file(repo: Path) -> None:
    shutil.rmtree(repo / ".ect")
    (repo / ".ect").write_text("mine\n")
    edit_extra(repo)
    assert_clean(ect(repo, "check"), 2, "is not a directory")
    assert (repo / ".ect").read_text() == "mine\n"  # the user's file is left alone
    (repo / ".ect").unlink()
    git(repo, "checkout", "-q", "--", ".")
    next_run_works(repo, None)


def test_damaged_gitignore_is_repaired_and_state_is_not_a_change(repo: Path) -> None:
    (repo / ".ect" / ".gitignore").unlink()
    proc = ect(repo, "check", "--json")
    assert_clean(proc, 0)
    assert "*" in (repo / ".ect" / ".gitignore").read_text().splitlines()
    assert git(repo, "status", "--porcelain") == ""


def test_shallow_clone_ranges_say_how_to_fetch(template: Path, tmp_path: Path) -> None:
    shallow = tmp_path / "shallow"
    git(tmp_path, "clone", "-q", "--depth", "1", f"file://{template}", str(shallow))
    for spec in ("HEAD~1..HEAD", "HEAD"):
        assert_clean(ect(shallow, "check", "--range", spec), 2, "shallow clone")
    assert_clean(ect(shallow, "check", "--range", "HEAD..HEAD"), 0)


def test_repository_without_commits(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q")
    assert_clean(ect(empty, "check", "--range", "HEAD~1..HEAD"), 2, "no commits yet")
    assert_clean(ect(empty, "check"), 0, "nothing to check")
    assert_clean(ect(empty, "verify", "--mutants", "1"), 2, "has no commit yet")


def test_outside_any_repository(tmp_path: Path) -> None:
    assert_clean(ect(tmp_path, "check"), 2, "not a git repository")


def test_model_without_torch_is_one_line(repo: Path, tmp_path: Path) -> None:
    fake = tmp_path / "no-torch"
    fake.mkdir()
    (fake / "torch.py").write_text("raise ModuleNotFoundError(\"No module named 'torch'\", name='torch')\n")
    proc = ect(repo, "model", "train", env={"PYTHONPATH": str(fake)})
    assert_clean(proc, 2, "pip install 'ect-loop[model]'")


def test_huge_generated_file_is_skipped_with_a_note(repo: Path) -> None:
    (repo / "ect.toml").write_text("max_file_size = 100_000\n")
    line = "VALUES_%d = [" + ", ".join(str(i) for i in range(40)) + "]\n"
    (repo / "acme/generated.py").write_text("".join(line % i for i in range(3000)))  # ~0.5 MB
    proc = ect(repo, "check", "--no-tests")
    assert_clean(proc, 0, "over max_file_size")
    (repo / "acme/generated.py").unlink()
    (repo / "ect.toml").unlink()


@pytest.mark.slow
def test_full_disk_keeps_the_verdict_and_the_history(repo: Path) -> None:
    edit_extra(repo)
    before = history(repo)
    db = repo / ".ect" / "events.db"
    size = db.stat().st_size

    def small_files() -> None:  # every write past 512 bytes fails with EFBIG, like a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (512, 512))

    proc = ect(repo, "check", preexec=small_files)
    assert_clean(proc, 0, "passed")
    assert not list(db.parent.glob("events.db.corrupt-*")), "a healthy database was moved aside"
    assert db.stat().st_size >= size
    next_run_works(repo, before)


@pytest.mark.slow
def test_damaged_caches_rebuild_and_the_run_passes(repo: Path) -> None:
    before = history(repo)
    for name in ("graph.json", "fingerprints.db"):
        for path in (repo / ".ect").glob(name + "*"):
            path.write_bytes(b"\x00garbage\xff" * 10)
    edit_extra(repo)
    assert_clean(ect(repo, "check"), 0, "passed")
    next_run_works(repo, before)


def test_verify_with_a_submodule_not_available_locally(tmp_path: Path) -> None:
    from test_submodules import make_library, make_superproject

    library = make_library(tmp_path / "lib")
    make_superproject(tmp_path / "super", library)
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(tmp_path / "super"), str(clone))  # submodule not initialised
    shutil.rmtree(library)  # and its URL leads nowhere
    proc = ect(clone, "verify", "--mutants", "1")
    assert_clean(proc, 2, "submodule vendor/lib: commit")
    assert "git submodule update --init" in proc.stderr
    assert git(clone, "worktree", "list").count("\n") == 1  # the scratch worktree is gone


NOBODY = 65534
_PROBE = (
    "import os, subprocess, sys\n"
    "subprocess.run([sys.executable, '-c', 'import ect, pytest'], check=True, timeout=60)\n"
    "sys.exit(0 if not os.access(sys.argv[1], os.W_OK) else 3)\n"
)


def _unprivileged(repo: Path, locked: Path, home: Path) -> list[str]:
    """A command prefix that runs as a user for whom `locked` is read-only (root ignores permissions).

    As root: uid/gid 65534 via setpriv, keeping only CAP_DAC_READ_SEARCH (reading and directory
    search, never writing) so that an interpreter under a private /root still runs; else runuser.
    Skips, with the reason, when no way works here.
    """
    if os.geteuid() != 0:
        return []
    candidates = []
    if shutil.which("setpriv"):
        ids = ["--reuid", str(NOBODY), "--regid", str(NOBODY), "--clear-groups"]
        caps = ["--inh-caps=-all,+dac_read_search", "--ambient-caps=-all,+dac_read_search"]
        candidates += [["setpriv", *ids, *caps], ["setpriv", *ids]]
    if shutil.which("runuser"):
        candidates.append(["runuser", "-u", "nobody", "--"])
    if not candidates:
        pytest.skip("running as root, and neither setpriv nor runuser is installed to drop privileges")
    for path in [repo, *repo.rglob("*"), home]:
        os.lchown(path, NOBODY, NOBODY)
    problems = []
    for prefix in candidates:
        proc = subprocess.run(
            [*prefix, sys.executable, "-c", _PROBE, str(locked)],
            cwd=repo,
            capture_output=True,
            text=True,
            env={**os.environ, "HOME": str(home)},
            timeout=120,
            check=False,
        )
        if proc.returncode == 0:
            return prefix
        last = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        problems.append(f"{prefix[0]}: {last}")
    pytest.skip(f"cannot run {sys.executable} with pytest as uid {NOBODY}: {'; '.join(problems)}")


def _snapshot(directory: Path) -> dict[str, tuple[int, int]]:
    """(mtime, size) of everything under `directory` (a file that vanishes while listed is left out)."""
    out = {}
    for p in directory.rglob("*"):
        with contextlib.suppress(FileNotFoundError):
            st = p.stat()
            out[str(p.relative_to(directory))] = (st.st_mtime_ns, st.st_size)
    return out


@pytest.mark.slow
def test_read_only_state_dir_runs_without_state_and_keeps_history(template: Path) -> None:
    # not under pytest's private tmp directory: another user must reach the repository
    base = Path(tempfile.mkdtemp(prefix="ect-read-only-"))
    try:
        base.chmod(0o755)
        repo, home = base / "repo", base / "home"
        shutil.copytree(template, repo, symlinks=True)
        home.mkdir()
        _read_only_state_run(repo, home)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _read_only_state_run(repo: Path, home: Path) -> None:
    state = repo / ".ect"
    before = history(repo)
    modes = {}
    for p in [state, *state.rglob("*")]:
        with contextlib.suppress(FileNotFoundError):
            if not p.is_symlink():
                modes[p] = p.stat().st_mode
    locked = sorted(modes)
    path = repo / "acme/extra.py"
    good = path.read_text()
    try:
        for p in locked:
            with contextlib.suppress(FileNotFoundError):
                p.chmod(modes[p] & ~0o222)
        prefix = _unprivileged(repo, state, home)
        kept = _snapshot(state)
        path.write_text(good.replace('"!"', '"?"'))  # breaks test_shout
        proc = subprocess.run(
            [*prefix, sys.executable, "-m", "ect", "check", "--explain"],
            cwd=repo,
            capture_output=True,
            text=True,
            env={**os.environ, **GIT_ENV, "HOME": str(home)},
            timeout=180,
            check=False,
        )
        assert_clean(proc, 1, "FAILED tests/test_extra.py::test_shout")  # the tests ran: the right verdict
        assert "is read-only: static selection" in proc.stdout, proc.stdout
        assert "not recorded" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert _snapshot(state) == kept  # nothing written, nothing left behind
    finally:
        for p in locked:
            with contextlib.suppress(FileNotFoundError):
                p.chmod(modes[p])
        if os.geteuid() == 0:
            for p in [repo, *repo.rglob("*"), home]:
                os.lchown(p, 0, 0)
    assert history(repo) == before
    path.write_text(good + "\n# edited\n")
    next_run_works(repo, before)


def test_a_broken_copy_of_an_ect_dependency_on_the_path_breaks_the_project_not_ect(repo: Path) -> None:
    # developing click (a library ect itself imports) with PYTHONPATH pointing into the checkout
    write(repo, {"src/click/__init__.py": "def echo(:\n    pass\n"})
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "vendored click")
    (repo / "src/click/__init__.py").write_text("def echo(\n    broken=1\n")
    proc = ect(repo, "check", env={"PYTHONPATH": str(repo / "src")})
    assert_clean(proc, 1, "SyntaxError")
    assert "src/click/__init__.py" in proc.stdout
