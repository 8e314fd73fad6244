"""Cheap facts about the repository read straight from `.git` (no subprocess)."""

from __future__ import annotations

from pathlib import Path


def git_dir(root: Path) -> Path:
    """The repository's git directory (follows the `gitdir:` file of worktrees)."""
    dot = root / ".git"
    if dot.is_file():
        text = dot.read_text(encoding="utf-8", errors="replace").strip()
        if text.startswith("gitdir:"):
            path = Path(text[len("gitdir:") :].strip())
            return path if path.is_absolute() else (root / path).resolve()
    return dot


def _common_dir(gdir: Path) -> Path:
    common = gdir / "commondir"
    if common.is_file():
        rel = common.read_text(encoding="utf-8").strip()
        return (gdir / rel).resolve()
    return gdir


def head(root: Path) -> tuple[str | None, str | None]:
    """(commit sha of HEAD or None if unborn/unreadable, branch name or None if detached)."""
    try:
        gdir = git_dir(root)
        text = (gdir / "HEAD").read_text(encoding="utf-8").strip()
        if not text.startswith("ref:"):
            return text or None, None
        ref = text[4:].strip()
        branch = ref.removeprefix("refs/heads/")
        common = _common_dir(gdir)
        for base in (gdir, common):
            loose = base / ref
            if loose.is_file():
                return loose.read_text(encoding="utf-8").strip() or None, branch
        packed = common / "packed-refs"
        if packed.is_file():
            for line in packed.read_text(encoding="utf-8").splitlines():
                sha, _, name = line.partition(" ")
                if name == ref:
                    return sha, branch
        return None, branch
    except OSError:
        return None, None
