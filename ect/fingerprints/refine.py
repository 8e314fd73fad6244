"""Narrow the static selection with fingerprints, and only where they prove it safe.

A recorded test is skipped when one of its passing fingerprints still matches: every
block it executed, the module level of every file it may import, every file it read,
every directory it listed, and the environment are unchanged (the result cache; it works
across branches and worktrees). Otherwise it is selected, with the change that selected it.

Static selection still decides for what fingerprints cannot reason about: a change that
is not a modified, previously recorded Python module or a data file that recorded tests
read (a module over `max_file_size` is never recorded); test files whose recording is
missing, stale or partial; new tests. A corrupt database, or a changed file read at import
time, runs everything.
"""

from __future__ import annotations

import functools
import json
import os
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ect.changes import Change
from ect.config import Config
from ect.fingerprints import constants
from ect.fingerprints.blocks import SKELETON, FileBlocks, digest_bytes
from ect.fingerprints.branches import ANY, Changed, base, expand, hit, label, reached, spread
from ect.fingerprints.recorder import listing_digest, read_digest
from ect.fingerprints.skeleton import (
    DELTA_ALGORITHM,
    Reader,
    SkeletonDelta,
    delta_from_json,
    delta_to_json,
    find_readers,
    module_use,
    read_from_json,
    read_in,
    read_to_json,
    skeleton_delta,
    test_function,
)
from ect.fingerprints.store import CLOSURE, DATA, DIR, RAN, Record, Store
from ect.graph import Graph
from ect.selection import Selection, select

PASSING = ("passed", "skipped")
_T = TypeVar("_T")


@dataclass
class Current:
    """The working tree as fingerprints see it, computed lazily."""

    root: Path
    graph: Graph
    env: str
    store: Store
    _blocks: dict[str, FileBlocks | None] = field(default_factory=dict)
    _data: dict[str, str | None] = field(default_factory=dict)
    _dirs: dict[str, str | None] = field(default_factory=dict)
    _versions: dict[tuple[str, str], Any] = field(default_factory=dict)
    _deltas: dict[tuple[str, str], SkeletonDelta | None] = field(default_factory=dict)
    _changed: dict[tuple[str, str], Changed] = field(default_factory=dict)
    # files that may read a module-level name whose value changed (see `ect.fingerprints.skeleton`)
    readers: dict[str, Reader] = field(default_factory=dict)
    instrumented: set[str] = field(default_factory=set)
    changed_names: dict[str, frozenset[str]] = field(default_factory=dict)  # path -> its changed names
    called: frozenset[str] = frozenset()  # changed names that a plain call does not read (functions)
    removed: frozenset[str] = frozenset()  # changed names no longer bound: importing one is a read
    escaped: dict[str, str] = field(default_factory=dict)  # path -> why its names may be read dynamically
    harvested: set[str] = field(default_factory=set)  # sources some test read for their literals
    new_cache: dict[str, str] = field(default_factory=dict)  # computed here, for `Store.cache_many`

    def py_digest(self, path: str) -> str | None:
        info = self.graph.infos.get(path)
        if info is not None:
            return info.digest
        return self.data_digest(path)

    def changed(self, kind: int, path: str, digest: str) -> bool:
        """Whether a file version as `files` stores it ("" for no file) is not the current one."""
        if kind == DATA:
            return self.read_changed(path, digest or None)
        now = self.dir_digest(path) if kind == DIR else self.py_digest(path)
        return (now or "") != digest

    def read_changed(self, path: str, digest: str | None) -> bool:
        """Whether a recorded read's digest no longer holds (a constants read: its literals)."""
        source = constants.source_of(path)
        if source is None or digest is None:
            return self.data_digest(path) != digest
        content, _, literals = digest.partition(":")
        if self.py_digest(source) == content:
            return False  # the same file: no need to parse it
        blocks = self.blocks(source) if source in self.graph.infos else None
        if blocks is not None and blocks.literals is not None:  # parsed once for blocks and literals
            return constants.literals_changed(literals, blocks.literals)
        now = self.data_digest(path)
        return now is None or constants.literals_changed(literals, now.partition(":")[2])

    def data_digest(self, path: str) -> str | None:
        if path not in self._data:
            self._data[path] = read_digest(self.root, path)
        return self._data[path]

    def dir_digest(self, path: str) -> str | None:
        if path not in self._dirs:
            self._dirs[path] = listing_digest(self.root / path)
        return self._dirs[path]

    def blocks(self, path: str) -> FileBlocks | None:
        if _too_big(self.graph, path):
            return None  # not parsed (a generated file of many MB costs seconds)
        if path not in self._blocks:
            self._blocks[path] = self._parse(path)
        return self._blocks[path]

    def _parse(self, path: str) -> FileBlocks | None:
        return self.store.file_blocks(self.root, path, self.py_digest(path), path in self.harvested)

    def changed_blocks(self, path: str, digest: str, old: dict[str, str], new: FileBlocks) -> Changed:
        """The blocks of version `digest` of `path` (checksums `old`) that differ now."""
        key = (path, digest)
        found = self._changed.get(key)
        if found is None:
            names, known = reached(old, new.blocks)
            found = self._changed[key] = Changed(names, known | {SKELETON})
        return found

    def delta(self, path: str, digest: str) -> SkeletonDelta | None:
        """What the module-level change of `path` since version `digest` reaches (None: every
        importer). Doctest modules and conftests keep the whole-module rule."""
        key = (path, digest)
        if path in self.escaped:
            return None
        if key not in self._deltas:
            found = None
            now = self.py_digest(path)
            # parsing both versions of a big module takes tens of ms, and each edit-run round leaves
            # versions behind whose delta to the current content stays the same: kept in the store
            cache_key = f"delta:{DELTA_ALGORITHM}:{digest}:{now}"
            cached = self.store.cached(cache_key) if now else None
            if cached is not None:
                found = delta_from_json(cached)
            elif (
                os.path.basename(path) != "conftest.py"
                and (old := self.store.source(path, digest)) is not None
            ):
                try:
                    new = (self.root / path).read_bytes()
                except OSError:
                    new = None
                if new is not None and digest_bytes(new) == now:
                    found = skeleton_delta(old, new, path)
                    self.new_cache[cache_key] = delta_to_json(found)
            self._deltas[key] = found
            if found is not None and found.names:
                self.changed_names[path] = self.changed_names.get(path, frozenset()) | found.names
                self.called |= found.functions
                self.removed |= found.removed
        return self._deltas[key]

    def reader_reasons(
        self,
        path: str,
        names: list[str],
        in_closure: bool,
        relevant: set[str] | None = None,
        rec: Record | None = None,
    ) -> list[str]:
        """Why a dependency on `path` (blocks `names` run there) may see a changed module-level
        name (only names in `relevant`, when given: those of the file versions the test saw;
        in its own test module only its own test function, when `rec` is given and that is safe)."""
        reader = self.readers.get(path)
        if reader is None:
            return []

        def hit(found: set[str]) -> str:
            found = found if relevant is None else found & relevant
            if not found:
                return ""
            shown = ", ".join(sorted(found)[:3])
            where = sorted(p for p, changed in self.changed_names.items() if changed & found)
            return f"{shown} (module-level value in {', '.join(where[:2])} changed)"

        if path not in self.instrumented:  # a test module or conftest: judged as a whole file
            if rec is not None and rec.file == path and reader.only_tests:
                own = reader.blocks.get(test_function(rec.nodeid), set())
                what = hit(own)
                return [f"{path}::{test_function(rec.nodeid)} reads {what}"] if what else []
            what = hit(reader.names())
            return [f"{path} reads {what}"] if what else []
        if in_closure or SKELETON in names:
            what = hit(reader.skeleton)
            if what:
                return [f"module level of {path} reads {what}"]
        for name in sorted(set(names) & set(reader.blocks)):
            what = hit(reader.blocks[name])
            if what:
                return [f"executed {path}::{name}, which reads {what}"]
        if in_closure:
            version = self.version(path, self.py_digest(path) or "")
            for name in sorted(set(reader.blocks) & set(version[1] if version else [])):
                what = hit(reader.blocks[name])
                if what:
                    return [f"{path}::{name} runs at import time and reads {what}"]
        return []

    def read_in(
        self, data: bytes, names: set[str], path: str, called: frozenset[str], removed: frozenset[str]
    ) -> tuple[Reader | None, dict[str, set[str]]]:
        """`skeleton.read_in`, kept in the store by content and question (every file is asked on
        each selection while some recorded version's module-level names differ from now)."""
        question = [sorted(names), sorted(called), sorted(removed)]
        compute = functools.partial(read_in, data, names, path, called, removed)
        return self._kept("read", data, question, compute, read_to_json, read_from_json)

    def module_use(self, data: bytes, names: list[str]) -> tuple[bool, bool]:
        """`skeleton.module_use`, kept in the store by content and names."""
        compute = functools.partial(module_use, data, names)
        return self._kept("use", data, names, compute, _flags_to_json, _two_flags)

    def _kept(
        self,
        kind: str,
        data: bytes,
        question: Any,
        compute: Callable[[], _T],
        encode: Callable[[_T], str],
        decode: Callable[[str], _T | None],
    ) -> _T:
        """`compute()`'s answer about the content `data`, kept in the store under the question
        (written with the selection's other new answers, `Store.cache_many`); a kept answer that
        does not decode is computed again."""
        asked = digest_bytes(json.dumps(question).encode())
        key = f"{kind}:{DELTA_ALGORITHM}:{digest_bytes(data)}:{asked}"
        text = self.new_cache.get(key) or self.store.cached(key)
        found = decode(text) if text is not None else None
        if found is None:
            found = compute()
            self.new_cache[key] = encode(found)
        return found

    def relevant_names(self, rec: Record) -> set[str]:
        """Changed module-level names of the file versions `rec` depended on."""
        found: set[str] = set()
        for path in self.changed_names:
            dep = rec.deps.get("py", {}).get(path)
            if dep is not None and dep[0] != self.py_digest(path):
                delta = self.delta(path, dep[0])
                if delta is not None:
                    found |= delta.names
        return found

    def version(self, path: str, digest: str) -> Any:
        key = (path, digest)
        if key not in self._versions:
            self._versions[key] = self.store.version(path, digest)
        return self._versions[key]


def _flags_to_json(flags: tuple[bool, bool]) -> str:
    return json.dumps(list(flags))


def _two_flags(text: str) -> tuple[bool, bool] | None:
    """`module_use`'s answer as kept (None: not such an answer)."""
    try:
        value = json.loads(text)
    except ValueError:
        return None
    ok = isinstance(value, list) and len(value) == 2 and all(isinstance(v, bool) for v in value)
    return (value[0], value[1]) if ok else None


def _via(rec: Record) -> dict[str, dict[str, str]]:
    """The rules that charged blocks to the record's test (decoded when a reason needs them)."""
    if "via_json" in rec.deps:
        rec.deps["via"] = json.loads(zlib.decompress(rec.deps.pop("via_json")))
    via: dict[str, dict[str, str]] = rec.deps.get("via", {})
    return via


def what_changed(rec: Record, cur: Current, first_only: bool = False) -> list[str]:
    """Why `rec` no longer describes the test (empty: it still does)."""
    reasons: list[str] = []
    if rec.env != cur.env:
        reasons.append("the environment changed (Python or installed distributions)")
    if rec.outcome not in PASSING:
        reasons.append(f"{rec.outcome} last time")
    if rec.deps.get("opaque"):
        reasons.append("it starts a subprocess, whose code ect cannot see: runs on every change")
    relevant = cur.relevant_names(rec) if cur.readers else set()
    for path, (digest, names, in_closure) in rec.deps.get("py", {}).items():
        if reasons and first_only:
            return reasons
        if relevant:
            reasons += cur.reader_reasons(path, names, in_closure, relevant, rec)
        now = cur.py_digest(path)
        if now == digest:
            continue
        if now is None:
            reasons.append(f"{path} was deleted")
            continue
        version = cur.version(path, digest)
        old = version[0] if version else None
        new = cur.blocks(path) if old is not None else None
        if old is None or new is None:
            why = "over max_file_size" if _too_big(cur.graph, path) else "does not parse"
            reasons.append(f"{path} changed ({'no block data recorded' if old is None else why})")
            continue
        delta = cur.delta(path, digest) if old["skeleton"] != new.skeleton else None
        reads = delta.blocks if delta is not None else frozenset()
        chg = cur.changed_blocks(path, digest, old["blocks"], new)

        def differs(name: str, old: dict[str, Any] = old, new: FileBlocks = new, chg: Changed = chg) -> bool:
            return chg.differs(old["blocks"], new.blocks, name)

        if in_closure or SKELETON in names:
            if old["skeleton"] != new.skeleton and delta is None:
                escaped = f"; {cur.escaped[path]}" if path in cur.escaped else ""
                reasons.append(
                    f"module level of {path} changed (imported by the test or code it ran{escaped})"
                )
                continue
            for name in version[1]:
                if name != SKELETON and (differs(name) or base(name) in reads):
                    reasons.append(
                        f"{path}::{name} changed (it runs while a module is imported or before collection, "
                        "so every test importing the file may see it)"
                    )
            for name in old.get("memo", []):
                if name not in names and (differs(name + ANY) or name in reads):
                    reasons.append(f"{path}::{name} changed (memoised: its cached results outlive one test)")
        # the names that may give a reason, found with set operations (most tests run many blocks)
        given = set(names)
        maybe = (given & chg.names) | (given - chg.known)
        if reads:
            maybe.update(n for n in names if base(n) in reads)
        for name in sorted(maybe):
            changed = differs(name)
            if not changed and not (delta is not None and base(name) in reads):
                continue
            rule = _via(rec).get(path, {}).get(name)
            what = f"{path}::{label(name)}"
            how = f"{what} ran {rule}" if rule else f"executed {what}"
            if changed:
                gone = name not in new.blocks and ANY not in name
                reasons.append(f"{how}, which {'was removed' if gone else 'changed'}")
            elif delta is not None:
                read = ", ".join(sorted(delta.names)[:3]) or "its default values"
                reasons.append(f"{how}, which reads {read} (module level of {path} changed)")
    for path, digest in rec.deps.get("data", {}).items():
        if cur.read_changed(path, digest):
            reasons.append(f"read {constants.describe(path)}, which changed")
    for path, digest in rec.deps.get("dirs", {}).items():
        if cur.dir_digest(path) != digest:
            reasons.append(f"listed directory {path}, whose entries changed")
    return reasons


@dataclass
class Reach:
    """Which dependencies on one changed file version a change reaches (mirrors `what_changed`)."""

    closure: bool  # module level, import-time or memoised blocks changed: every importer
    everything: bool  # deleted, unparseable or unknown, or a data file: every dependant
    changed: frozenset[str]  # blocks that changed or were removed (`expand`ed), or read a changed name
    in_closure: bool = False
    hits: frozenset[str] = frozenset()  # every block name `hit(changed, name)` holds for, of `known`
    known: frozenset[str] = frozenset()

    def reaches(self, names: list[str]) -> bool:
        if self.everything:
            return True
        if self.closure and (self.in_closure or SKELETON in names):
            return True
        if not self.hits.isdisjoint(names):
            return True
        if self.known.issuperset(names):
            return False  # the common case, at the speed of a set operation
        return any(hit(self.changed, n) for n in names if n != SKELETON)


def _reach(cur: Current, kind: int, path: str, digest: str) -> Reach:
    if kind not in (RAN, CLOSURE) or cur.py_digest(path) is None:
        return Reach(True, True, frozenset())
    version = cur.version(path, digest)
    old = version[0] if version else None
    new = cur.blocks(path) if old is not None else None
    if old is None or new is None:
        return Reach(True, True, frozenset())
    changed = frozenset(n for n, v in old["blocks"].items() if new.blocks.get(n) != v)
    closure = False
    if old["skeleton"] != new.skeleton:
        delta = cur.delta(path, digest)
        if delta is None:
            closure = True
        else:
            changed |= delta.blocks
    keys = old["blocks"].keys() | new.blocks.keys()
    hits = spread(changed, keys) - {SKELETON}
    known = frozenset(keys | {base(k) + ANY for k in keys} | {SKELETON})
    changed = expand(changed)
    closure = (
        closure
        or any(hit(changed, n) for n in version[1] if n != SKELETON)
        or any(n + ANY in changed for n in old.get("memo", []))
    )
    return Reach(closure, False, changed, kind == CLOSURE, hits, known)


def refine(
    root: Path,
    cfg: Config,
    graph: Graph,
    changes: list[Change],
    last_failed: dict[str, list[str]],
    store: Store,
    env: str,
) -> Selection:
    """The selection for `changes` using static analysis plus the recorded fingerprints."""
    recorded = store.nodeids()
    test_files = store.test_files()
    cur = Current(root, graph, env, store)
    versions_with_blocks = {path for path, _ in store.known_versions()}
    data_read = store.data_paths()
    cur.harvested = {s for s in map(constants.source_of, data_read) if s is not None}
    tests = [f for f in graph.files if _is_test(f, cfg)]
    known = {
        f
        for f in tests
        if f in test_files
        and test_files[f][0] == cur.py_digest(f)
        and all(n in recorded for n in test_files[f][1])
    }
    complete = bool(tests) and len(known) == len(tests)

    loaded = _loaded(store) if complete else None
    explained: list[Change] = []
    unexplained: list[Change] = []
    unloaded: list[str] = []
    big: list[str] = []
    for change in changes:
        if _too_big(graph, change.path):  # never fingerprinted: the import graph decides
            unexplained.append(change)
            big.append(change.path)
        elif _never_loaded(change, tests, versions_with_blocks, loaded):
            unloaded.append(change.path)  # only recorded readers of its text can depend on it
        elif _explained(change, tests, known, versions_with_blocks, data_read, complete):
            explained.append(change)
        else:
            unexplained.append(change)

    # failures that fingerprints know by node id are selected per test below
    unknown_failures = {f: ids for f, ids in last_failed.items() if not all(n in recorded for n in ids)}
    sel = select(cfg, graph, unexplained, unknown_failures)
    for path in big:
        sel.notes.append(
            f"{path}: over max_file_size ({cfg.max_file_size} bytes), so not fingerprinted: "
            "the import graph decides (every test that may import it runs)"
        )
    import_reads = _meta_json(store, "import_reads")
    for path, digest in import_reads.items():
        source = constants.source_of(path) or path
        if any(c.path == source for c in changes) and cur.read_changed(path, digest):
            what = "is" if source == path else "its literal constants are"
            sel.run_all_reasons.append(f"{source} changed and {what} read at import time (not by one test)")
    if sel.run_all:
        return sel

    for change in explained:
        sel.notes.append(f"{change.path}: {change.status}, judged per test by fingerprints")
    for path in unloaded:
        sel.notes.append(f"{path}: no recorded test imported it (only tests that read it run)")
    reach = select(cfg, graph, explained, None) if explained else Selection()
    # the recorded tests whose fingerprint no longer matches: only records that depend on a file
    # version that is not the current one (or that failed, ran elsewhere, start subprocesses)
    all_versions = store.file_versions()
    versions = {
        fid: (kind, path, digest)
        for fid, kind, path, digest in all_versions
        if cur.changed(kind, path, digest)
    }
    # versions only settled tests depend on need no judging (each is a parse and a diff)
    judged = store.settle(list(versions), env)
    versions = {fid: v for fid, v in versions.items() if fid in judged}
    reach_memo: dict[int, Reach] = {}
    readers = _find_readers(cur, versions, versions_with_blocks)
    reader_fids = {
        fid: (path, kind == CLOSURE)
        for fid, kind, path, _ in all_versions
        if path in readers and kind in (RAN, CLOSURE)
    }

    # changed versions by the module-level names that differ from the current content
    name_versions: dict[frozenset[str], list[int]] = {}
    for fid, (kind, path, digest) in versions.items():
        delta = cur._deltas.get((path, digest)) if kind in (RAN, CLOSURE) else None
        if delta is not None and delta.names and path in cur.changed_names:
            name_versions.setdefault(delta.names, []).append(fid)

    def reaches(fid: int, names: list[str]) -> bool | list[int]:
        """True, or the changed versions whose module-level names these blocks read (`stale_records`)."""
        if fid in versions:
            found = reach_memo.get(fid)
            if found is None:
                found = reach_memo[fid] = _reach(cur, *versions[fid])
            if found.reaches(names):
                return True
        reader = reader_fids.get(fid)
        if reader is None:
            return []
        return [
            source
            for changed, sources in name_versions.items()
            if cur.reader_reasons(reader[0], names, reader[1], set(changed))
            for source in sources
        ]

    changed_paths = {c.path for c in changes}
    changed: dict[str, list[str]] = {}
    stale = store.stale_records(list({*versions, *reader_fids}), env, reaches)
    store.cache_many(cur.new_cache)
    for nodeid, recs in stale.items():
        if recs[0].file not in graph.infos:
            continue  # its test file is gone
        # each record's reasons once: a passing record with none is the result cache (unchanged since
        # it passed); otherwise explain with the record closest to the current state
        whys: list[list[str]] = []
        for r in recs:
            whys.append(what_changed(r, cur))
            if not whys[-1] and r.outcome in PASSING:
                break
        else:
            changed[nodeid] = min(whys, key=len) or ["no passing fingerprint matches"]
    # doctests of a module whose module level changed read its namespace from their docstrings
    for (path, _), delta in cur._deltas.items():
        if delta is not None and path in test_files:
            for nodeid in test_files[path][1]:
                changed.setdefault(nodeid, [f"a doctest of {path}, whose module level changed"])
    by_file: dict[str, list[str]] = {}
    for nodeid in changed:
        by_file.setdefault(nodeid.split("::")[0], []).append(nodeid)

    uncollected = _meta_json(store, "uncollected")
    for test_file, reasons in reach.tests.items():
        if test_file in sel.tests:
            continue
        if test_file not in known and uncollected.get(test_file) == cur.py_digest(test_file):
            sel.notes.append(f"{test_file}: the full suite does not collect it (pytest settings); unchanged")
            continue
        if test_file not in known:
            for why in reasons:
                sel.add(test_file, why + " (no complete fingerprints for this file)")
            continue
        if test_file not in by_file:
            sel.notes.append(
                f"{test_file}: statically reachable, but none of its tests executed the change"
                + (" or reads a name it changed" if cur.changed_names else "")
            )
    for path, names in sorted(cur.changed_names.items()):
        shown = ", ".join(sorted(names)[:4]) + (", ..." if len(names) > 4 else "")
        sel.notes.append(
            f"{path}: its module level changed only {shown}: the tests that read or call them run, "
            "not every importer"
        )
    for test_file, nodeids in sorted(by_file.items()):
        if test_file in sel.tests:
            continue  # runs whole anyway
        # a parametrised test runs with all its parameters when the change may rename or add them
        # (code that runs at collection or import time changed); otherwise just the affected ones
        sel.nodes[test_file] = sorted(
            {
                n.split("[", 1)[0] if "[" in n and _may_reparametrise(n, changed[n], changed_paths) else n
                for n in nodeids
            }
        )
        for nodeid in sorted(nodeids):
            name = nodeid.split("::", 1)[1] if "::" in nodeid else "collecting the module (it ran no test)"
            sel.add(test_file, f"{name}: {'; '.join(changed[nodeid][:3])}")
    sel.fingerprinted = True
    return sel


def _find_readers(
    cur: Current, versions: dict[int, tuple[int, str, str]], instrumented: set[str]
) -> dict[str, Reader]:
    """Files that may read a module-level name whose value changed (see `skeleton.find_readers`);
    it also works out the changes' deltas, so `cur.changed_names` is complete."""
    for kind, path, digest in set(versions.values()):
        if kind in (RAN, CLOSURE) and cur.py_digest(path) is not None:
            version = cur.version(path, digest)
            new = cur.blocks(path) if version and version[0] else None
            if new is not None and version[0]["skeleton"] != new.skeleton:
                cur.delta(path, digest)
    for path in list(cur.changed_names):
        why = _escapes(cur, path, set())
        if not why and "__all__" in cur.changed_names[path]:
            why = _star_imported(cur, path)
        if why:  # the whole-module rule: some code may read every name of the module
            cur.escaped[path] = why
            del cur.changed_names[path]
            for key in [k for k in cur._deltas if k[0] == path]:
                cur._deltas[key] = None
    names = {n for found in cur.changed_names.values() for n in found}
    if not names:
        return {}
    origins = set(cur.changed_names)

    def sources() -> Iterator[tuple[str, bytes | None]]:
        for path in cur.graph.files:
            if path in origins or not path.endswith(".py"):
                continue
            try:
                data = None if _too_big(cur.graph, path) else (cur.root / path).read_bytes()
            except OSError:
                data = None
            yield path, data

    cur.readers = find_readers(sources(), names, cur.called, cur.removed, cur.read_in)
    cur.instrumented = instrumented
    return cur.readers


CONFIG_FILES = ("pyproject.toml", "setup.cfg", "tox.ini", "pytest.ini", ".env")


def _escapes(cur: Current, path: str, seen: set[str]) -> str:
    """Why code may read the module at `path` by computed names ("": it may not): its module
    object is passed around or read dynamically, its name is a string somewhere (settings
    modules, `from_object("pkg.config")`), or it is star-imported into a module that escapes."""
    if path in seen or len(seen) > 20:
        return "" if path in seen else "star imports too deep to follow"
    seen.add(path)
    names = cur.graph.names_of(path)
    for config in CONFIG_FILES:
        try:
            text = (cur.root / config).read_text(encoding="utf-8", errors="replace")[:1_000_000]
        except OSError:
            continue
        if any(name in text for name in names):
            return f"{config} names the module"
    for other, how in sorted(cur.graph.dependants(path).items()):
        if how.startswith("mentions"):
            return f"{other} {how}"
        try:
            data = None if _too_big(cur.graph, other) else (cur.root / other).read_bytes()
        except OSError:
            data = None
        if data is None:
            return f"{other} cannot be read"
        escapes, star = cur.module_use(data, names)
        if escapes:
            return f"{other} uses the module object itself"
        if star:
            why = _escapes(cur, other, seen)
            if why:
                return why
    return ""


def _star_imported(cur: Current, path: str) -> str:
    """Why a change to the `__all__` of the module at `path` reaches every importer ("": no module
    star-imports it, so only code that reads `__all__` can see it)."""
    names = cur.graph.names_of(path)
    for other in sorted(cur.graph.dependants(path)):
        try:
            data = None if _too_big(cur.graph, other) else (cur.root / other).read_bytes()
        except OSError:
            data = None
        if data is None or module_use(data, names)[1]:
            return f"{other} star-imports it and its __all__ changed"
    return ""


def _explained(
    change: Change, tests: list[str], known: set[str], versions: set[str], data_read: set[str], complete: bool
) -> bool:
    """Whether fingerprints can judge `change` test by test (else static selection decides)."""
    path = change.path
    if change.status == "M" and path.endswith(".py"):
        if path in known:  # a test file that already ran whole as it is now
            return True
        return path in versions and path not in tests and os.path.basename(path) != "conftest.py"
    # a data file: only when every test file is recorded, and some recorded test read it
    return not path.endswith(".py") and change.status in ("M", "D") and complete and path in data_read


# reasons after which a test's parameters may be different ones (see `what_changed`)
_REPARAMETRISING = (
    "while collecting",
    "module level of",
    "module-level ",
    "runs while a module is imported",
    "memoised",
    "no block data recorded",
    "does not parse",
    "was deleted",
    "the environment changed",
)


def _may_reparametrise(nodeid: str, reasons: list[str], changed_paths: set[str]) -> bool:
    """Whether the change may have renamed or added parameters of the test with these reasons."""
    if nodeid.split("::", 1)[0] in changed_paths:  # its own module (decorators, generate hooks)
        return True
    return any(k in r for r in reasons for k in _REPARAMETRISING)


def _never_loaded(change: Change, tests: list[str], versions: set[str], loaded: set[str] | None) -> bool:
    """A modified Python file that no recorded run imported, by any loader, since the whole
    suite was recorded: no test ran its code (a test that read its text depends on it as data)."""
    path = change.path
    return (
        loaded is not None
        and change.status == "M"
        and path.endswith(".py")
        and path not in loaded
        and path not in versions
        and path not in tests
        and os.path.basename(path) != "conftest.py"
    )


def _loaded(store: Store) -> set[str] | None:
    """`meta.loaded` (None: not known, so never used to narrow)."""
    row = store.conn.execute("SELECT value FROM meta WHERE key = 'loaded'").fetchone()
    try:
        value = json.loads(row[0]) if row else None
    except ValueError:
        return None
    return {str(p) for p in value} if isinstance(value, list) else None


def _too_big(graph: Graph, path: str) -> bool:
    """A Python file over `max_file_size`: neither parsed by the graph nor instrumented when recording."""
    info = graph.infos.get(path)
    return info is not None and info.digest.startswith("size:")


def _is_test(path: str, cfg: Config) -> bool:
    from ect.selection import is_test_file

    return is_test_file(path, cfg)


def _meta_json(store: Store, key: str) -> dict[str, Any]:
    row = store.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    try:
        value = json.loads(row[0]) if row else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
