"""Git submodules in a scratch checkout (`ect verify`'s worktree, `--staged`/`--range` snapshots).

`git worktree add` and `git checkout-index` leave a submodule as an empty directory. Here each
one is checked out at the commit the superproject records, as a `git clone --shared` of a local
repository that already has that commit: the user's checked-out submodule, else its git
directory under `.git/modules`, else a `.gitmodules` URL that is a local path. Nothing is ever
fetched over the network, nothing of the user's repository is changed, every git command has a
deadline, and nested submodules are checked out the same way (to a bounded depth).
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from ect.errors import EctError

GITLINK = "160000"
TIMEOUT_S = 300.0  # for all the submodules of one checkout together
MAX_DEPTH = 8
MAX_SUBMODULES = 200
# git's repository-local variables (`git rev-parse --local-env-vars`): a hook's GIT_INDEX_FILE or
# GIT_DIR must never reach a command run in another repository
_LOCAL_VARS = (
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_CONFIG",
    "GIT_CONFIG_PARAMETERS",
    "GIT_CONFIG_COUNT",
    "GIT_OBJECT_DIRECTORY",
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_IMPLICIT_WORK_TREE",
    "GIT_GRAFT_FILE",
    "GIT_INDEX_FILE",
    "GIT_NO_REPLACE_OBJECTS",
    "GIT_REPLACE_REF_BASE",
    "GIT_PREFIX",
    "GIT_INTERNAL_SUPER_PREFIX",
    "GIT_SHALLOW_FILE",
    "GIT_COMMON_DIR",
)


class SubmoduleError(EctError):
    """A submodule cannot be checked out from local data: one line, exit 2."""


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    drop = ("GIT_CONFIG_KEY_", "GIT_CONFIG_VALUE_")  # with GIT_CONFIG_COUNT
    env = {k: v for k, v in os.environ.items() if k not in _LOCAL_VARS and not k.startswith(drop)}
    return {**env, "GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C", **(extra or {})}


def _git(cwd: Path, deadline: float, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    left = deadline - time.monotonic()
    if left <= 0:
        raise SubmoduleError(f"checking out the submodules took over {TIMEOUT_S:g} s")
    try:
        proc = subprocess.run(
            ["git", "-c", "protocol.file.allow=always", *args],
            cwd=cwd,
            capture_output=True,
            check=False,
            env=env or _env(),
            timeout=left,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise SubmoduleError(f"checking out the submodules took over {TIMEOUT_S:g} s") from None
    except OSError as exc:
        raise SubmoduleError(f"cannot run git: {exc.strerror}") from None
    return (
        proc.returncode,
        proc.stdout.decode("utf-8", "surrogateescape"),
        proc.stderr.decode("utf-8", "replace"),
    )


def gitlinks(repo: Path, deadline: float, env: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """(path, commit) of each submodule entry in `repo`'s index (`env` may name another index)."""
    rc, out, err = _git(repo, deadline, "ls-files", "--stage", "-z", env=_env(env))
    if rc != 0:
        raise SubmoduleError(f"git ls-files failed: {err.strip().splitlines()[-1:] or rc}")
    links = []
    for entry in out.split("\0"):
        meta, _, path = entry.partition("\t")
        fields = meta.split(" ")
        if len(fields) >= 2 and fields[0] == GITLINK:
            links.append((path, fields[1]))
    return links


def _has_commit(repo: Path, commit: str, deadline: float) -> bool:
    if not (repo / ".git").exists() and not (repo / "objects").is_dir():
        return False  # not a repository of its own: git would find the superproject instead
    rc, _, _ = _git(repo, deadline, "cat-file", "-e", f"{commit}^{{commit}}")
    return rc == 0


def _modules_config(tree: Path, deadline: float) -> dict[str, tuple[str, str]]:
    """path -> (name, url) from `tree/.gitmodules`."""
    if not (tree / ".gitmodules").is_file():
        return {}
    rc, out, _ = _git(tree, deadline, "config", "-f", ".gitmodules", "-z", "--get-regexp", r"^submodule\..*")
    if rc != 0:
        return {}
    names: dict[str, dict[str, str]] = {}
    for item in out.split("\0"):
        key, _, value = item.partition("\n")
        if not key.startswith("submodule.") or key.count(".") < 2:
            continue
        name, _, field = key[len("submodule.") :].rpartition(".")
        names.setdefault(name, {})[field] = value
    return {v["path"]: (n, v.get("url", "")) for n, v in names.items() if "path" in v}


def _local_url(url: str, base: Path) -> Path | None:
    """A `.gitmodules` URL that names a local directory, else None (never the network)."""
    if url.startswith("file://"):
        url = url[len("file://") :]
    elif "://" in url or (":" in url.split("/")[0] and not url.startswith(("/", "."))):
        return None  # https://, ssh://, git@host:path
    if not url:
        return None
    path = Path(url) if os.path.isabs(url) else base / url
    return path if path.is_dir() else None


def _sources(user_root: Path, path: str, name: str, url: str, deadline: float) -> list[Path]:
    """Local repositories that may hold a submodule's commit, best first."""
    found = [user_root / path]
    where = ("rev-parse", "--path-format=absolute", "--git-path", f"modules/{name}")
    rc, out, _ = _git(user_root, deadline, *where)
    if rc == 0 and out.strip():
        found.append(Path(out.strip()))
    local = _local_url(url, user_root)
    if local is not None:
        found.append(local)
    return found


def check_out(
    user_root: Path,
    tree: Path,
    links: list[tuple[str, str]],
    deadline: float | None = None,
    depth: int = 0,
) -> list[str]:
    """Check out each submodule `(path, commit)` of the scratch checkout `tree`, whose counterpart in
    the user's checkout is `user_root`; returns the paths checked out (nested ones included).

    Raises SubmoduleError when a commit is not available locally or the deadline passes.
    """
    deadline = deadline if deadline is not None else time.monotonic() + TIMEOUT_S
    if depth > MAX_DEPTH:
        raise SubmoduleError(f"submodules nested deeper than {MAX_DEPTH} levels under {tree}")
    if len(links) > MAX_SUBMODULES:
        raise SubmoduleError(f"{len(links)} submodules: more than the {MAX_SUBMODULES} ect checks out")
    config = _modules_config(tree, deadline)
    done: list[str] = []
    for path, commit in links:
        name, url = config.get(path, (path, ""))
        source = next(
            (s for s in _sources(user_root, path, name, url, deadline) if _has_commit(s, commit, deadline)),
            None,
        )
        if source is None:
            raise SubmoduleError(
                f"submodule {path}: commit {commit[:12]} is not available locally "
                "(run `git submodule update --init --recursive` first)"
            )
        target = tree / path
        if target.is_symlink() or target.is_file():
            target.unlink()
        target.mkdir(parents=True, exist_ok=True)
        for args in (
            ("clone", "-q", "--shared", "--no-checkout", str(source), str(target)),
            ("-C", str(target), "checkout", "-q", "--detach", commit),
        ):
            rc, _, err = _git(tree, deadline, *args)
            if rc != 0:
                last = err.strip().splitlines()[-1] if err.strip() else f"exit {rc}"
                raise SubmoduleError(f"submodule {path}: git {args[0]} failed: {last}")
        done.append(path)
        nested = gitlinks(target, deadline)
        if nested:
            inner = check_out(user_root / path, target, nested, deadline, depth + 1)
            done.extend(f"{path}/{p}" for p in inner)
    return done


def matches_working_tree(root: Path, path: str, commit: str, deadline: float) -> bool:
    """Whether the user's checkout of submodule `path` is at `commit` with no local change."""
    sub = root / path
    if not (sub / ".git").exists():
        return False
    rc, head, _ = _git(sub, deadline, "rev-parse", "HEAD")
    if rc != 0 or head.strip() != commit:
        return False
    rc, status, _ = _git(sub, deadline, "status", "--porcelain", "--untracked-files=no")
    return rc == 0 and not status.strip()
