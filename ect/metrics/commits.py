"""The `post-commit` hook's job: record each commit, and whether the loop ran for it.

`git commit --no-verify` skips `pre-commit` but not `post-commit`, so the post-commit hook sees
every commit. A commit counts as checked when a hook-triggered loop run was recorded since the
previous commit, else as bypassed (also a `hook.bypassed` event). Merges and commits made by
rebase/cherry-pick/revert are recorded as such and not counted either way.

The `git.commit` event also carries the change's own figures for the A/B comparison: loop runs
since the previous commit, the first run's outcome and time, accepted completions and their
characters, and the characters the commit adds.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

from ect import events
from ect.state import ensure_state_dir

HOOK_TRIGGERS = ("hook", "pre-commit")
REWRITE_MARKERS = ("rebase-merge", "rebase-apply", "CHERRY_PICK_HEAD", "REVERT_HEAD", "sequencer")
MAX_DIFF_BYTES = 32 << 20


def _git(root: Path, *args: str) -> str:
    out = subprocess.run(
        ["git", *args], cwd=root, capture_output=True, text=True, errors="replace", check=True, timeout=30
    )
    return out.stdout


def added_chars(root: Path, sha: str, parent: str | None) -> tuple[int, int]:
    """(characters, lines) added by the commit (first parent; the whole tree for a root commit)."""
    args = ["diff-tree", "-p", "--no-color", "--no-ext-diff", "-U0", "--no-renames"]
    args += [parent, sha] if parent else ["--root", sha]
    proc = subprocess.Popen(["git", *args], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    chars = lines = read = 0
    for raw in proc.stdout:
        read += len(raw)
        if read > MAX_DIFF_BYTES:
            break
        if raw.startswith(b"+") and not raw.startswith(b"+++"):
            lines += 1
            chars += len(raw.rstrip(b"\r\n")) - 1
    proc.stdout.close()
    proc.kill() if proc.poll() is None else None
    proc.wait()
    return chars, lines


def record_commit(root: Path, state_dir: Path, now: float | None = None) -> dict[str, Any]:
    """Record HEAD as a `git.commit` event (and `hook.bypassed` when no hook run checked it)."""
    now = time.time() if now is None else now
    sha, parents, email = _git(root, "log", "-1", "--format=%H%x00%P%x00%ae", "HEAD").strip().split("\0")
    git_dir = _git(root, "rev-parse", "--absolute-git-dir").strip()
    parent_list = parents.split()
    ensure_state_dir(state_dir)
    if email:
        ident = state_dir / events.IDENTITY_FILE
        try:
            if not ident.exists() or ident.read_text(encoding="utf-8").strip() != email:
                ident.write_text(email + "\n", encoding="utf-8")
        except OSError:
            pass
    if len(parent_list) > 1:
        outcome = "merge"
    elif any((Path(git_dir) / m).exists() for m in REWRITE_MARKERS):
        outcome = "rewrite"
    else:
        outcome = "pending"
    with events.opened(state_dir) as conn:
        prev = conn.execute(
            "SELECT max(ts) FROM events WHERE kind = 'git.commit' AND ts <= ?", (now,)
        ).fetchone()
        since = float(prev[0]) if prev and prev[0] is not None else 0.0
        runs = conn.execute(
            "SELECT ts, outcome, source FROM events WHERE kind = 'loop.run' AND ts > ? AND ts <= ?"
            " AND coalesce(outcome, '') <> 'noop' AND coalesce(source, '') NOT IN ('review', 'bot')"
            " ORDER BY ts",
            (since, now),
        ).fetchall()
        hook_runs = conn.execute(
            f"SELECT count(*) FROM events WHERE kind = 'loop.run' AND ts > ? AND ts <= ?"
            f" AND source IN ({', '.join('?' * len(HOOK_TRIGGERS))})",
            (since, now, *HOOK_TRIGGERS),
        ).fetchone()[0]
        acc = conn.execute(
            "SELECT count(*), coalesce(sum(chars), 0) FROM events"
            " WHERE kind = 'completion.accepted' AND ts > ? AND ts <= ?",
            (since, now),
        ).fetchone()
    if outcome == "pending":
        outcome = "checked" if hook_runs else "bypassed"
    chars, lines = added_chars(root, sha, parent_list[0] if parent_list else None)
    fields: dict[str, Any] = {
        "source": "post-commit",
        "repo": root.name,
        "author": email or None,
        "commit_sha": sha,
        "outcome": outcome,
        "chars": chars,
        "lines_added": lines,
        "parents": parent_list,
        "loop_runs": len(runs),
        "first_run_outcome": runs[0][1] if runs else None,
        "first_run_ts": runs[0][0] if runs else None,
        "accepted": int(acc[0]),
        "accepted_chars": int(acc[1]),
    }
    events.record(state_dir, "git.commit", ts=now, **fields)
    if outcome == "bypassed":
        events.record(
            state_dir,
            "hook.bypassed",
            ts=now,
            source="post-commit",
            repo=root.name,
            author=email or None,
            commit_sha=sha,
        )
    _check_hook_present(root, state_dir, git_dir, email, now)
    return fields


def _check_hook_present(root: Path, state_dir: Path, git_dir: str, email: str, now: float) -> None:
    """Record `hook.uninstalled` once when the pre-commit hook has gone (post-commit still here)."""
    try:
        hook = Path(_git(root, "rev-parse", "--git-path", "hooks/pre-commit").strip())
    except (subprocess.SubprocessError, OSError):
        return
    hook = hook if hook.is_absolute() else root / hook
    flag = state_dir / "hook-missing"
    if hook.is_file():
        flag.unlink(missing_ok=True)
    elif not flag.exists():
        flag.touch()
        events.record(
            state_dir,
            "hook.uninstalled",
            ts=now,
            source="post-commit",
            repo=root.name,
            author=email or None,
            hook="pre-commit",
            detected="post-commit",
        )
