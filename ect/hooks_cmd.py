"""`ect hooks`: install, remove and run ect's plain git hooks (no pre-commit framework needed).

`install` writes `pre-commit` and `post-commit` (and `pre-push` with `--pre-push`) into the
repository's hooks directory as git resolves it (`core.hooksPath` included). An existing
foreign hook is kept as `<name>.pre-ect` and run first (chained); `uninstall` restores it.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import sys
from pathlib import Path

import click

from ect.errors import EctError

MARKER = "# ect hook:"
CHAIN_SUFFIX = ".pre-ect"
ALL_HOOKS = ("pre-commit", "pre-push", "post-commit")
_PYTHON_LINE = 'ECT_PYTHON="${ECT_PYTHON:-python3}"'
ZERO_SHA = "0" * 40


def template_dir() -> Path:
    """Where the hook scripts live: `ect/_hooks` in a wheel, `hooks/` in a source checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_hooks", here.parent / "hooks"):
        if (candidate / "pre-commit").is_file():
            return candidate
    raise EctError("ect's hook scripts are missing from this installation (expected hooks/ or ect/_hooks/)")


def hook_text(name: str, python: str | None = None) -> str:
    """The script for hook `name`, bound to the interpreter ect runs in."""
    text = (template_dir() / name).read_text()
    if _PYTHON_LINE not in text:
        raise EctError(f"hook template {name} is malformed (no ECT_PYTHON line)")
    exe = shlex.quote(python or sys.executable)
    return text.replace(_PYTHON_LINE, f'ECT_PYTHON="${{ECT_PYTHON:-{exe}}}"')


def hooks_dir(root: Path) -> Path:
    """The hooks directory git uses for `root` (honours `core.hooksPath` and worktrees)."""
    proc = subprocess.run(
        ["git", "rev-parse", "--git-path", "hooks"], cwd=root, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0 or not proc.stdout.strip():
        raise EctError(f"not a git repository: {root}")
    path = Path(proc.stdout.strip())
    return path if path.is_absolute() else (root / path).resolve()


def is_ours(path: Path) -> bool:
    try:
        return MARKER in path.read_text(errors="replace")[:400]
    except OSError:
        return False


def install_hook(directory: Path, name: str, python: str | None = None) -> str:
    """Write hook `name`, chaining a foreign one; returns what was done."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    chained = directory / (name + CHAIN_SUFFIX)
    note = "installed"
    if (path.exists() or path.is_symlink()) and not is_ours(path):
        if chained.exists() or chained.is_symlink():
            raise EctError(f"{path} is not ect's and {chained.name} already exists: move one of them away")
        os.rename(path, chained)
        note = f"installed (existing hook kept as {chained.name}, runs first)"
    elif is_ours(path):
        note = "updated"
    tmp = path.with_name(f".{name}.ect-tmp")
    tmp.write_text(hook_text(name, python))
    os.chmod(tmp, 0o755)
    os.replace(tmp, path)
    return note


def uninstall_hook(directory: Path, name: str) -> str | None:
    """Remove ect's hook `name` and restore a chained one; None when there was nothing of ect's."""
    path = directory / name
    chained = directory / (name + CHAIN_SUFFIX)
    if not is_ours(path):
        if path.exists() and (chained.exists() or chained.is_symlink()):
            return f"left alone: {path.name} is no longer ect's ({chained.name} kept)"
        return None
    path.unlink()
    if chained.exists() or chained.is_symlink():
        os.rename(chained, path)
        return "removed (previous hook restored)"
    return "removed"


def _root() -> Path:
    from ect.repo import find_root

    return find_root()


@click.group("hooks")
def hooks() -> None:
    """Install or remove ect's git hooks (pre-commit, pre-push, post-commit)."""


@hooks.command("install")
@click.option("--pre-push", "pre_push", is_flag=True, help="Also check pushed commits in a pre-push hook.")
@click.option(
    "--server",
    "server",
    metavar="BARE_REPO",
    type=click.Path(file_okay=False),
    help="Install the server-side promotion gate (pre-receive) into a bare repository instead.",
)
@click.option("--force", is_flag=True, help="With --server: replace a foreign pre-receive hook.")
def install(pre_push: bool, server: str | None, force: bool) -> int:
    """Write ect's hooks into the hooks directory git uses, chaining existing ones."""
    if server is not None:
        try:
            from ect.hooks_server import install_server_hook
        except ImportError:
            raise EctError("the server-side gate (ect.hooks_server) is not available in this build") from None
        hook = install_server_hook(Path(server).resolve(), force=force)
        click.echo(f"ect: server gate installed: {hook}")
        return 0
    root = _root()
    directory = hooks_dir(root)
    names = ["pre-commit", "post-commit"] + (["pre-push"] if pre_push else [])
    for name in names:
        click.echo(f"ect: {name}: {install_hook(directory, name)} in {directory}")
    click.echo("ect: tip: run `ect check --all` once to record per-test fingerprints (precise selection)")
    return 0


@hooks.command("uninstall")
def uninstall() -> int:
    """Remove ect's hooks and restore the ones they chained."""
    from ect import events
    from ect.config import load_config

    root = _root()
    directory = hooks_dir(root)
    removed = []
    for name in ALL_HOOKS:
        what = uninstall_hook(directory, name)
        if what is not None:
            click.echo(f"ect: {name}: {what}")
            if what.startswith("removed"):
                removed.append(name)
    if not removed:
        click.echo(f"ect: no ect hooks in {directory}")
        return 0
    with contextlib.suppress(EctError):
        events.record(
            load_config(root).state_path, "hook.uninstalled", source="cli", repo=root.name, hooks=removed
        )
    return 0


@hooks.command("status")
def status() -> int:
    """Show which hooks are installed and whether they chain another."""
    directory = hooks_dir(_root())
    for name in ALL_HOOKS:
        path = directory / name
        chained = directory / (name + CHAIN_SUFFIX)
        state = "ect" if is_ours(path) else ("other" if path.exists() else "none")
        extra = f" (chains {chained.name})" if state == "ect" and chained.exists() else ""
        click.echo(f"{name}: {state}{extra}")
    return 0


def push_scopes(root: Path, lines: list[str]) -> list[tuple[str, str | None]]:
    """(mode, range) for each pushed ref line `<local ref> <local sha> <remote ref> <remote sha>`."""
    out: list[tuple[str, str | None]] = []
    for line in lines:
        parts = line.split()
        if len(parts) != 4:
            continue
        local_sha, remote_sha = parts[1], parts[3]
        if set(local_sha) == {"0"}:
            continue  # a deleted ref: nothing to test
        if set(remote_sha) != {"0"} and _git_ok(root, "cat-file", "-e", f"{remote_sha}^{{commit}}"):
            out.append(("range", f"{remote_sha}..{local_sha}"))
            continue
        new = _git_out(root, "rev-list", local_sha, "--not", "--remotes").split()
        if not new:
            continue
        oldest = new[-1]
        if _git_ok(root, "rev-parse", "-q", "--verify", f"{oldest}^"):
            out.append(("range", f"{oldest}^..{local_sha}"))
        else:
            out.append(("all", local_sha))  # the whole suite, on the pushed commit's content
    return out


def _git_ok(root: Path, *args: str) -> bool:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, check=False).returncode == 0


def _git_out(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False).stdout


@hooks.command("run")
@click.argument("hook", type=click.Choice(["pre-commit", "pre-push"]))
@click.argument("args", nargs=-1)
def run(hook: str, args: tuple[str, ...]) -> int:
    """Run a hook's check by hand or from a hook script (pre-push reads git's ref lines on stdin)."""
    from ect.changes import Scope
    from ect.check_cmd import BLOCKED_COMMIT, TextReporter, summary, with_timeout
    from ect.config import load_config
    from ect.loop import run_loop

    root = _root()
    cfg = with_timeout(load_config(root), None, "hook")
    if hook == "pre-commit":
        scopes: list[tuple[str, str | None]] = [("staged", None)]
    else:
        from_ref, to_ref = os.environ.get("PRE_COMMIT_FROM_REF"), os.environ.get("PRE_COMMIT_TO_REF")
        if from_ref and to_ref:  # the pre-commit framework passes the range in its environment
            lines = [f"ref {to_ref} ref {from_ref}"]
        else:
            lines = [] if sys.stdin is None or sys.stdin.isatty() else sys.stdin.read().splitlines()
        scopes = push_scopes(root, lines)
    worst = 0
    for mode, rev_range in scopes:
        res = run_loop(
            root, cfg, Scope(mode=mode, rev_range=rev_range), trigger="hook", reporter=TextReporter(False)
        )
        if res.outcome != "noop":
            click.echo(summary(res))
        worst = max(worst, res.exit_code)
    if worst and hook == "pre-push":
        click.echo("ect: push blocked (fix it, or push with --no-verify to skip the hook)", err=True)
    elif worst:
        click.echo(BLOCKED_COMMIT, err=True)
    return worst
