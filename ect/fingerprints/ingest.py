"""Turn a raw recording (written by the pytest plugin) into fingerprint records.

A test's record lists, for every Python file it may depend on, the file's digest and the
blocks the test executed in it. The files come from what it executed plus the static
import closure of its test file, its conftests and the executed files: a change to the
module level of any of those can reach the test through an imported value. Blocks that
ran at import time (or in a shared fixture, or during an import a test triggered) count
as module level of their file. Blocks a test observed through a collector or a shared
fixture (see `recorder.attribute`) count as executed by it, with the rule noted for `--explain`.
"""

from __future__ import annotations

import hashlib
import json
import os
import site
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

from ect.fingerprints.blocks import SKELETON, SKELETON_CALL, digest_bytes
from ect.fingerprints.recorder import IMPORT_TIME, RAW_FORMAT
from ect.fingerprints.store import Record, Store
from ect.graph import Graph

T = TypeVar("T")


def environment() -> str:
    """Python version, platform and installed distributions (by their metadata directory names)."""
    # the interpreter by what it is, not by the name it was started as (`python` or `python3` of one venv)
    parts = [sys.version, sys.platform, os.path.realpath(sys.executable), sys.prefix]
    dirs = {*site.getsitepackages(), site.getusersitepackages()}
    dirs.update(p for p in sys.path if p.endswith(("site-packages", "dist-packages")))
    for d in sorted(dirs):
        try:
            names = sorted(
                n for n in os.listdir(d) if n.endswith((".dist-info", ".egg-info", ".egg-link", ".pth"))
            )
        except OSError:
            continue
        parts.append(d)
        parts.extend(names)
    return hashlib.blake2b("\0".join(parts).encode("utf-8", "surrogateescape"), digest_size=12).hexdigest()


def _skeleton(names: list[str]) -> list[str]:
    """Block names with a call of the skeleton's code counted as the skeleton (`SKELETON_CALL`)."""
    if SKELETON_CALL not in names:
        return names
    return sorted({SKELETON if n == SKELETON_CALL else n for n in names})


def _via_skeleton(rules: dict[str, str]) -> dict[str, str]:
    """`_skeleton` for the rules that charged blocks to a test."""
    return {(SKELETON if n == SKELETON_CALL else n): rule for n, rule in rules.items()}


def _content_key(value: list[str] | dict[str, str]) -> str:
    """A hash of sorted block names, or of a {block: rule} table."""
    text = "\n".join(value) if isinstance(value, list) else json.dumps(value, sort_keys=True)
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


_RAN_NOTHING: list[str] = []  # shared, never changed


class _PerObject:
    """What a function makes of a list or dict, once per object: `load_raw` hands one object to
    every test that ran the same blocks of a file. The object is kept, so its `id` stays its own."""

    def __init__(self) -> None:
        self._memo: dict[int, tuple[Any, Any]] = {}

    def get(self, obj: Any, make: Callable[[Any], T]) -> T:
        hit = self._memo.get(id(obj))
        if hit is None:
            hit = self._memo[id(obj)] = (obj, make(obj))
        return hit[1]


def load_raw(out_dir: Path) -> dict[str, Any] | None:
    """Merge the raw files of all pytest processes (xdist workers write one each).

    A name list or rule table shared in one file stays one object here (`recorder._SharedTable`),
    so that `ingest` handles each distinct one once.
    """
    merged: dict[str, Any] = {
        "executed": {},
        "modules": {},
        "reads": {},
        "dirs": {},
        "data_digests": {},
        "dir_digests": {},
        "opaque": [],
        "via": {},
        "loaded": [],
        "empty_files": [],
    }
    found = False
    for path in sorted(out_dir.glob("raw-*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("format") != RAW_FORMAT:
                return None
            _merge_raw(merged, data)
        except (OSError, ValueError, KeyError, IndexError, TypeError, AttributeError):
            return None  # a worker's recording is unreadable: record nothing from this run
        found = True
    return merged if found else None


def _merge_raw(merged: dict[str, Any], data: dict[str, Any]) -> None:
    names: list[list[str]] = data["names"]
    rules: list[str] = data["rules"]
    vias = [{n: rules[i] for n, i in v.items()} for v in data["vias"]]
    for ctx, files in data["executed"].items():
        target = merged["executed"].setdefault(ctx, {})
        for rel, i in files.items():
            old = target.get(rel)
            target[rel] = names[i] if old is None else sorted(set(old) | set(names[i]))
    for key in ("reads", "dirs"):
        for ctx, value in data.get(key, {}).items():
            merged[key].setdefault(ctx, []).extend(value)
    for key in ("modules", "data_digests", "dir_digests"):
        merged[key].update(data.get(key, {}))
    for key in ("opaque", "loaded", "empty_files"):
        merged[key].extend(data.get(key, []))
    for ctx, files in data["via"].items():
        target_via = merged["via"].setdefault(ctx, {})
        for rel, i in files.items():
            old = target_via.get(rel)
            target_via[rel] = vias[i] if old is None else {**old, **vias[i]}


class Closures:
    """Forward static import closures, memoised per file."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.memo: dict[str, frozenset[str]] = {}
        self.unions: dict[frozenset[str], frozenset[str]] = {}

    def of(self, path: str) -> frozenset[str]:
        if path in self.memo:
            return self.memo[path]
        seen = {path}
        stack = [path]
        while stack:
            for dep in self.graph.dependencies(stack.pop()):
                if dep not in seen:
                    seen.add(dep)
                    stack.append(dep)
        result = frozenset(seen)
        self.memo[path] = result
        return result

    def union(self, starts: frozenset[str]) -> frozenset[str]:
        """The closure of several files (memoised: the tests of a module mostly start alike)."""
        found = self.unions.get(starts)
        if found is None:
            found = self.unions[starts] = frozenset().union(*(self.of(s) for s in starts))
        return found


class DynamicSites:
    """The blocks holding the dynamic imports of each file (`graph` notes them by line)."""

    def __init__(self, root: Path, graph: Graph, modules: dict[str, str], store: Store) -> None:
        self.root, self.graph, self.modules, self.store = root, graph, modules, store
        self._blocks: dict[str, frozenset[str] | None] = {}

    def blocks(self, path: str) -> frozenset[str] | None:
        """The blocks of `path` with a dynamic import (None: one is at module level, or unknown)."""
        if path not in self._blocks:
            self._blocks[path] = self._find(path)
        return self._blocks[path]

    def _find(self, path: str) -> frozenset[str] | None:
        digest = self.modules.get(path)  # instrumented, so its blocks were recorded
        info = self.graph.infos.get(path)
        if digest is None or info is None or info.digest != digest:
            return None
        try:
            lines = [int(note.split(":", 1)[0].removeprefix("line ")) for note in info.dynamic]
        except ValueError:
            return None
        found = self.store.file_blocks(self.root, path, digest)  # the selection usually parsed it
        if found is None:
            return None
        names = {found.block_at(line) for line in lines}
        return None if not names or SKELETON in names else frozenset(names)

    def may_run(self, path: str, ran: Iterable[str], at_import: Iterable[str]) -> bool:
        """Whether a dynamic import of `path` may have run for a test that ran blocks `ran` there."""
        sites = self.blocks(path)
        if sites is None:
            return True
        return any(name.split("|", 1)[0] in sites for name in (*ran, *at_import))


def conftests_for(test_file: str, files: set[str]) -> list[str]:
    """`conftest.py` files that apply to `test_file` (its directory and every parent)."""
    out = []
    parent = PurePosixPath(test_file).parent
    while True:
        candidate = "conftest.py" if str(parent) in ("", ".") else f"{parent}/conftest.py"
        if candidate in files:
            out.append(candidate)
        if str(parent) in ("", "."):
            return out
        parent = parent.parent


class Withdrawn(Exception):
    """The run the records were made from was not the run as it ended: nothing was written."""


def ingest(
    store: Store,
    root: Path,
    graph: Graph,
    raw: dict[str, Any],
    outcomes: dict[str, str],
    durations: dict[str, float],
    nodeid_map: dict[str, str],
    whole_files: list[str] | None,
    collect_errors: list[str],
    env: str,
    ran_functions: list[str] | None = None,
    uncommitted: set[str] | None = None,
    proceed: Callable[[], bool] | None = None,
) -> int:
    """Write records for the tests of one run; returns how many were recorded.

    `nodeid_map` maps pytest's node ids (as in `raw`) to repo-relative ones (as in `outcomes`);
    `whole_files` are the test files that ran completely (None: the whole suite);
    `ran_functions` the test functions run by node id without parameters (all their parameters ran);
    `uncommitted` the files whose content differs from HEAD (None: unknown): a record that depends on
    none of them is of committed content, kept longer (`Store.put_record`);
    `proceed`: asked once the records are made, before anything is written: False writes nothing
    (raises `Withdrawn`).
    """
    # a test that ran a module's skeleton imported it then (a lambda of the module level only ran)
    raw_executed: dict[str, dict[str, list[str]]] = raw["executed"]
    lazily_of = {ctx: [r for r, names in fs.items() if SKELETON in names] for ctx, fs in raw_executed.items()}
    shared = _PerObject()
    executed = {c: {r: shared.get(n, _skeleton) for r, n in fs.items()} for c, fs in raw_executed.items()}
    # a test module collected without running a test is recorded as a test of its own (`recorder`)
    bad = {e.split("::")[0] for e in collect_errors}
    ran_files = {n.split("::")[0] for n in outcomes}
    empty = {nodeid_map.get(f, f) for f in raw.get("empty_files", [])} - bad - ran_files
    if empty:
        outcomes = {**outcomes, **dict.fromkeys(sorted(empty), "skipped")}
    modules: dict[str, str] = raw["modules"]
    closures = Closures(graph)
    fileset = set(graph.files)
    at_import = executed.get(IMPORT_TIME, {})
    import_names: dict[str, set[str]] = {rel: set(names) for rel, names in at_import.items()}
    imported_at_start = {rel for rel, names in at_import.items() if SKELETON in names}
    dynamic = set(graph.dynamic_files)
    dynamic_blocks = DynamicSites(root, graph, modules, store)
    by_test = {nodeid_map.get(ctx, ctx): files for ctx, files in executed.items() if ctx != IMPORT_TIME}
    # a test that imported a module for the first time ran that module's import-time code
    for ctx, files in executed.items():
        for rel in lazily_of[ctx] if ctx != IMPORT_TIME else ():
            reach = closures.of(rel)
            for other, names in files.items():
                if other in reach:
                    import_names.setdefault(other, set()).update(names)
    reads = {nodeid_map.get(c, c): v for c, v in raw["reads"].items()}
    dirs = {nodeid_map.get(c, c): v for c, v in raw["dirs"].items()}
    opaque = {nodeid_map.get(c, c) for c in raw["opaque"]}
    via_of = {
        nodeid_map.get(c, c): {rel: shared.get(rules, _via_skeleton) for rel, rules in v.items()}
        for c, v in raw.get("via", {}).items()
    }
    digests = {path: info.digest for path, info in graph.infos.items()}
    hashes = _PerObject()
    now = time.time()
    records = []
    conftests: dict[str, list[str]] = {}
    for nodeid, outcome in outcomes.items():
        test_file = nodeid.split("::")[0]
        if test_file not in fileset:
            continue
        files = by_test.get(nodeid, {})
        if test_file not in conftests:
            conftests[test_file] = conftests_for(test_file, fileset)
        starts = frozenset([test_file, *conftests[test_file], *(f for f in files if f in fileset)])
        closure = set(closures.union(starts))
        # a dynamic import may bring in anything imported at start-up: when the test, or the
        # import-time code, ran one (or the file's sites are not all inside functions)
        if any(dynamic_blocks.may_run(d, files.get(d, ()), at_import.get(d, ())) for d in closure & dynamic):
            closure |= imported_at_start
        py: dict[str, list[Any]] = {}
        for path in sorted(closure | files.keys()):
            digest = modules.get(path) or digests.get(path)
            if digest is None:
                continue
            py[path] = [digest, files.get(path, _RAN_NOTHING), path in closure]  # names sorted by load_raw
        read = {p: raw["data_digests"].get(p) for p in sorted(set(reads.get(nodeid, [])))}
        deps = {
            "py": py,
            "data": read,
            "dirs": {p: raw["dir_digests"].get(p) for p in sorted(set(dirs.get(nodeid, [])))},
            "opaque": nodeid in opaque,
        }
        via = {p: v for p, v in via_of.get(nodeid, {}).items() if p in py}
        if via:
            deps["via"] = via
        # each shared name list or rule table by its hash (`_PerObject`): the same fingerprint for
        # the same dependencies, without encoding every test's lists again. Fields are joined by NUL,
        # which no path holds, in a fixed layout: two different dependencies never read alike.
        fields = [env, str(len(py))]
        for path, (digest, names, in_closure) in py.items():  # sorted by path
            fields += (path, digest, hashes.get(names, _content_key), "1" if in_closure else "0")
        fields.append(json.dumps([read, deps["dirs"], deps["opaque"]], sort_keys=True))
        for path in sorted(via):
            fields += (path, hashes.get(via[path], _content_key))
        fp = hashlib.blake2b("\0".join(fields).encode(), digest_size=12).hexdigest()
        base = uncommitted is None or (uncommitted.isdisjoint(py) and uncommitted.isdisjoint(read))
        duration = durations.get(nodeid, 0.0)
        records.append(Record(nodeid, test_file, fp, outcome, duration, env, now, deps, base))
    if proceed is not None and not proceed():
        raise Withdrawn
    known = store.known_versions()
    with store.write() as conn:
        for rel, digest in modules.items():
            at_import_names = import_names.get(rel, set())
            if (rel, digest) in known:  # blocks already known: only widen its import-time names
                store.add_import_names(conn, rel, digest, at_import_names)
                continue
            source = None
            try:
                data = (root / rel).read_bytes()
                if digest_bytes(data) == digest:  # the version that ran (blocks are parsed only when needed)
                    source = data
            except OSError:
                source = None
            store.put_version(conn, rel, digest, source, at_import_names)
        stored = store.record_ids(conn)
        seen = [(stored[(r.nodeid, r.fp)], r) for r in records if (r.nodeid, r.fp) in stored]
        store.touch_records(conn, seen)
        for rec in records:
            if (rec.nodeid, rec.fp) not in stored:
                store.put_record(conn, rec)
        ran_whole = sorted({n.split("::")[0] for n in outcomes}) if whole_files is None else whole_files
        for test_file in ran_whole:
            if test_file in graph.infos and test_file not in bad:
                ids = [n for n in outcomes if n.split("::")[0] == test_file]
                store.put_test_file(conn, test_file, graph.infos[test_file].digest, ids)
        whole_suite = whole_files is None and bool(records) and not collect_errors
        if whole_suite:
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('full_recording', ?)", (str(now),))
            # test-named files the full suite does not collect (norecursedirs, --ignore, collect_ignore)
            ran_files = {n.split("::")[0] for n in outcomes}
            uncollected = {
                f: info.digest
                for f, info in graph.infos.items()
                if f.rsplit("/", 1)[-1].startswith("test") and f.endswith(".py") and f not in ran_files
            }
            value = json.dumps(uncollected, sort_keys=True)
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('uncollected', ?)", (value,))
        gone = [f for f in store.test_files() if f not in fileset]
        store.forget_files(conn, gone)
        # a test function selected by name ran with all its current parameters: the others are gone
        _forget_other_parameters(store, conn, graph, ran_functions or [], bad, outcomes)
        _note_loaded(conn, raw.get("loaded", []), full=whole_files is None and bool(records))
        reads_at_import = {p: raw["data_digests"].get(p) for p in raw["reads"].get(IMPORT_TIME, [])}
        if whole_suite:  # what the whole suite read at import time is all there is
            value = json.dumps(reads_at_import)
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('import_reads', ?)", (value,))
        elif reads_at_import:
            row = conn.execute("SELECT value FROM meta WHERE key = 'import_reads'").fetchone()
            merged = {**(json.loads(row[0]) if row else {}), **reads_at_import}
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('import_reads', ?)", (json.dumps(merged),))
    return len(records)


def _forget_other_parameters(
    store: Store, conn: Any, graph: Graph, functions: list[str], bad: set[str], outcomes: dict[str, str]
) -> None:
    """Tests of `functions` (run by name, so with every current parameter) that did not run are
    gone, from the records and from their file's list of tests (a parameter's id can come from the
    code that changed). One pass per test file, whatever the number of functions."""
    by_file: dict[str, set[str]] = {}
    for function in functions:
        test_file = function.split("::")[0]
        if test_file not in bad:
            by_file.setdefault(test_file, set()).add(function)
    ran: dict[str, list[str]] = {}
    for nodeid in outcomes:
        ran.setdefault(nodeid.split("[", 1)[0], []).append(nodeid)
    for test_file, bases in by_file.items():
        rows = conn.execute("SELECT nodeid FROM tests WHERE file = ?", (test_file,))
        old_ids = {row[0] for row in rows if row[0].split("[", 1)[0] in bases}
        store.forget_tests(conn, old_ids - set(outcomes))
        query = "SELECT digest, nodeids FROM test_files WHERE path = ?"
        row = conn.execute(query, (test_file,)).fetchone()
        info = graph.infos.get(test_file)
        if row is not None and info is not None and row[0] == info.digest:
            ids = [n for n in json.loads(row[1]) if n.split("[", 1)[0] not in bases]
            ids += [n for base in sorted(bases) for n in ran.get(base, [])]
            store.put_test_file(conn, test_file, row[0], ids)


def _note_loaded(conn: Any, loaded: list[str], full: bool) -> None:
    """Keep `meta.loaded`: every repository `.py` file any recorded run imported (by any loader).

    It starts with a recording of the whole suite (before that nothing is known, and a file
    missing from it could have been loaded unseen); later runs only add to it.
    """
    row = conn.execute("SELECT value FROM meta WHERE key = 'loaded'").fetchone()
    if row is None and not full:
        return
    known = set(json.loads(row[0])) if row is not None else set()
    merged = known | set(loaded)
    if row is None or merged != known:
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('loaded', ?)", (json.dumps(sorted(merged)),))
