"""The static import graph of a repository.

Each Python file is parsed once (stdlib `ast`: one parse serves both this graph and the
compile step, and it is ~10x faster than a full concrete syntax tree, which matters on
the hook path) and reduced to the dotted module names it may import. Edges are kept by
*name*, so a deleted module still finds its dependants. Per-file results are cached
under the state directory, keyed by (mtime, size) and a content hash, so a rebuild
re-parses only files that changed.

What the graph cannot resolve makes selection wider, never narrower: a file with a
dynamic import (`importlib.import_module(variable)`, `__import__`, `runpy`, `exec` of
code, ...) is marked `dynamic`, and the selector treats it as depending on everything.
"""

from __future__ import annotations

import ast
import bisect
import contextlib
import functools
import hashlib
import os
import re
import subprocess
import sys
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from fnmatch import translate as fnmatch_translate
from pathlib import Path, PurePosixPath
from typing import Any

from ect.config import Config
from ect.state import read_json, write_json

CACHE_VERSION = 3
CACHE_NAME = "graph.json"
_DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$")
_DYNAMIC_CALLS = {
    "__import__",
    "import_module",
    "run_module",
    "run_path",
    "spec_from_file_location",
    "load_source",
    "exec",
    "iter_modules",
    "walk_packages",
    "load_module",
    "find_spec",
}
_IMPORT_CALLS = {"import_module", "__import__", "importorskip", "run_module", "find_spec"}


@dataclass
class FileInfo:
    """What one file may import: dotted candidates, dotted string literals, dynamic imports."""

    digest: str
    imports: list[str]
    strings: list[str]
    dynamic: list[str]  # human-readable descriptions of unresolvable imports, with line numbers
    error: str | None = None  # set when the file does not parse


def module_names(
    path: str, roots: Iterable[str], files: set[str], package_dirs: Mapping[str, str] | None = None
) -> list[str]:
    """Every dotted name under which `path` may be imported.

    Names relative to each configured source root, under each mapped package directory
    (`package_dirs`: dotted package -> folder, as setuptools' `package-dir`), plus pytest's
    rootdir-style name (relative to the first ancestor directory without an `__init__.py`).
    """
    if not path.endswith(".py") or path.endswith("/.py") or path == ".py":
        return []
    names: list[str] = []
    parts = [part for part in path[:-3].split("/") if part and part != "."]
    for package, folder in (package_dirs or {}).items():
        folder_parts = list(PurePosixPath(folder).parts)
        if package and parts[: len(folder_parts)] == folder_parts:
            names.append(_dotted(package.split(".") + parts[len(folder_parts) :]))
    for root in roots:
        root_parts = [] if root in (".", "") else list(PurePosixPath(root).parts)
        if parts[: len(root_parts)] == root_parts and len(parts) > len(root_parts):
            names.append(_dotted(parts[len(root_parts) :]))
    # pytest "prepend"/"importlib" basedir: walk up while the directory is a package.
    i = len(parts) - 1
    while i > 0 and "/".join([*parts[:i], "__init__.py"]) in files:
        i -= 1
    names.append(_dotted(parts[i:]))
    return [n for n in dict.fromkeys(names) if n]


def _dotted(parts: list[str]) -> str:
    if parts and parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


@functools.lru_cache(maxsize=65536)
def prefixes(name: str) -> tuple[str, ...]:
    """`a.b.c` -> (`a`, `a.b`, `a.b.c`): importing a submodule runs every parent package."""
    bits = name.split(".")
    return tuple(".".join(bits[: i + 1]) for i in range(len(bits)))


def _call_name(node: ast.Call) -> str:
    func = node.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


def walk(tree: ast.AST) -> Iterator[ast.AST]:
    """`ast.walk` (the same nodes in the same order) without its generator per node: a third faster,
    and the changed file is walked on every selection."""
    todo: deque[ast.AST] = deque([tree])
    pop, push, extend, node_type = todo.popleft, todo.append, todo.extend, ast.AST
    while todo:
        node = pop()
        for name in node._fields:
            value = getattr(node, name, None)
            if isinstance(value, list):
                extend(v for v in value if isinstance(v, node_type))
            elif isinstance(value, node_type):
                push(value)
        yield node


def extract(tree: ast.Module, packages: list[str]) -> tuple[list[str], list[str], list[str]]:
    """(imports, dotted strings, dynamic-import notes) of one parsed module.

    `packages` are the package names the file lives in (for relative imports).
    """
    imports: list[str] = []
    strings: list[str] = []
    dynamic: list[str] = []

    def relative(level: int, module: str | None) -> list[str]:
        out = []
        for pkg in packages:
            bits = pkg.split(".") if pkg else []
            if level - 1 > len(bits):
                continue
            base = bits[: len(bits) - (level - 1)]
            out.append(".".join([*base, module] if module else base))
        return [o for o in out if o]

    for node in walk(tree):
        if isinstance(node, ast.Import):
            imports.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            bases = relative(node.level, node.module) if node.level else [node.module or ""]
            for base in bases:
                if not base:
                    continue
                imports.append(base)
                imports.extend(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
        elif isinstance(node, ast.Call):
            name = _call_name(node)
            if (
                name in _IMPORT_CALLS
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                target = node.args[0].value
                if target.startswith("."):
                    pkg_kw = next((k.value for k in node.keywords if k.arg == "package"), None)
                    if isinstance(pkg_kw, ast.Constant) and isinstance(pkg_kw.value, str):
                        imports.append(_resolve_rel(pkg_kw.value, target))
                    else:
                        dynamic.append(f"line {node.lineno}: {name}({target!r}) relative to unknown package")
                else:
                    imports.append(target)
            elif name == "import_module" and (within := _package_relative(node)) is not None:
                # `import_module("." + name, __name__)`: some module of this package
                imports.extend(f"{base}.*" for base in relative(within, None))
            elif name in _DYNAMIC_CALLS:
                if (
                    name == "exec"
                    and node.args
                    and isinstance(node.args[0], ast.Constant)
                    and "import" not in str(node.args[0].value)
                ):
                    continue
                dynamic.append(f"line {node.lineno}: {name}(...)")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _DOTTED.match(node.value):
            strings.append(node.value)
        elif isinstance(node, ast.Assign):
            for target_node in node.targets:
                if isinstance(target_node, ast.Name) and target_node.id == "pytest_plugins":
                    for sub in ast.walk(node.value):
                        if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                            imports.append(sub.value)
    return sorted(set(imports)), sorted(set(strings)), dynamic


def _package_relative(node: ast.Call) -> int | None:
    """The level of `import_module("." + x, __name__)` (an f-string or a sum that starts with
    dots, relative to `__name__` or `__package__`): it loads a module of the file's package."""
    first = node.args[0] if node.args else None
    while isinstance(first, ast.BinOp) and isinstance(first.op, ast.Add):
        first = first.left
    if isinstance(first, ast.JoinedStr) and first.values:
        first = first.values[0]
    if not (isinstance(first, ast.Constant) and isinstance(first.value, str) and first.value.startswith(".")):
        return None
    package = (
        node.args[1]
        if len(node.args) > 1
        else next((k.value for k in node.keywords if k.arg == "package"), None)
    )
    if not (isinstance(package, ast.Name) and package.id in ("__name__", "__package__")):
        return None
    return len(first.value) - len(first.value.lstrip("."))


def _resolve_rel(package: str, target: str) -> str:
    level = len(target) - len(target.lstrip("."))
    bits = package.split(".")
    base = bits[: len(bits) - (level - 1)] if level > 1 else bits
    rest = target.lstrip(".")
    return ".".join([*base, rest] if rest else base)


def list_python_files(root: Path, cfg: Config) -> list[str]:
    """Tracked and untracked-not-ignored `.py` files, minus `exclude` globs."""
    proc = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", "*.py"],
        cwd=root,
        capture_output=True,
        check=False,
        env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"},
    )
    files = [f for f in proc.stdout.decode("utf-8", "surrogateescape").split("\0") if f.endswith(".py")]
    excluded = re.compile("|".join(fnmatch_translate(g) for g in [*cfg.exclude, f"{cfg.state_dir}/**"]))
    base = str(root)
    return sorted({f for f in files if not excluded.match(f) and os.path.isfile(os.path.join(base, f))})


class Graph:
    """Name-keyed import graph over the repository's Python files."""

    def __init__(self, root: Path, cfg: Config, infos: dict[str, FileInfo], files: list[str]) -> None:
        self.root = root
        self.cfg = cfg
        self.infos = infos
        self.files = files
        fileset = set(files)
        self.names: dict[str, list[str]] = {
            f: module_names(f, cfg.source_roots, fileset, cfg.package_dirs) for f in files
        }
        self.by_module: dict[str, set[str]] = {}
        for f, names in self.names.items():
            for n in names:
                self.by_module.setdefault(n, set()).add(f)
        # reverse edges keyed by module name: name -> files that (may) import it
        self.importers: dict[str, set[str]] = {}
        self.mentioners: dict[str, set[str]] = {}
        self._sorted_names = sorted(self.by_module)
        for f, info in infos.items():
            for cand in info.imports:
                for pre in self._expand(cand):
                    self.importers.setdefault(pre, set()).add(f)
            for s in info.strings:
                for pre in prefixes(s):
                    if pre in self.by_module:
                        self.mentioners.setdefault(pre, set()).add(f)
        self.dynamic_files = sorted(f for f, info in infos.items() if info.dynamic)

    def _expand(self, candidate: str) -> Iterator[str]:
        """The module names an import candidate runs: `a.b.c` and its parents; `pkg.*` (a dynamic
        import within a package) every module of the package."""
        if not candidate.endswith(".*"):
            yield from prefixes(candidate)
            return
        package = candidate[:-2]
        yield from prefixes(package)
        start = bisect.bisect_left(self._sorted_names, package + ".")
        for name in self._sorted_names[start:]:
            if not name.startswith(package + "."):
                break
            yield name

    def names_of(self, path: str) -> list[str]:
        """Module names of `path`, also for files that no longer exist."""
        if path in self.names:
            return self.names[path]
        return module_names(path, self.cfg.source_roots, set(self.files) | {path}, self.cfg.package_dirs)

    def dependants(self, path: str) -> dict[str, str]:
        """Files that import `path` directly -> how (`imports x` / `mentions 'x'`)."""
        out: dict[str, str] = {}
        for name in self.names_of(path):
            for f in self.importers.get(name, ()):
                if f != path:
                    out.setdefault(f, f"imports {name}")
            for f in self.mentioners.get(name, ()):
                if f != path:
                    out.setdefault(f, f"mentions '{name}'")
        return out

    def dependencies(self, path: str) -> list[str]:
        """Internal files that `path` imports directly."""
        info = self.infos.get(path)
        if info is None:
            return []
        out: set[str] = set()
        for cand in info.imports:
            for pre in self._expand(cand):
                out.update(self.by_module.get(pre, ()))
        out.discard(path)
        return sorted(out)


def _packages_of(
    path: str, roots: list[str], files: set[str], package_dirs: Mapping[str, str] | None = None
) -> list[str]:
    names = module_names(path, roots, files, package_dirs)
    is_pkg = path.endswith("/__init__.py") or path == "__init__.py"
    return [n if is_pkg else n.rpartition(".")[0] for n in names]


def parse_file(
    root: Path,
    rel: str,
    roots: list[str],
    files: set[str],
    tree: ast.Module | None = None,
    package_dirs: Mapping[str, str] | None = None,
) -> FileInfo:
    """Hash and analyse one file (using an already-parsed tree when the compile step has one)."""
    data = (root / rel).read_bytes()
    digest = hashlib.blake2b(data, digest_size=16).hexdigest()
    if tree is None:
        try:
            tree = ast.parse(data, rel)
        except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
            return FileInfo(digest, [], [], [f"does not parse: {type(exc).__name__}"], error=str(exc))
    imports, strings, dynamic = extract(tree, _packages_of(rel, roots, files, package_dirs))
    return FileInfo(digest, imports, strings, dynamic)


def build(
    root: Path, cfg: Config, trees: dict[str, ast.Module] | None = None, use_cache: bool = True
) -> tuple[Graph, dict[str, int]]:
    """Build the graph, re-parsing only files whose (mtime, size) changed since the cache.

    Returns the graph and counters (`parsed`, `cached`, `rebuilt_cache`).
    """
    cache_path = cfg.state_path / CACHE_NAME
    files = list_python_files(root, cfg)
    fileset = set(files)
    cached: dict[str, list[Any]] = {}
    stats = {"parsed": 0, "cached": 0, "rebuilt_cache": 0}
    packages = hashlib.blake2b(
        "\0".join(f for f in files if f.endswith("__init__.py")).encode(), digest_size=8
    ).hexdigest()
    key = [CACHE_VERSION, list(sys.version_info[:2]), cfg.source_roots, cfg.package_dirs, packages]
    key.append(getattr(cfg, "max_file_size", None))
    if use_cache:
        data = read_json(cache_path)
        if isinstance(data, dict) and data.get("key") == key and isinstance(data.get("files"), dict):
            cached = data["files"]
        elif cache_path.exists():
            stats["rebuilt_cache"] = 1
    infos: dict[str, FileInfo] = {}
    entries: dict[str, list[Any]] = {}
    roots = cfg.source_roots
    base = str(root)
    for rel in files:
        try:
            st = os.stat(os.path.join(base, rel))
        except OSError:
            continue
        entry = cached.get(rel)
        if (trees is None or rel not in trees) and _entry_valid(entry, st):
            assert entry is not None
            infos[rel] = _info_from_entry(entry)
            entries[rel] = entry
            stats["cached"] += 1
            continue
        if st.st_size > getattr(cfg, "max_file_size", st.st_size):  # huge (generated) file: not parsed
            info = FileInfo(f"size:{st.st_size}:{st.st_mtime_ns}", [], [], [_too_big(st.st_size, cfg)])
        else:
            info = parse_file(root, rel, roots, fileset, (trees or {}).get(rel), cfg.package_dirs)
        stats["parsed"] += 1
        infos[rel] = info
        entries[rel] = [
            st.st_mtime_ns,
            st.st_size,
            info.digest,
            info.imports,
            info.strings,
            info.dynamic,
            info.error,
        ]
    if stats["parsed"] or len(entries) != len(cached):
        with contextlib.suppress(OSError):
            write_json(cache_path, {"key": key, "files": entries})
    return Graph(root, cfg, infos, files), stats


def _too_big(size: int, cfg: Config) -> str:
    """The dynamic-import note of a file over `max_file_size`: it may import anything (safe)."""
    return f"line 1 (not parsed: {size / 1e6:.1f} MB is over max_file_size {cfg.max_file_size / 1e6:g} MB)"


def _info_from_entry(entry: list[Any]) -> FileInfo:
    error = entry[6] if len(entry) > 6 and isinstance(entry[6], str) else None
    return FileInfo(str(entry[2]), list(entry[3]), list(entry[4]), list(entry[5]), error)


def _entry_valid(entry: object, st: os.stat_result) -> bool:
    return (
        isinstance(entry, list)
        and len(entry) >= 6
        and entry[0] == st.st_mtime_ns
        and entry[1] == st.st_size
        and all(isinstance(entry[i], list) for i in (3, 4, 5))
    )
