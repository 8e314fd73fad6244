"""The training corpus: the repository's git-tracked Python files, deduplicated, scrubbed and split."""

from __future__ import annotations

import fnmatch
import hashlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from ect.models.fim import Span, call_spans, choose_span, examples_from_file, fim_example, line_offsets
from ect.models.index import SymbolIndex, module_name_for
from ect.models.secrets import scrub

from ect.errors import EctError

MAX_FILE_BYTES = 400_000


@dataclass
class SourceFile:
    path: str  # repo-relative posix
    module: str
    text: str  # scrubbed


@dataclass
class Corpus:
    train: list[SourceFile] = field(default_factory=list)
    held_out: list[SourceFile] = field(default_factory=list)
    masked: int = 0
    duplicates: int = 0

    @property
    def lines(self) -> int:
        return sum(f.text.count("\n") + 1 for f in self.train + self.held_out)


def is_held_out(path: str, percent: int) -> bool:
    """Deterministic split by file: a hash of the path, not of the content (edits keep the split)."""
    return int.from_bytes(_path_hash(path), "big") % 100 < percent


def _path_hash(path: str) -> bytes:
    return hashlib.blake2b(path.encode(), digest_size=8).digest()


def fold_split(paths: Sequence[str], k: int) -> dict[str, int]:
    """Rotating held-out folds by file: each path's fold in 0..k-1. The paths, ordered by a hash of the
    path (not of the content), are dealt out in turn, so the folds are disjoint, cover every file, differ
    in size by at most one and are the same on every run."""
    if k < 2:
        raise EctError(f"folds: need at least 2 (got {k})")
    unique = sorted(set(paths), key=lambda p: (_path_hash(p), p))
    if len(unique) < k:
        raise EctError(f"folds: {len(unique)} files cannot make {k} folds")
    return {p: i % k for i, p in enumerate(unique)}


def tracked_python_files(root: Path) -> list[str]:
    """Repo-relative paths of the git-tracked `.py` files."""
    import git

    try:
        repo = git.Repo(root, search_parent_directories=False)
        out = repo.git.ls_files("-z", "--", "*.py")
    except (git.exc.InvalidGitRepositoryError, git.exc.NoSuchPathError):
        raise EctError(f"{root} is not a git repository") from None
    except git.exc.GitCommandError as exc:
        raise EctError(f"git ls-files failed: {exc.stderr.strip() or exc}") from None
    return sorted(p for p in out.split("\0") if p)


def _source_bytes(path: Path, max_bytes: int) -> bytes | None:
    """The file's bytes, or None when it is unreadable, blank or larger than `max_bytes`."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return data if data.strip() and len(data) <= max_bytes else None


def build_corpus(
    root: Path,
    held_out_percent: int = 10,
    exclude: Sequence[str] = (),
    fold: tuple[int, int] | None = None,
) -> Corpus:
    """Read, deduplicate, scrub and split the tracked Python files of `root`: `held_out_percent` by a
    hash of the path, or with `fold` = (i, k) fold i of `fold_split` held out (k-fold evaluation)."""
    corpus = Corpus()
    items: list[SourceFile] = []
    seen: set[str] = set()
    for rel in tracked_python_files(root):
        if any(fnmatch.fnmatch(rel, pat) for pat in exclude):
            continue
        path = root / rel
        data = _source_bytes(path, MAX_FILE_BYTES)
        if data is None:
            continue
        digest = hashlib.sha1(data).hexdigest()
        if digest in seen:
            corpus.duplicates += 1
            continue
        seen.add(digest)
        text, masked = scrub(data.decode("utf-8", "replace"))
        corpus.masked += masked
        items.append(SourceFile(rel, module_name_for(path, root), text))
    if fold is not None:
        i, k = fold
        if not 0 <= i < k:
            raise EctError(f"folds: fold {i} does not exist in {k} folds")
        folds = fold_split([f.path for f in items], k)
        for item in items:
            (corpus.held_out if folds[item.path] == i else corpus.train).append(item)
        return corpus
    for item in items:
        (corpus.held_out if is_held_out(item.path, held_out_percent) else corpus.train).append(item)
    if held_out_percent > 0 and not corpus.held_out and len(corpus.train) > 1:
        corpus.held_out.append(corpus.train.pop())  # tiny repositories still get a held-out file
    if not corpus.train and len(corpus.held_out) > 1:
        corpus.train.append(corpus.held_out.pop(0))  # ... and a training file
    return corpus


def internal_calls(
    index: SymbolIndex, f: SourceFile, spans: Sequence[tuple[int, int, str]] | None = None
) -> list[tuple[int, int, str]]:
    """Call sites in `f` (of `spans` when given) whose callee resolves to the repository's own code."""
    from ect.models.retrieval import Resolver

    resolver = Resolver(index, f.module, f.text)
    out = []
    for start, end, dotted in call_spans(f.text) if spans is None else spans:
        if resolver.resolve_callee(dotted, start) is not None:
            out.append((start, end, dotted))
    return out


def _ctx_for(index: SymbolIndex, module: str, text: str, cursor: int, _middle: str) -> list[str]:
    from ect.models.retrieval import context_lines

    return context_lines(index, module, text, cursor)


def training_examples(
    corpus: Corpus,
    index: SymbolIndex,
    seed: int,
    files: Sequence[SourceFile] | None = None,
    fim_per_kchar: float = 1.5,
    internal_weight: int = 3,
) -> list[str]:
    """Causal chunks and FIM examples (retrieval context included); call sites are favoured as spans,
    calls into the repository's own code `internal_weight` times as much as others."""
    rng = random.Random(seed)
    out: list[str] = []
    for f in files if files is not None else corpus.train:
        spans = call_spans(f.text)
        weighted = spans + internal_calls(index, f, spans) * (internal_weight - 1)
        ctx_for: Callable[[str, int, str], list[str]] = partial(_ctx_for, index, f.module)
        n_fim = max(2, int(len(f.text) / 1000 * fim_per_kchar))
        out.extend(examples_from_file(f.text, rng, n_fim, ctx_for=ctx_for, calls=weighted))
    rng.shuffle(out)
    return out


def internal_call_sites(index: SymbolIndex, f: SourceFile) -> dict[str, list[tuple[int, int]]]:
    """The call sites in `f` of each internal function, method or class, by its qualified name."""
    from ect.models.retrieval import Resolver

    resolver = Resolver(index, f.module, f.text)
    out: dict[str, list[tuple[int, int]]] = {}
    for start, end, dotted in call_spans(f.text):
        sym = resolver.resolve_callee(dotted, start)
        if sym is not None:
            out.setdefault(sym.qualname, []).append((start, end))
    return out


def api_examples(
    corpus: Corpus,
    index: SymbolIndex,
    seed: int,
    files: Sequence[SourceFile] | None = None,
    *,
    per_api: int,
    line_fraction: float = 0.5,
    prefix_chars: tuple[int, int] = (160, 560),
    suffix_chars: tuple[int, int] = (0, 120),
) -> list[str]:
    """The cheap recipe ("calls"): short fill-in-the-middle examples centred on internal-API call spans,
    at most `per_api` call sites of each internal callable per epoch (a different sample each epoch: the
    whole API surface in one pass, the most used callables with more of their calls but not all), plus
    `line_fraction` as many whole-line or rest-of-line spans to keep the general next-line skill.
    No causal chunks: about 150-250 tokens per supervised span instead of a 512-token block."""
    rng = random.Random(seed)
    sites: dict[str, list[tuple[SourceFile, int, int]]] = {}
    chosen = list(files if files is not None else corpus.train)
    for f in chosen:
        for qual, spans in internal_call_sites(index, f).items():
            sites.setdefault(qual, []).extend((f, s, e) for s, e in spans)
    picks: list[tuple[SourceFile, Span]] = []
    for qual in sorted(sites):
        group = sites[qual]
        for f, s, e in rng.sample(group, min(per_api, len(group))):
            picks.append((f, Span(s, e, "call")))
    n_lines = int(len(picks) * line_fraction) if picks else 4 * len(chosen)
    weights = [len(f.text) for f in chosen]
    offsets: dict[str, list[int]] = {}
    for f in rng.choices(chosen, weights=weights, k=n_lines) if chosen else []:
        offs = offsets.setdefault(f.path, line_offsets(f.text))
        span = choose_span(f.text, rng, (), offs)
        if span is not None and span.kind in ("line", "mid") and span.end > span.start:
            picks.append((f, span))
    out: list[str] = []
    for f, span in picks:
        pstart = max(0, span.start - rng.randint(*prefix_chars))
        nl = f.text.find("\n", pstart)
        pstart = nl + 1 if 0 <= nl < span.start and pstart > 0 else pstart
        send = min(len(f.text), span.end + rng.randint(*suffix_chars))
        nl = f.text.rfind("\n", span.end, send)
        send = nl + 1 if nl > span.end and send < len(f.text) else send
        ctx = _ctx_for(index, f.module, f.text, span.start, "")
        prefix, suffix, middle = (
            f.text[pstart : span.start],
            f.text[span.end : send],
            f.text[span.start : span.end],
        )
        out.append(fim_example(ctx, prefix, suffix, middle))
    rng.shuffle(out)
    return out


def stdlib_files() -> list[Path]:
    """The Python standard library's source files: code every machine has (the default base's diet)."""
    import sysconfig

    root = Path(sysconfig.get_paths()["stdlib"])
    return [
        p
        for p in sorted(root.rglob("*.py"))
        if "site-packages" not in p.parts and "dist-packages" not in p.parts
    ]


def rehearsal_examples(target_chars: int, seed: int, max_file_bytes: int = MAX_FILE_BYTES) -> list[str]:
    """About `target_chars` of general Python (standard-library files, scrubbed, as causal and FIM
    examples) to mix into fine-tuning, so that the model keeps what it knew about code in general."""
    rng = random.Random(seed)
    files = stdlib_files()
    rng.shuffle(files)
    out: list[str] = []
    total = 0
    for path in files:
        if total >= target_chars:
            break
        data = _source_bytes(path, max_file_bytes)
        if data is None:
            continue
        text, _ = scrub(data.decode("utf-8", "replace"))
        text = text[: max(4000, target_chars - total)]
        examples = examples_from_file(text, rng, n_fim=max(1, len(text) // 1000))
        out.extend(examples)
        total += sum(len(e) for e in examples)
    return out
