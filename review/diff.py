"""The change under review: its base, files, added/modified lines and authors."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ect.review.gitcmd import Git
from ect.review.settings import Settings

from ect.errors import EctError

EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"  # base of a change that is the whole history
_HUNK = re.compile(rb"^@@ -\d+(?:,\d+)? \+(\d+)(?:,(\d+))? @@")


@dataclass
class FileChange:
    path: str
    status: str  # A, M, D, R
    old_path: str | None = None
    added: set[int] = field(default_factory=set)


@dataclass
class Change:
    base: str
    head: str
    files: dict[str, FileChange]
    commits: list[str]
    authors: set[str]
    first_commit_ts: float | None

    def added_lines(self, path: str) -> set[int]:
        fc = self.files.get(path)
        return fc.added if fc else set()

    @property
    def line_count(self) -> int:
        return sum(len(f.added) for f in self.files.values())


def base_refs(git: Git, settings: Settings) -> list[str]:
    """Refs a change may be compared with: `review.base`, the first stage, or the default branch."""
    refs: dict[str, str] = {}
    origin_head = ""
    listing = git.out(
        "for-each-ref", "--format=%(objectname) %(refname) %(symref)", "refs/heads", "refs/remotes"
    )
    for line in listing.splitlines():
        sha, name, *symref = line.split()
        refs[name] = sha
        if name == "refs/remotes/origin/HEAD" and symref:
            origin_head = symref[0]
    out: list[str] = []
    if settings.review["base"]:
        out.append(git.rev(settings.review["base"]))
    names = []
    if settings.stages:
        names += [
            f"refs/heads/{settings.stages[0].branch}",
            f"refs/remotes/origin/{settings.stages[0].branch}",
        ]
    names += [
        origin_head,
        "refs/heads/main",
        "refs/heads/master",
        "refs/remotes/origin/main",
        "refs/remotes/origin/master",
    ]
    out += [refs[name] for name in names if name in refs]
    return list(dict.fromkeys(out))


def resolve_range(git: Git, settings: Settings, spec: str | None) -> tuple[str, str]:
    """(base sha, head sha) for `BASE..HEAD`, a single REV (vs. its merge base) or None (HEAD)."""
    if spec and ".." in spec:
        left, _, right = spec.partition("...") if "..." in spec else spec.partition("..")
        head = git.rev(right or "HEAD")
        base = git.merge_base(git.rev(left or "HEAD"), head)
        if base is None:
            raise EctError(f"{left} and {right or 'HEAD'} have no common ancestor")
        return base, head
    head = git.rev(spec or "HEAD")
    return base_for(git, settings, head), head


def base_for(git: Git, settings: Settings, head: str) -> str:
    """The merge base with the first candidate base ref that does not already hold `head`."""
    found: str | None = None
    for ref in base_refs(git, settings):
        base = git.merge_base(ref, head)
        if base is None:
            continue
        if base != head:
            return base
        found = found or base
    if found is None:
        raise EctError(f"no base to review {head[:12]} against: give a range (BASE..HEAD) or set review.base")
    return found


def compute(git: Git, base: str, head: str, lines: bool = True) -> Change:
    """The change base..head; `lines=False` skips the added-line map (the gate needs only files)."""
    files: dict[str, FileChange] = {}
    status = git.out(
        "-c", "core.quotePath=false", "diff", "--name-status", "-z", "-M", "--no-color", base, head
    ).split("\0")
    i = 0
    while i < len(status) - 1:
        code = status[i]
        if not code:
            i += 1
            continue
        if code[0] in "RC":
            old, new = status[i + 1], status[i + 2]
            files[new] = FileChange(new, "R" if code[0] == "R" else "A", old)
            i += 3
        else:
            path = status[i + 1]
            files[path] = FileChange(path, code[0])
            i += 2
    raw = b""
    if lines:
        raw = git.run(
            "-c", "core.quotePath=false", "diff", "-U0", "-M", "--no-color", "--no-ext-diff", base, head
        ).stdout
    current: FileChange | None = None
    for line in raw.split(b"\n"):
        if line.startswith(b"+++ "):
            name = line[4:].decode("utf-8", "surrogateescape").rstrip("\t")
            current = files.get(name[2:]) if name.startswith("b/") else None
        elif line.startswith(b"@@") and current is not None:
            m = _HUNK.match(line)
            if m:
                start, count = int(m.group(1)), int(m.group(2) or b"1")
                current.added.update(range(start, start + count))
    span = head if base == EMPTY_TREE else f"{base}..{head}"
    log = [e.split("\0") for e in git.out("log", "--format=%H%x00%at%x00%ae%x00%ce", span).splitlines()]
    log = [e for e in log if len(e) == 4]
    commits = [entry[0] for entry in log]
    # every author and committer of every commit of the change is an author of the change
    authors = {who.strip().lower() for entry in log for who in entry[2:] if who.strip()}
    first_ts = min((float(entry[1]) for entry in log), default=None)
    return Change(base, head, files, commits, authors, first_ts)
