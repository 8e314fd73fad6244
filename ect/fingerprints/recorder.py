"""Inside pytest: record which blocks each test executed and which files it read.

Tracing every call (coverage.py, `sys.settrace`, cProfile) costs 1.5-3x on call-heavy
suites. Instead, repository modules are instrumented when they are imported: each block
(see `ect.fingerprints.blocks`) and every function or lambda nested in it starts with
`__ect_hits__[i] = 1`, a store into a per-module bytearray (a few ns). Between tests the
arrays are read and zeroed. Files that pytest rewrites itself (test modules, conftests,
plugins) are not instrumented: ect tracks them as whole files. Nor are modules over
`max_file_size` (`$ECT_FP_MAX_SIZE`): the import graph decides for them (see `refine`).

Contexts (see `attribute`): a test's node id while it runs (setup, call, teardown);
`c:<collector>` while pytest collects a directory, module or class (its imports, module
level, parametrisation): it belongs to the tests under that collector; `f:<fixture>` while
a fixture wider than a function is set up: it belongs to every test that uses the fixture,
whichever test set it up. Context "" is import time: whatever runs while a repository module
is imported (any test importing it may see the result) and what runs before collection
(plugins, initial conftests, `pytest_configure`); it stays global. An audit hook notes
the non-Python files each context opened for reading, the directories it listed, and
whether it started a subprocess (whose code ect cannot see). At the end the raw
recording is written as JSON for ect to turn into fingerprint records.
"""

from __future__ import annotations

import ast
import importlib.machinery
import json
import marshal
import mmap
import os
import sys
import threading
from collections.abc import Callable, Collection, Hashable, Sequence
from types import CodeType, ModuleType
from typing import Any, Generic, TypeVar

from ect.fingerprints import constants, memo
from ect.fingerprints.blocks import SKELETON, SKELETON_CALL, block_nodes, digest_bytes
from ect.fingerprints.branches import ANY, SUB, branch_bodies
from ect.fingerprints.memo import HITS

IMPORT_TIME = ""
B = TypeVar("B", bound=Hashable)
# the layout of `raw-<pid>.json` (`Recorder.finish`, `ingest.load_raw`)
RAW_FORMAT = 2
_SUBPROCESS_EVENTS = frozenset(
    {
        "subprocess.Popen",
        "os.system",
        "os.exec",
        "os.posix_spawn",
        "os.spawn",
        "os.forkpty",
        "pty.spawn",
    }
)
# files opened by C code, without an "open" event: a database file, a shared library
_C_READS = frozenset({"sqlite3.connect", "ctypes.dlopen"})
_WATCHED = frozenset({"open", "os.listdir", "os.scandir"}) | _SUBPROCESS_EVENTS | _C_READS
_HIT = b"\x01"
# system programs that report on the machine and run no project code (ctypes.util.find_library runs
# `ldconfig -p`, platform runs `uname`): a test starting one is not opaque for it, unless the program
# resolves inside the repository or an argument names a path there
_SYSTEM_INFO = frozenset({"ldconfig", "uname", "lsb_release", "getconf", "sw_vers"})
_SKIP_PARTS = frozenset({"__pycache__", "node_modules", "site-packages"})


def file_digest(path: str | os.PathLike[str]) -> str | None:
    try:
        with open(path, "rb") as fh:
            return digest_bytes(fh.read())
    except OSError:
        return None


def read_digest(root: str | os.PathLike[str], path: str, kept: bool = True) -> str | None:
    """The digest of a recorded read: the file's, or for a constants read, see `constants`
    (with what hypothesis keeps, when `kept`)."""
    source = constants.source_of(path)
    if source is None:
        return file_digest(os.path.join(root, path))
    try:
        with open(os.path.join(root, source), "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    content = digest_bytes(data)
    return constants.combined(content, data, kept, constants.kind_of(path), _literals(content, data))


def _literals(content: str, data: bytes) -> str:
    """`constants.literals_digest(data)`, kept in the code cache (`$ECT_FP_CODE_CACHE`) by content:
    a test run that draws on hypothesis's harvest would otherwise parse each source it reads."""
    directory = os.environ.get("ECT_FP_CODE_CACHE")
    cache = os.path.join(directory, f"lit-{content}-{constants.RULES_TAG}.txt") if directory else None
    if cache is not None:
        try:
            with open(cache, encoding="ascii") as fh:
                text = fh.read(1 << 20)
            if text:
                return text
        except (OSError, ValueError):
            pass  # missing or unreadable: computed again
    text = constants.literals_digest(data)
    if cache is not None:
        _write_cache(cache, text.encode("ascii"))
    return text


def listing_digest(path: str | os.PathLike[str]) -> str | None:
    try:
        names = sorted(os.listdir(path))
    except OSError:
        return None
    return digest_bytes("\0".join(names).encode("utf-8", "surrogateescape"))


def _marker(index: int, at: ast.AST) -> ast.stmt:
    target = ast.Subscript(ast.Name(HITS, ast.Load()), ast.Constant(index), ast.Store())
    return ast.copy_location(ast.Assign([target], ast.Constant(1)), at)


def _insert_marker(body: list[ast.stmt], index: int, module: bool = False) -> None:
    pos = 0
    if (
        body
        and isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
        and isinstance(body[0].value.value, str)
    ):
        pos = 1  # keep the docstring a docstring
    while module and pos < len(body) and _is_future(body[pos]):
        pos += 1
    body.insert(pos, _marker(index, body[min(pos, len(body) - 1)] if body else ast.Pass()))


def _is_future(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.ImportFrom) and stmt.module == "__future__"


def _mark_lambda(node: ast.Lambda, index: int) -> None:
    call = ast.Call(
        ast.Attribute(ast.Name(HITS, ast.Load()), "__setitem__", ast.Load()),
        [ast.Constant(index), ast.Constant(1)],
        [],
    )
    node.body = ast.Subscript(ast.Tuple([call, node.body], ast.Load()), ast.Constant(1), ast.Load())


def _mark_tree(root: ast.AST, index: int, done: set[int]) -> list[ast.AST]:
    """Mark `root` and the functions and lambdas in it with `index`; returns the nested ones."""
    nested: list[ast.AST] = []
    for sub in ast.walk(root):
        if id(sub) in done:
            continue
        if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef)):
            done.add(id(sub))
            _insert_marker(sub.body, index)
        elif isinstance(sub, ast.Lambda):
            done.add(id(sub))
            _mark_lambda(sub, index)
        else:
            continue
        if sub is not root:
            nested.append(sub)
    return nested


def _is_marker(stmt: ast.stmt) -> bool:
    return (
        isinstance(stmt, ast.Assign)
        and len(stmt.targets) == 1
        and isinstance(stmt.targets[0], ast.Subscript)
        and isinstance(stmt.targets[0].value, ast.Name)
        and stmt.targets[0].value.id == HITS
    )


def instrument(tree: ast.Module) -> list[str]:
    """Add hit markers to `tree` in place; returns the block name of each marker index."""
    uses = memo.ModuleUses.of(tree)  # before any marker is added
    nodes = block_nodes(tree)
    names = [SKELETON] + [key for key, _ in nodes] + [SKELETON_CALL]
    call_index = len(names) - 1
    done: set[int] = set()
    for index, (key, node) in enumerate(nodes, start=1):
        bodies = branch_bodies(node)  # before any marker or memo wrapper is added
        nested = _mark_tree(node, index, done)
        if bodies and nested:  # they may run later on what any branch of the block computed
            for sub in nested:
                if isinstance(sub, ast.Lambda):
                    _mark_lambda(sub, len(names))
                else:
                    _insert_marker(sub.body, len(names))  # type: ignore[attr-defined]
            names.append(key + ANY)

        def cache_marker(sub: ast.FunctionDef | ast.AsyncFunctionDef, key: str = key) -> tuple[str, ast.stmt]:
            names.append(f"{key}{ANY}{sub.name}")  # who called this nested cache (`memo.wrap`)
            return names[-1], _marker(len(names) - 1, sub.body[0] if sub.body else sub)

        memo.wrap(node, key, _is_marker, cache_marker, uses)
        for number, body in enumerate(bodies, start=1):
            body.insert(0, _marker(len(names), body[0]))
            names.append(f"{key}{SUB}{number}")
    # lambdas and functions outside any block belong to the skeleton; a hit apart tells a call
    # of one (`OPS = {"in": lambda a, b: a in b}`) from the module's import
    _mark_tree(tree, call_index, done)
    _insert_marker(tree.body, 0, module=True)
    ast.fix_missing_locations(tree)
    return names


class _Hits(mmap.mmap):
    """A module's hit table: shared memory, so a child this process forks (multiprocessing's "fork")
    marks its hits here too; `miss` is the module's `memo.MEMO` and `keyed` records a cache's lookup
    key (both set when the module is executed)."""

    miss: Callable[..., None]
    keyed: Callable[[str, Any], Any]


class _Module:
    __slots__ = ("digest", "hits", "names", "rel")

    def __init__(self, rel: str, digest: str, names: list[str]) -> None:
        self.rel, self.digest, self.names = rel, digest, names
        self.hits = _Hits(-1, max(1, len(names)))


# Instrumented code objects are cached by (source digest, path, Python, this module's version) in
# `$ECT_FP_CODE_CACHE`, as pytest caches rewritten test modules: parsing and instrumenting every
# repository module on every run would dominate a small selection's test time.
CODE_CACHE_VERSION = "9"


def _cache_file(path: str, digest: str) -> str | None:
    directory = os.environ.get("ECT_FP_CODE_CACHE")
    if not directory:
        return None
    tag = f"{sys.implementation.cache_tag}-{CODE_CACHE_VERSION}"
    key = digest_bytes(f"{digest}\0{path}\0{tag}".encode())
    return os.path.join(directory, key + ".bin")


def _load_instrumented(path: str, digest: str) -> tuple[list[str], CodeType] | None:
    cache = _cache_file(path, digest)
    if cache is None:
        return None
    try:
        with open(cache, "rb") as fh:
            names, code = marshal.loads(fh.read())
    except (OSError, ValueError, EOFError, TypeError):
        return None  # missing or corrupt: rebuilt below
    if not isinstance(code, CodeType) or not isinstance(names, list):
        return None
    return names, code


def _store_instrumented(path: str, digest: str, names: list[str], code: CodeType) -> None:
    cache = _cache_file(path, digest)
    if cache is not None:
        _write_cache(cache, marshal.dumps((names, code)))


def _write_cache(cache: str, data: bytes) -> None:
    """Write a code-cache file whole or not at all (best effort: it is computed again if missing)."""
    try:
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        tmp = f"{cache}.{os.getpid()}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, cache)
    except OSError:
        pass


def _instrumented_code(source: bytes, path: str) -> tuple[list[str], CodeType] | None:
    """The module compiled with hit markers, and the block name of each (None: it does not parse)."""
    try:
        tree = ast.parse(source, path)
    except (SyntaxError, ValueError):
        return None
    names = instrument(tree)
    return names, compile(tree, path, "exec", dont_inherit=True)


class InstrumentingLoader(importlib.machinery.SourceFileLoader):
    """Compiles a repository module with hit markers (no bytecode cache is read or written)."""

    def __init__(self, fullname: str, path: str, recorder: Recorder) -> None:
        super().__init__(fullname, path)
        self.recorder = recorder
        self.module_hits: _Hits | None = None
        self.module_rel = ""

    def get_code(self, fullname: str) -> CodeType:
        source = self.get_data(self.path)
        digest = digest_bytes(source)
        cached = _load_instrumented(self.path, digest)
        if cached is not None:
            names, code = cached
        else:
            # a repository module a test module imports: outside the import tracer, which made
            # instrumenting dateutil's parser 5x slower (211 ms against 38)
            from ect.fingerprints.statements import untraced

            made = untraced(_instrumented_code)(source, self.path)
            if made is None:
                return super().get_code(fullname)  # type: ignore[return-value]
            names, code = made
            _store_instrumented(self.path, digest, names, code)
        mod = self.recorder.register(self.path, digest, names)
        self.module_hits = mod.hits
        self.module_rel = mod.rel
        return code

    def exec_module(self, module: ModuleType) -> None:
        code = self.get_code(module.__name__)
        if self.module_hits is not None:
            module.__dict__[HITS] = self.module_hits
            self.module_hits.miss = self.recorder.memo_of(self.module_rel)
            self.module_hits.keyed = self.recorder.keyed_of(self.module_rel)
        if threading.get_ident() != self.recorder.main_thread:
            # another thread must not move the context under the main thread's feet (switching back
            # after the test changed would give the next test's code to this one); its import-time
            # code goes to the running test, which `ingest` treats as a first import (module level)
            exec(code, module.__dict__)
            return
        # a module's import-time code belongs to every test that imports it, not to whoever came first
        previous = self.recorder.switch(IMPORT_TIME)
        try:
            exec(code, module.__dict__)
        finally:
            self.recorder.switch(previous)

    def set_data(self, path: str, data: Any, *, _mode: int = 0o666) -> None:
        return None  # never cache instrumented bytecode


class InstrumentingFinder:
    """A meta path finder that hands repository source files to `InstrumentingLoader`.

    It asks the other finders first, so pytest's assertion rewriter keeps the files it
    rewrites (those stay uninstrumented and are tracked as whole files).
    """

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        spec = None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            try:
                spec = finder.find_spec(fullname, path, target)
            except Exception:
                spec = None
            if spec is not None:
                break
        if (
            spec is None
            or type(spec.loader) is not importlib.machinery.SourceFileLoader
            or not spec.origin
            or not self.recorder.wants(spec.origin)
        ):
            return spec
        loader = InstrumentingLoader(fullname, spec.origin, self.recorder)
        new = importlib.machinery.ModuleSpec(
            fullname, loader, origin=spec.origin, is_package=spec.submodule_search_locations is not None
        )
        new.submodule_search_locations = spec.submodule_search_locations
        new.has_location = True
        new.cached = None
        return new


def _audit_hook(audit: Any) -> Any:
    """The hook for `sys.addaudithook`: it sees every event (`id()`, attribute access: tens of
    thousands in a suite), so it filters in a plain function before calling the recorder's method
    (a bound method as the hook cost 1.6 us per event, this 0.5 us)."""

    def hook(event: str, args: tuple[Any, ...], watched: frozenset[str] = _WATCHED) -> None:
        if event in watched:
            audit(event, args)

    return hook


def _watch_unaudited_starts(recorder: Recorder) -> None:
    """Child processes no audit event announces: multiprocessing's "spawn" and "forkserver" start
    methods (`_posixsubprocess.fork_exec`, a request to the fork server) raise none in this process.
    Their starts are wrapped so that the test starting one is known to run code ect cannot see.
    A "fork" child is not: it shares the hit tables (see `_Module`) and flags what it cannot share."""
    import multiprocessing
    import multiprocessing.process

    try:
        import _posixsubprocess
    except ImportError:  # not POSIX: subprocess starts are audited there ("subprocess.Popen")
        _posixsubprocess = None  # type: ignore[assignment]

    def unseen(argv: Any = None, executables: Any = None) -> None:
        if recorder._active and not (argv is not None and recorder.system_info(argv, executables)):
            recorder.mark_opaque()

    fork_exec = getattr(_posixsubprocess, "fork_exec", None)

    def watched_fork_exec(*args: Any, **kwargs: Any) -> Any:
        unseen(args[0] if args else None, args[1] if len(args) > 1 else None)
        return fork_exec(*args, **kwargs)  # type: ignore[misc]  # only installed when it exists

    start = multiprocessing.process.BaseProcess.start

    def watched_start(self: Any) -> None:
        method = getattr(self, "_start_method", None) or multiprocessing.get_start_method()
        if method != "fork":
            unseen()
        start(self)

    if fork_exec is not None:
        _posixsubprocess.fork_exec = watched_fork_exec
    multiprocessing.process.BaseProcess.start = watched_start  # type: ignore[method-assign]


class Recorder:
    """One pytest process's recording."""

    def __init__(self, root: str, out_dir: str, skip_dirs: list[str], max_size: int = 0) -> None:
        self.root = os.path.realpath(root)
        self.max_size = max_size  # bytes; a larger module (generated) is not instrumented, 0: no limit
        self.prefix = self.root + os.sep
        self.out_dir = out_dir
        self.skip = tuple(os.path.join(self.root, d.rstrip("/")) + os.sep for d in skip_dirs)
        self.context = IMPORT_TIME
        self.modules: dict[str, _Module] = {}
        self.hits: dict[str, dict[str, set[int]]] = {}
        self.reads: dict[str, set[str]] = {}
        self.dirs: dict[str, set[str]] = {}
        self.opaque: set[str] = set()
        self.loaded: set[str] = set()  # repository .py files imported (by any loader) or shown
        self.tests: list[str] = []  # node ids of the tests that ran, in order
        self.collected: set[str] = set()  # node ids of the test modules collected without error
        self.fixture_users: dict[str, set[str]] = {}  # f:<fixture> context -> tests that used it
        # tests that draw on a process-wide constants harvest (hypothesis'), whichever test read it
        self.harvest_users: set[str] = set()
        # the kinds of constants each test drew (`draws`): with `typed_draws`, a test draws on the
        # harvest of those kinds only (none noted: every kind)
        self.draw_kinds: dict[str, set[str]] = {}
        self.typed_draws = False
        self.unwatched_draws = False  # hypothesis drew outside a test, or unseen (`draws`)
        self._in_hook = False
        self._active = True
        self._rels: dict[str, str | None] = {}
        # in a forked child: what it reads or starts, or a module it imports, cannot reach this
        # process's tables, so it sets this shared flag and its test counts as opaque
        self.in_child = False
        self.main_thread = threading.get_ident()
        self.memo_stack: list[str] = []  # the contexts a shared-memo body switched away from
        # context -> "<file>\0<block>" -> hashes of the keys it looked up in that block's cache (`memo`)
        self.keys: dict[str, dict[str, set[int]]] = {}
        self.child_saw = mmap.mmap(-1, 1)
        if hasattr(os, "register_at_fork"):  # POSIX
            os.register_at_fork(after_in_child=self._forked)
        sys.addaudithook(_audit_hook(self._audit))
        _watch_unaudited_starts(self)
        sys.meta_path.insert(0, InstrumentingFinder(self))

    def _rel(self, path: str) -> str | None:
        """`path` relative to the repository, if it is a file of it ect records (memoised: every
        import asks, and `realpath` costs a system call per component)."""
        if path in self._rels:
            return self._rels[path]
        rel = self._rels[path] = self._find_rel(path)
        return rel

    def _find_rel(self, path: str) -> str | None:
        full = os.path.realpath(path)
        if not full.startswith(self.prefix) or full.startswith(self.skip):
            return None
        rel = full[len(self.prefix) :]
        if any(p.startswith(".") or p in _SKIP_PARTS for p in rel.split(os.sep)):
            return None
        return rel.replace(os.sep, "/")

    def wants(self, origin: str) -> bool:
        if not origin.endswith(".py") or self._rel(origin) is None:
            return False
        if self.max_size:
            try:
                if os.stat(origin).st_size > self.max_size:
                    # parsing and instrumenting a huge generated module costs minutes and gigabytes;
                    # selection treats it by the import graph: every test that may import it runs
                    return False
            except OSError:
                return False
        return True

    def register(self, path: str, digest: str, names: list[str]) -> _Module:
        self._child_noted()  # a module first imported in a forked child: its hits stay in the child
        rel = self._rel(path) or path
        mod = self.modules.get(rel)
        if mod is None or mod.digest != digest or mod.names != names:
            mod = self.modules[rel] = _Module(rel, digest, names)
        return mod

    def _block_index(self, rel: str, block: str) -> int | None:
        mod = self.modules.get(rel)
        try:
            return mod.names.index(block) if mod is not None else None
        except ValueError:
            return None

    def flush(self) -> None:
        """Move the hits since the last flush into the current context."""
        if self.in_child:  # the shared tables are the parent's to read, in the parent's context
            return
        table = None
        for mod in list(self.modules.values()):  # another thread may be importing a module
            hits = mod.hits
            i = hits.find(_HIT)  # C-speed scans: a test runs few of a module's blocks
            if i < 0:
                continue
            if table is None:
                table = self.hits.setdefault(self.context, {})
            found = table.setdefault(mod.rel, set())
            while i >= 0:
                found.add(i)
                hits[i] = 0  # one by one: a forked child may be marking others right now
                i = hits.find(_HIT, i + 1)
        if self.child_saw[0]:
            self.child_saw[0] = 0
            self.opaque.add(self.context)

    def switch(self, context: str) -> str:
        """Make `context` current; returns the previous one (to switch back to)."""
        previous = self.context
        if context != previous:
            self.flush()
            self.context = context
        return previous

    def memo_of(self, rel: str) -> Callable[..., None]:
        """The `memo.MEMO` method of the module `rel`: a cache miss starts (1) or ends (0). What it
        runs is import time for a memo decorator (`block` ""), else `m:<rel>\0<block>`, charged to the
        tests that ran `block` (`attribute`); with the key it fills, `m:<rel>\0<block>\0<hash>`,
        to those that looked an equal key up there, and to the one running it. Only in the main
        thread, as for a module's import."""

        def call(entering: int, block: str, *key: Any) -> None:
            if threading.get_ident() != self.main_thread:
                return
            if not entering:
                if self.memo_stack:
                    self.switch(self.memo_stack.pop())
                return
            context = IMPORT_TIME
            if block:
                context = f"{MISS}{rel}\0{block}"
                found = self._key_hash(key[0]) if key else None
                if found is not None:
                    self.keys.setdefault(self.context, {}).setdefault(f"{rel}\0{block}", set()).add(found)
                    context = f"{context}\0{found}"
            self.memo_stack.append(self.switch(context))

        return call

    def keyed_of(self, rel: str) -> Callable[[str, Any], Any]:
        """The `keyed` method of the module `rel`: a cache lookup in `block` notes its key (returned
        as it is, for the lookup) in the current context."""

        def keyed(block: str, key: Any) -> Any:
            found = self._key_hash(key)
            if found is not None:
                self.keys.setdefault(self.context, {}).setdefault(f"{rel}\0{block}", set()).add(found)
                self._child_noted()  # in a forked child the note would stay there: the test is opaque
            return key

        return keyed

    @staticmethod
    def _key_hash(key: Any) -> int | None:
        try:
            return hash(key)
        except Exception:  # unhashable: the lookup itself raises; the miss goes to every caller
            return None

    def start_test(self, nodeid: str, fixtures: list[str]) -> None:
        """`nodeid` runs from now on and uses the wider-than-function fixtures `fixtures` (`f:` keys)."""
        self.switch(nodeid)
        self.tests.append(nodeid)
        self.used_fixtures(nodeid, fixtures)

    def used_fixtures(self, nodeid: str, fixtures: list[str]) -> None:
        for key in fixtures:
            self.fixture_users.setdefault(key, set()).add(nodeid)

    def _forked(self) -> None:
        self.in_child = True

    def _child_noted(self) -> None:
        """A forked child noted a read, a listing or a process: its test is opaque (see `flush`)."""
        if self.in_child:
            self.child_saw[0] = 1

    def mark_opaque(self) -> None:
        """The current context started a process whose code ect cannot see."""
        self.opaque.add(self.context)
        self._child_noted()

    def system_info(self, argv: Any, executables: Any = None, env: Any = None) -> bool:
        """Whether `argv` runs one of `_SYSTEM_INFO` from outside the repository on no repository path."""
        import shutil

        try:
            words = [os.fsdecode(a) for a in argv]
            if not words or os.path.basename(words[0]) not in _SYSTEM_INFO:
                return False
            path = (env if isinstance(env, dict) else os.environ).get("PATH")
            named = [os.fsdecode(e) for e in executables or []] or [words[0]]
            # a bare name is looked up in PATH (the child's, when it has its own environment)
            found = [e if os.sep in e else shutil.which(e, path=path) or "" for e in named]
            if not all(found):
                return False  # not found where ect looks: it may be found elsewhere
            for candidate in found + words[1:]:
                full = os.path.realpath(os.path.join(os.getcwd(), candidate))
                inside = full == self.root or full.startswith(self.prefix)
                if inside and (os.path.exists(full) or (candidate in words[1:] and os.path.isabs(candidate))):
                    return False
            return True
        except (TypeError, ValueError, OSError):
            return False

    def _audit(self, event: str, args: tuple[Any, ...]) -> None:
        if self._in_hook or not self._active:
            return
        self._in_hook = True
        try:
            if event == "open":
                path, mode = args[0], args[1]
                if mode is None or (isinstance(mode, str) and ("r" in mode or "+" in mode)):
                    if self._source_read(path):
                        return
                    self._note(self.reads, path)
            elif event in ("os.listdir", "os.scandir"):
                self._note(self.dirs, args[0] if args and args[0] is not None else ".")
            elif event in _C_READS:
                if args and isinstance(args[0], (str, bytes, os.PathLike)):
                    self._note(self.reads, args[0])
            elif event != "subprocess.Popen" or not self.system_info(
                args[1] if isinstance(args[1], (list, tuple)) else [args[1]],
                [args[0]] if args[0] else None,
                args[3] if len(args) > 3 else None,
            ):
                self.mark_opaque()
        except Exception:  # an audit hook must never break the test
            pass
        finally:
            self._in_hook = False

    def _source_read(self, path: object) -> bool:
        """Note a repository `.py`/`.pyc` file being opened; True when `path` is one.

        A source the import system or pytest's reporting reads counts as loaded; one read by
        anything else (`exec(open(...))`, `inspect.getsource` in a test) is a data dependency of
        the current context: its code or text reached the test.
        """
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if not isinstance(path, (str, os.PathLike)):
            return False
        full = os.path.normpath(os.path.join(os.getcwd(), os.fsdecode(os.fspath(path))))
        if not full.endswith((".py", ".pyc")):
            return False
        source = _source_of(full)
        rel = self._rel(source) if source.startswith(self.prefix) else None
        if rel is None:
            return True
        reader = _reader(sys._getframe(2)) if full.endswith(".py") else None
        if reader is None or _is_machinery(reader):
            self.loaded.add(rel)
        else:
            self.reads.setdefault(self.context, set()).add(
                constants.constants_path(rel) if constants.is_harvester(reader) else rel
            )
            self._child_noted()
        return True

    def _note(self, table: dict[str, set[str]], path: object) -> None:
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if not isinstance(path, (str, os.PathLike)):
            return
        full = os.path.normpath(os.path.join(os.getcwd(), os.fsdecode(os.fspath(path))))
        if full.endswith((".py", ".pyc")) or not full.startswith(self.prefix):
            return
        rel = self._rel(full)
        if rel is not None:
            table.setdefault(self.context, set()).add(rel)
            self._child_noted()

    def note_draw(self) -> None:
        """Hypothesis generates data (`draws.watch`): the test running draws on the harvest."""
        ctx = self.context
        if ctx and not ctx.startswith((COLLECT, FIXTURE)):
            self.harvest_users.add(ctx)
        else:
            self.unwatched_draws = True

    def note_unwatched_draw(self) -> None:
        self.unwatched_draws = True

    def note_draw_kind(self, kind: str | None) -> None:
        """Hypothesis may draw a harvested constant of `kind` (None: unknown) in the running test."""
        ctx = self.context
        if ctx and not ctx.startswith((COLLECT, FIXTURE)):
            self.harvest_users.add(ctx)
            known = kind if kind is not None and kind in constants.KINDS.values() else "*"
            self.draw_kinds.setdefault(ctx, set()).add(known)
        else:
            self.unwatched_draws = True

    def finish(self) -> None:
        """Write `raw-<pid>.json` into the output directory."""
        self.flush()
        self._active = False
        for module in list(sys.modules.values()):  # loaded before recording began, or from a cache
            origin = getattr(module, "__file__", None)
            if isinstance(origin, str) and origin.endswith(".py"):
                rel = self._rel(origin)
                if rel is not None:
                    self.loaded.add(rel)
        att = attribute(
            self.tests,
            self.fixture_users,
            self.hits,  # block indices: names only for each distinct set (`_SharedTable`)
            self.reads,
            self.dirs,
            self.opaque,
            self.collected,
            self.keys,
            self._block_index,
        )
        harvested = {p for paths in self.reads.values() for p in paths if constants.source_of(p) is not None}
        for nodeid in self.harvest_users & set(self.tests) if harvested else ():
            kinds = self.draw_kinds.get(nodeid, set()) if self.typed_draws else {"*"}
            reads = att.reads.setdefault(nodeid, set())
            if not kinds or "*" in kinds:  # every kind
                reads.update(harvested)
                continue
            # the harvest itself may have run in this test (the process's first draw): its reads too
            sources = {constants.source_of(p) or p for p in harvested | reads if constants.source_of(p)}
            reads -= {p for p in reads if constants.source_of(p) is not None}
            reads.update(constants.constants_path(src, k) for src in sources for k in kinds)
        at_import = att.reads.get(IMPORT_TIME)
        if at_import and not self.unwatched_draws:  # the harvest after collection: the drawing tests have it
            att.reads[IMPORT_TIME] = {p for p in at_import if constants.source_of(p) is None}
        data_files = {p for paths in att.reads.values() for p in paths} | {
            p for paths in self.reads.values() for p in paths
        }
        kept = bool(harvested) and constants.harvester_matches()  # judged by what it keeps
        listed = {p for paths in self.dirs.values() for p in paths}
        table = _SharedTable({rel: m.names for rel, m in self.modules.items()})
        out = {
            "format": RAW_FORMAT,
            "pid": os.getpid(),
            # each distinct (sorted) set of block names, and each distinct {block: rule}, written once
            "executed": {c: {r: table.names(r, n) for r, n in fs.items()} for c, fs in att.executed.items()},
            "via": {c: {r: table.via(r, v) for r, v in fs.items()} for c, fs in att.via.items()},
            "modules": {rel: m.digest for rel, m in self.modules.items()},
            "reads": {c: sorted(p) for c, p in att.reads.items()},
            "dirs": {c: sorted(p) for c, p in att.dirs.items()},
            "data_digests": {p: read_digest(self.root, p, kept) for p in data_files},
            "dir_digests": {p: listing_digest(os.path.join(self.root, p)) for p in listed},
            "opaque": sorted(att.opaque),
            "empty_files": sorted(att.empty_files),
            "loaded": sorted(self.loaded | set(self.modules)),
            **table.to_json(),
        }
        os.makedirs(self.out_dir, exist_ok=True)
        target = os.path.join(self.out_dir, f"raw-{os.getpid()}.json")
        with open(target + ".tmp", "w", encoding="utf-8") as fh:
            fh.write(json.dumps(out))  # one-shot: the C encoder (`dump` streams in Python)
        os.replace(target + ".tmp", target)


class _SharedTable:
    """Distinct values of the raw recording, each written once and referred to by index: most tests
    of a module run the same blocks of a file, and a rule charges the same blocks to many tests.
    Blocks come as indices into their module's names (`names_of`)."""

    def __init__(self, names_of: dict[str, list[str]]) -> None:
        self._names_of = names_of
        self._names: dict[tuple[str, frozenset[int]], int] = {}
        self._vias: dict[tuple[str, frozenset[tuple[int, str]]], int] = {}

    def names(self, rel: str, blocks: Collection[int]) -> int:
        return self._names.setdefault((rel, frozenset(blocks)), len(self._names))

    def via(self, rel: str, rules: dict[int, str]) -> int:
        return self._vias.setdefault((rel, frozenset(rules.items())), len(self._vias))

    def to_json(self) -> dict[str, Any]:
        rules: dict[str, int] = {}
        vias = []
        for rel, pairs in self._vias:
            names = self._names_of[rel]
            vias.append({names[i]: rules.setdefault(r, len(rules)) for i, r in sorted(pairs)})
        listed = [sorted(map(self._names_of[rel].__getitem__, blocks)) for rel, blocks in self._names]
        return {"names": listed, "rules": list(rules), "vias": vias}


def _source_of(path: str) -> str:
    """The source file of a cached `__pycache__/name.<tag>.pyc` (other paths as they are)."""
    if not path.endswith(".pyc"):
        return path
    directory, name = os.path.split(path)
    if os.path.basename(directory) == "__pycache__":
        return os.path.join(os.path.dirname(directory), name.split(".", 1)[0] + ".py")
    return path[:-1]


# frames of code that reads Python sources to import them or to show them in a report, and
# helpers that merely open files for their caller
_MACHINERY = ("importlib", "_pytest", "linecache.py", "traceback.py", "warnings.py", "pkgutil.py")
_HELPERS = ("pathlib.py", "tokenize.py", "codecs.py", "genericpath.py", "posixpath.py", "/io.py")


def _reader(frame: Any) -> str | None:
    """The file of the nearest caller that is not a file-opening helper (None: too deep to tell)."""
    depth = 0
    while frame is not None and depth < 30:
        name: str = frame.f_code.co_filename
        if not name.endswith(_HELPERS) and name != __file__:  # the recorder's own frames: the hook
            return name
        frame, depth = frame.f_back, depth + 1
    return None


def _is_machinery(name: str) -> bool:
    """Whether the import system, reporting code or ect's own recording (`statements` reads test
    modules) opened a source, not the test's own code."""
    return name.startswith(("<frozen importlib", _OWN_DIR)) or any(part in name for part in _MACHINERY)


_OWN_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


COLLECT = "c:"
FIXTURE = "f:"
MISS = "m:"  # a hand-written cache's miss: `m:<file>\0<the block that holds the cache>` (`memo`)


def fixture_key(scope: str, baseid: str, argname: str) -> str:
    """The context of a wider-than-function fixture's setup."""
    return f"{FIXTURE}{scope}\0{baseid}\0{argname}"


def describe(context: str) -> str:
    """The rule that charged code run in `context` to a test, for `ect check --explain`."""
    if context.startswith(MISS):
        rel, _, rest = context[len(MISS) :].partition("\0")
        block, _, key = rest.partition("\0")
        what = "whose cached result the test may have got"
        if key:
            what = "for a key the test looked up there (it may have got the cached result)"
        return f"in a cache miss of {rel}::{block}, {what}"
    if context.startswith(FIXTURE):
        scope, baseid, argname = context[len(FIXTURE) :].split("\0")
        return f"in {scope} fixture '{argname}' ({baseid or 'root'}), which the test uses"
    collector, *more = context[len(COLLECT) :].split("\0")
    if more:  # a module-level value that several of the module's tests and classes use (`statements`)
        module, _, first = collector.partition("::")
        return f"while collecting {module}, in a module-level value that {', '.join([first, *more])} use"
    return f"while collecting {collector}"


def _enclosing(nodeid: str) -> list[str]:
    """Collector node ids above a test: `a`, `a/t.py`, `a/t.py::C` for `a/t.py::C::test`."""
    path, _, rest = nodeid.partition("::")
    parts = path.split("/")
    out = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    names = rest.split("::") if rest else []
    out.extend(path + "::" + "::".join(names[:i]) for i in range(1, len(names)))
    if names:  # the test function, whatever its parameters (`statements`: its decorators' code)
        out.append(nodeid.split("[", 1)[0])
    return out


class Attribution(Generic[B]):
    """What each test observed: its own hits plus those of the collectors and fixtures it depends on.

    Blocks are `B`: names, or (in the recorder) their indices in the module's list of names."""

    def __init__(self) -> None:
        self.executed: dict[str, dict[str, set[B]]] = {}
        self.via: dict[str, dict[str, dict[B, str]]] = {}  # test -> file -> block -> rule
        self.reads: dict[str, set[str]] = {}
        self.dirs: dict[str, set[str]] = {}
        self.opaque: set[str] = set()
        # test modules collected that ran no test (a module-level skip, every test deselected):
        # each is a test of its own, "collecting the module", so that a change to what decided
        # that (`if not has_feature(): pytest.skip(...)`) runs the module again
        self.empty_files: set[str] = set()


def attribute(
    tests: list[str],
    fixture_users: dict[str, set[str]],
    hits: dict[str, dict[str, set[B]]],
    reads: dict[str, set[str]],
    dirs: dict[str, set[str]],
    opaque: set[str],
    collected: Collection[str] = (),
    keys: dict[str, dict[str, set[int]]] | None = None,
    block_of: Callable[[str, str], B | None] | None = None,
) -> Attribution[B]:
    """Hand what ran in collector and fixture contexts to the tests that can observe it.

    Collection of a directory, module or class goes to the tests under it; a fixture's setup
    to every test that used the fixture. A test module in `collected` under which no test ran
    is a test of its own (`Attribution.empty_files`), its collection's code goes to it. Another
    context no test that ran can be tied to (a collector of no module that was collected, a
    fixture no test is known to use) becomes import time, which is global: when unsure, more tests.
    A cache miss goes to the contexts that ran the block holding the cache; when the miss names
    its key, only to those that looked up an equal key there or noted no key (`keys`).
    """
    keys = keys or {}
    ran = set(tests)
    under: dict[str, list[str]] = {}
    for nodeid in ran:
        for above in _enclosing(nodeid):
            under.setdefault(above, []).append(nodeid)
    empty = {m for m in collected if m not in under}
    for module in empty:
        under[module] = [module]

    def users(ctx: str) -> list[str] | None:
        if ctx.startswith(MISS):
            return miss_users(ctx, set())
        if ctx == IMPORT_TIME or not ctx.startswith((COLLECT, FIXTURE)):
            return None
        if ctx.startswith(FIXTURE):
            found = sorted(fixture_users.get(ctx, set()) & ran)
        else:
            collector, *more = ctx[len(COLLECT) :].split("\0")  # `statements`: several in one module
            module = collector.split("::", 1)[0]
            named = [collector, *(f"{module}::{m}" for m in more)]
            found = sorted({n for c in named for n in under.get(c, [])})
            if not found and "::" in collector:  # a test function that did not run: its module's tests
                found = sorted(under.get(module, []))
        return found or [IMPORT_TIME]

    def miss_users(ctx: str, seen: set[str]) -> list[str]:
        """Whoever ran the block holding the cache (for a cache in a nested function, that function:
        `memo.wrap`), in any context (a miss inside a miss: the outer one's); import time, or nobody
        known, is everybody."""
        seen.add(ctx)
        rel, _, rest = ctx[len(MISS) :].partition("\0")
        block, _, key = rest.partition("\0")
        wanted = block_of(rel, block) if block_of is not None else block
        found: set[str] = set()
        for other, files in hits.items():
            if other in seen or wanted not in files.get(rel, ()):
                continue
            looked_up = keys.get(other, {}).get(f"{rel}\0{block}") if key else None
            if looked_up is not None and int(key) not in looked_up:
                continue  # it only got other keys' entries
            more = miss_users(other, seen) if other.startswith(MISS) else users(other)
            if more is None:
                if other == IMPORT_TIME or other not in ran:
                    return [IMPORT_TIME]
                more = [other]
            if IMPORT_TIME in more:
                return [IMPORT_TIME]
            found.update(more)
        return sorted(found) or [IMPORT_TIME]

    att: Attribution[B] = Attribution()
    att.empty_files = empty
    for ctx, files in hits.items():
        targets = users(ctx)
        rule = describe(ctx) if targets is not None else ""
        for target in targets or [ctx]:
            table = att.executed.setdefault(target, {})
            for rel, names in files.items():
                table.setdefault(rel, set()).update(names)
            if targets is not None and target != IMPORT_TIME:
                via = att.via.setdefault(target, {})
                for rel, names in files.items():
                    rules = via.get(rel)
                    if rules is None:
                        via[rel] = dict.fromkeys(names, rule)
                    else:  # the first rule that charged a block stays
                        rules.update(dict.fromkeys(names - rules.keys(), rule))
    for ctx, paths in reads.items():
        for target in users(ctx) or [ctx]:
            att.reads.setdefault(target, set()).update(paths)
    for ctx, paths in dirs.items():
        # pytest lists a directory to collect it (a new test file is found statically); a test
        # module listing one at module level (parametrisation) is its tests' dependency
        directory = ctx.startswith(COLLECT) and "::" not in ctx and not ctx.endswith(".py")
        targets = [IMPORT_TIME] if directory else users(ctx) or [ctx]
        for target in targets:
            att.dirs.setdefault(target, set()).update(paths)
    for ctx in opaque:
        att.opaque.update(users(ctx) or [ctx])
    # a block a test ran itself needs no other rule
    for target, via in att.via.items():
        own = hits.get(target, {})
        for rel in list(via):
            for name in via[rel].keys() & own.get(rel, set()):
                del via[rel][name]
            if not via[rel]:
                del via[rel]
    return att


def start_from_env() -> Recorder | None:
    """A recorder when ect asked for one (`$ECT_FP_OUT`)."""
    out_dir = os.environ.get("ECT_FP_OUT")
    root = os.environ.get("ECT_FP_ROOT")
    if not out_dir or not root:
        return None
    try:
        skip = json.loads(os.environ.get("ECT_FP_SKIP", "[]"))
        max_size = int(os.environ.get("ECT_FP_MAX_SIZE") or 0)
        return Recorder(root, out_dir, [str(s) for s in skip], max_size)
    except Exception as exc:  # ect falls back to static selection
        sys.stderr.write(f"ect: fingerprints not recorded: {type(exc).__name__}: {exc}\n")
        return None
