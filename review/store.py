"""The git-native review store: records appended to notes under `refs/notes/ect/*`.

Each notes ref maps a commit to a blob of newline-separated JSON records. Appending
rewrites that one blob with the new line added; sharing merges notes refs with
`git notes merge -s cat_sort_uniq`, so two clones' records are unioned without
conflicts (the design of google/git-appraise).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ect.review import records as rec
from ect.review.gitcmd import Git, GitError

from ect.errors import EctError

SYNC_PREFIX = "refs/notes/ect-sync/"
FETCH = (
    "-c",
    "maintenance.auto=false",
    "-c",
    "gc.auto=0",
    "fetch",
    "--quiet",
    "--no-tags",
    "--no-write-fetch-head",
)


@dataclass
class Store:
    """All review records of one repository, read lazily, one ref at a time."""

    git: Git
    problems: list[str] = field(default_factory=list)
    _cache: dict[str, list[rec.Record]] = field(default_factory=dict)
    _focus: tuple[frozenset[str], dict[str, str]] | None = None

    def focus(self, commits: Iterable[str], needles: dict[str, str] | None = None) -> None:
        """Read from now on only the notes on `commits`, plus the notes of ref R that contain
        `needles[R]` (approvals: the change's patch-id, for approvals carried from an identical
        diff; reviews: the head's tree, for a check of the same tree on another commit). The gate
        needs nothing else, so it does not parse a busy repository's whole history on every push."""
        self._focus = (frozenset(commits), {k: v for k, v in (needles or {}).items() if v})
        self._cache.clear()

    def records(self, ref: str) -> list[rec.Record]:
        """Every valid record under `refs/notes/ect/<ref>` (problems collected, not raised)."""
        self._load([ref])
        return self._cache[ref]

    def of_type(self, *kinds: str) -> list[rec.Record]:
        refs = sorted({rec.REF_FOR_TYPE[k] for k in kinds})
        self._load(refs)
        return [r for ref in refs for r in self._cache[ref] if r.type in kinds]

    def preload(self, *refs: str) -> None:
        self._load(list(refs))

    def server_log(self) -> list[rec.Record]:
        """The server's own `received` records (`refs/notes/ect-server/log`, fetched read-only)."""
        return self._load_ref("ect-server", rec.SERVER_LOG)

    def _load(self, refs: list[str]) -> None:
        for ref in refs:
            self._load_ref(ref, rec.NOTES_PREFIX + ref)

    def _load_ref(self, ref: str, full: str) -> list[rec.Record]:
        """Read one notes ref with one `ls-tree` (sizes: an oversized note is never read) and one
        `cat-file --batch` for all its blobs."""
        if ref in self._cache:
            return self._cache[ref]
        if self._focus is not None and ref != "ect-server":
            commits, needles = self._focus
            extra: set[str] = set()
            if ref in needles:
                extra = _grep_notes(self.git, full, needles[ref])
            pairs = notes_on(self.git, full, sorted(commits | extra), self.problems)
        else:
            pairs = list_notes(self.git, full, self.problems)
        blobs = self.git.cat_batch(sorted({blob for blob, _ in pairs}))
        out: list[rec.Record] = []
        for blob, commit in pairs:
            found, problems = rec.parse_note(blobs.get(blob, b"").decode("utf-8", "replace"), commit, ref)
            out.extend(found)
            self.problems.extend(problems)
        out.sort(key=lambda r: (r.ts, r.note_commit))  # stable: ties keep the note's line order
        self._cache[ref] = out
        return out

    def append(self, data: dict[str, object]) -> None:
        """Append one record to the note of its commit."""
        kind = str(data["type"])
        ref = rec.REF_FOR_TYPE[kind]
        full = rec.NOTES_PREFIX + ref
        commit = str(data["commit"])
        existing = self.git.run("notes", f"--ref={full}", "show", commit, check=False)
        text = existing.stdout if existing.returncode == 0 else b""  # bytes: kept exactly (append-only)
        if text and not text.endswith(b"\n"):
            text += b"\n"
        text += (rec.dumps(dict(data)) + "\n").encode()
        blob = self.git.out("hash-object", "-w", "--stdin", input=text).strip()
        self.git.run("notes", f"--ref={full}", "add", "-f", "-C", blob, commit)
        self._cache.pop(ref, None)

    def append_many(self, items: Iterable[dict[str, object]]) -> int:
        count = 0
        for item in items:
            self.append(item)
            count += 1
        return count


def list_notes(git: Git, full: str, problems: list[str] | None = None) -> list[tuple[str, str]]:
    """(blob, annotated commit) of every note under `full` that is at most MAX_NOTE_BYTES."""
    proc = git.run("ls-tree", "-r", "-l", "-z", full, "--", check=False)
    if proc.returncode != 0:
        return []
    out: list[tuple[str, str]] = []
    for entry in proc.stdout.decode("utf-8", "replace").split("\0"):
        meta, _, path = entry.partition("\t")
        parts = meta.split()
        commit = path.replace("/", "")
        if len(parts) != 4 or parts[1] != "blob" or not _HEX40.fullmatch(commit):
            continue
        if not parts[3].isdigit() or int(parts[3]) > rec.MAX_NOTE_BYTES:
            if problems is not None:
                problems.append(f"{full} note on {commit[:12]}: over {rec.MAX_NOTE_BYTES} bytes, skipped")
            continue
        out.append((parts[2], commit))
    return out


_HEX40 = re.compile(r"[0-9a-f]{40}")


def notes_on(git: Git, full: str, commits: Sequence[str], problems: list[str]) -> list[tuple[str, str]]:
    """(blob, commit) of the notes under `full` on `commits`, whatever the notes tree's fan-out,
    with one `cat-file --batch-check` (oversized notes reported and left out)."""
    if not commits or git.maybe_rev(full) is None:
        return []
    names = [
        f"{full}:{path}" for c in commits for path in (c, f"{c[:2]}/{c[2:]}", f"{c[:2]}/{c[2:4]}/{c[4:]}")
    ]
    proc = git.run("cat-file", "--batch-check", input="".join(n + "\n" for n in names).encode(), check=False)
    out: list[tuple[str, str]] = []
    for name, line in zip(names, proc.stdout.decode().splitlines(), strict=False):
        parts = line.split()
        if len(parts) != 3 or parts[1] != "blob":
            continue
        commit = name.partition(":")[2].replace("/", "")
        if int(parts[2]) > rec.MAX_NOTE_BYTES:
            problems.append(f"{full} note on {commit[:12]}: over {rec.MAX_NOTE_BYTES} bytes, skipped")
            continue
        out.append((parts[0], commit))
    return out


def _grep_notes(git: Git, full: str, needle: str) -> set[str]:
    """The commits whose note under `full` contains `needle` (one `git grep` over the notes tree)."""
    proc = git.run("grep", "-l", "-F", "-z", "-e", needle, full, "--", check=False)
    out: set[str] = set()
    for name in proc.stdout.decode("utf-8", "replace").split("\0"):
        commit = name.partition(":")[2].replace("/", "")
        if _HEX40.fullmatch(commit):
            out.add(commit)
    return out


def _sync_namespace(git: Git, remote: str) -> str:
    names = git.remotes()
    label = remote
    if remote not in names or not re.fullmatch(r"[A-Za-z0-9._-]+", remote):
        label = "url-" + hashlib.sha1(remote.encode()).hexdigest()[:12]
    return f"{SYNC_PREFIX}{label}/"


def check_remote(git: Git, remote: str) -> None:
    if remote not in git.remotes() and not ("/" in remote or ":" in remote):
        raise EctError(f"no git remote named '{remote}' (add one with `git remote add {remote} URL`)")


def _refs(git: Git, *prefixes: str) -> dict[str, str]:
    out = git.out("for-each-ref", "--format=%(refname) %(objectname)", *prefixes)
    return dict(line.split() for line in out.splitlines() if line.strip())


def _fetch_needed(git: Git, remote: str, specs: Sequence[str], have: dict[str, str]) -> bool:
    """Whether a fetch would change anything: one `ls-remote` instead of a fetch negotiation."""
    pairs = []
    for spec in specs:
        src, _, dst = spec.lstrip("+").partition(":")
        pairs.append((src.partition("*"), dst.partition("*")))
    proc = git.run("ls-remote", remote, *(f"{head}*{tail}" for (head, _, tail), _ in pairs), check=False)
    if proc.returncode != 0:
        return True  # let the fetch report the problem
    wanted: dict[str, str] = {}
    for line in proc.stdout.decode().splitlines():
        sha, _, name = line.partition("\t")
        for (head, _, tail), (dhead, _, dtail) in pairs:
            if name.startswith(head) and name.endswith(tail) and len(name) >= len(head) + len(tail):
                middle = name[len(head) : len(name) - len(tail)]
                wanted[dhead + middle + dtail] = sha
    return any(have.get(name) != sha for name, sha in wanted.items())


def pull(git: Git, remote: str, extra_specs: Sequence[str] = ()) -> list[str]:
    """Fetch the remote's `refs/notes/ect/*` (and `extra_specs`, in the same fetch) and merge
    the notes into ours; returns the notes refs that changed. Refspecs are patterns (`*`)."""
    check_remote(git, remote)
    ns = _sync_namespace(git, remote)
    specs = [f"+{rec.NOTES_PREFIX}*:{ns}*", f"+{rec.SERVER_PREFIX}*:{rec.SERVER_PREFIX}*", *extra_specs]
    have = _refs(git, "refs/notes/", f"refs/remotes/{remote}/")
    if _fetch_needed(git, remote, specs, have):
        proc = git.run(*FETCH, remote, *specs, check=False)
        if proc.returncode != 0:
            lines = proc.stderr.decode("utf-8", "replace").strip().splitlines()
            raise EctError(
                f"cannot fetch review notes from '{remote}': {lines[-1] if lines else proc.returncode}"
            )
    merged: list[str] = []
    ours = _refs(git, rec.NOTES_PREFIX)
    for name, sha in _refs(git, ns).items():
        local = rec.NOTES_PREFIX + name[len(ns) :]
        current = ours.get(local)
        if current == sha:
            continue
        if current is None:
            git.run("update-ref", local, sha)
        elif git.is_ancestor(sha, current):
            continue
        elif git.is_ancestor(current, sha):
            git.run("update-ref", local, sha, current)
        else:
            try:
                git.run("notes", f"--ref={local}", "merge", "-q", "-s", "cat_sort_uniq", name)
            except GitError as exc:
                raise EctError(f"cannot merge review notes {local}: {exc}") from None
        merged.append(local)
    return merged


def push(git: Git, remote: str, attempts: int = 3) -> None:
    """Merge the remote's records into ours, then push ours (retried if someone pushed meanwhile)."""
    for attempt in range(attempts):
        pull(git, remote)
        if not git.out("for-each-ref", rec.NOTES_PREFIX).strip():
            return
        proc = git.run("push", "--quiet", remote, f"{rec.NOTES_PREFIX}*:{rec.NOTES_PREFIX}*", check=False)
        if proc.returncode == 0:
            return
        lines = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        rejected = any("rejected" in line or "fetch first" in line for line in lines)
        if not rejected or attempt == attempts - 1:
            detail = " / ".join(line.removeprefix("remote: ").strip() for line in lines[-3:])
            raise EctError(f"cannot push review notes to '{remote}': {detail}")
