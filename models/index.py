"""The internal symbol index: every module, class, function and method of a repository's own code.

Built with libcst alone (no code is imported or executed, and nothing here imports torch), so the
LSP server, the fix engine and the completion engine can all use it.

Public API::

    Param(name, kind, has_default)
        kind: 'positional_only' | 'positional' | 'var_positional' | 'keyword_only' | 'var_keyword'
        (for methods the bound `self`/`cls` parameter is left out).
    Symbol(qualname, name, kind, module, path, line, signature, params, decorators, doc, uses)
        kind: 'module' | 'class' | 'function' | 'method' | 'variable'; path is repo-relative posix
        (absolute for files of `internal` distributions outside the repository); doc is the first
        docstring line; uses counts references to the name across the indexed code.
    SymbolIndex.build(root, state_dir=None, internal=()) -> SymbolIndex
        Indexes the repository's Python files (and the installed distributions named in
        `internal`), incrementally by file content hash with a cache in `<state_dir>/index/`
        (a corrupt cache is rebuilt).
    index.get(qualname) -> Symbol | None
    index.members(qualname) -> list[Symbol]      module top-level names (imports and re-exports
                                                 included) or class members (internal bases included)
    index.is_open(qualname) -> bool              True when members cannot be known statically
                                                 (module `__getattr__`, class with an external base or
                                                 a `__getattr__`): do not flag unknown attributes there.
    index.modules() -> list[str]
    index.find(name) -> list[Symbol]             by bare name
    index.resolve_import(module, name) -> Symbol | None   what `from module import name` binds
    index.imports_of(module) -> dict[str, tuple[str, str | None]]  local name -> (module, name | None)
    index.check_call(qualname, n_positional, keywords) -> str | None
        None when a call with that many positional arguments and those keywords is possible (or cannot
        be judged), else a one-line reason. Callers skip the check for calls using `*args`/`**kw`.
    SymbolIndex.closest(name, candidates, n=3) -> list[str]   (difflib)
    index.to_json() -> dict; SymbolIndex.from_json(data) -> SymbolIndex
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import libcst as cst
from libcst.helpers import get_full_name_for_node
from libcst.metadata import PositionProvider

CACHE_VERSION = 2
SKIP_DIRS = {
    "__pycache__",
    "node_modules",
    "build",
    "dist",
    "site-packages",
    "venv",
    "env",
}


@dataclass
class Param:
    name: str
    kind: str  # 'positional_only'|'positional'|'var_positional'|'keyword_only'|'var_keyword'
    has_default: bool


@dataclass
class Symbol:
    qualname: str
    name: str
    kind: str  # 'module'|'class'|'function'|'method'|'variable'
    module: str
    path: str
    line: int
    signature: str
    params: list[Param] = field(default_factory=list)
    decorators: list[str] = field(default_factory=list)
    doc: str = ""
    uses: int = 0


@dataclass
class _FileEntry:
    """What one file contributes; cached by content hash."""

    hash: str
    module: str
    symbols: list[Symbol]
    imports: dict[str, tuple[str, str | None]]  # local name -> (module, name or None for `import x`)
    star_imports: list[str]
    bases: dict[str, list[str]]  # class qualname -> base expressions, resolved where possible
    open_names: list[str]  # qualnames whose attributes are dynamic
    idents: dict[str, int]  # identifier -> references in this file


# ---------------------------------------------------------------- parsing one file


def module_name_for(path: Path, root: Path) -> str:
    """Dotted module name of `path`: its package chain up to the first folder without `__init__.py`."""
    parts = [path.stem] if path.name != "__init__.py" else []
    folder = path.parent
    while (folder / "__init__.py").is_file() and folder != root.parent:
        parts.insert(0, folder.name)
        if folder == root:
            break
        folder = folder.parent
    return ".".join(parts) or path.parent.name


def _first_doc_line(body: Sequence[cst.CSTNode]) -> str:
    if not body:
        return ""
    first = body[0]
    if isinstance(first, cst.SimpleStatementLine) and first.body:
        expr = first.body[0]
        if isinstance(expr, cst.Expr) and isinstance(expr.value, (cst.SimpleString, cst.ConcatenatedString)):
            value = expr.value.evaluated_value
            if isinstance(value, bytes):
                value = value.decode("utf-8", "replace")
            if isinstance(value, str):
                for line in value.strip().splitlines():
                    return line.strip()
    return ""


def _compact(text: str) -> str:
    """One-line form of a multi-line signature."""
    text = " ".join(text.split())
    return text.replace("( ", "(").replace(", )", ")").replace(",)", ")")


def _params(params: cst.Parameters, drop_first: bool) -> list[Param]:
    out: list[Param] = []
    for p in params.posonly_params:
        out.append(Param(p.name.value, "positional_only", p.default is not None))
    for p in params.params:
        out.append(Param(p.name.value, "positional", p.default is not None))
    if isinstance(params.star_arg, cst.Param):
        out.append(Param(params.star_arg.name.value, "var_positional", False))
    for p in params.kwonly_params:
        out.append(Param(p.name.value, "keyword_only", p.default is not None))
    if params.star_kwarg is not None:
        out.append(Param(params.star_kwarg.name.value, "var_keyword", False))
    if drop_first and out and out[0].kind in ("positional_only", "positional"):
        out = out[1:]
    return out


def _resolve_relative(module: str, is_package: bool, level: int, target: str) -> str:
    parts = module.split(".")
    if not is_package:
        parts = parts[:-1]
    if level > 1:
        parts = parts[: len(parts) - (level - 1)] if level - 1 <= len(parts) else []
    base = ".".join(parts)
    if target:
        return f"{base}.{target}" if base else target
    return base


class _Collector(cst.CSTVisitor):
    METADATA_DEPENDENCIES = (PositionProvider,)

    def __init__(self, wrapper: cst.MetadataWrapper, module: str, path: str, is_package: bool) -> None:
        self.code = wrapper.module
        self.module = module
        self.path = path
        self.is_package = is_package
        self.symbols: list[Symbol] = []
        self.imports: dict[str, tuple[str, str | None]] = {}
        self.star_imports: list[str] = []
        self.bases: dict[str, list[str]] = {}
        self.open_names: list[str] = []
        self.idents: Counter[str] = Counter()
        self.stack: list[tuple[str, str]] = []  # (kind, qualname) of enclosing class/function
        self.seen: set[str] = set()

    # helpers
    def _line(self, node: cst.CSTNode) -> int:
        return int(self.get_metadata(PositionProvider, node).start.line)

    def _add(self, sym: Symbol) -> None:
        if sym.qualname in self.seen:
            return
        self.seen.add(sym.qualname)
        self.symbols.append(sym)

    def _scope(self) -> tuple[str, str]:
        return self.stack[-1] if self.stack else ("module", self.module)

    # definitions
    def visit_ClassDef(self, node: cst.ClassDef) -> bool:
        kind, parent = self._scope()
        if kind == "function":
            self.stack.append(("local", ""))
            return True
        if kind == "local":
            self.stack.append(("local", ""))
            return True
        qual = f"{parent}.{node.name.value}"
        bases = [self.code.code_for_node(a.value) for a in node.bases]
        args = ", ".join(
            self.code.code_for_node(a).strip().rstrip(",") for a in [*node.bases, *node.keywords]
        )
        decorators = [self.code.code_for_node(d.decorator) for d in node.decorators]
        self._add(
            Symbol(
                qualname=qual,
                name=node.name.value,
                kind="class",
                module=self.module,
                path=self.path,
                line=self._line(node),
                signature=f"class {node.name.value}({args})" if args else f"class {node.name.value}",
                decorators=decorators,
                doc=_first_doc_line(node.body.body),
            )
        )
        self.bases[qual] = bases
        if any(k.keyword and k.keyword.value == "metaclass" for k in node.keywords):
            self.open_names.append(qual)
        self.stack.append(("class", qual))
        return True

    def leave_ClassDef(self, original_node: cst.ClassDef) -> None:
        self.stack.pop()

    def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
        kind, parent = self._scope()
        if kind in ("function", "local"):
            self.stack.append(("local", ""))
            return True
        name = node.name.value
        qual = f"{parent}.{name}"
        decorators = [self.code.code_for_node(d.decorator) for d in node.decorators]
        is_method = kind == "class"
        static = any(d.split("(")[0].split(".")[-1] == "staticmethod" for d in decorators)
        prop = any(d.split("(")[0].split(".")[-1] in ("property", "cached_property") for d in decorators)
        setter = any(d.endswith((".setter", ".deleter")) for d in decorators)
        params = _params(node.params, drop_first=is_method and not static)
        ret = f" -> {self.code.code_for_node(node.returns.annotation)}" if node.returns else ""
        prefix = "async def" if node.asynchronous else "def"
        sig = _compact(f"{prefix} {name}({self.code.code_for_node(node.params)}){ret}")
        if not setter:
            self._add(
                Symbol(
                    qualname=qual,
                    name=name,
                    kind="variable" if prop else ("method" if is_method else "function"),
                    module=self.module,
                    path=self.path,
                    line=self._line(node),
                    signature=sig,
                    params=[] if prop else params,
                    decorators=decorators,
                    doc=_first_doc_line(node.body.body) if isinstance(node.body, cst.IndentedBlock) else "",
                )
            )
        if name in ("__getattr__", "__getattribute__"):
            self.open_names.append(parent)
        self.stack.append(("function", qual if is_method else ""))
        return True

    def leave_FunctionDef(self, original_node: cst.FunctionDef) -> None:
        self.stack.pop()

    def _targets(self, target: cst.BaseExpression) -> Iterator[cst.BaseExpression]:
        if isinstance(target, (cst.Tuple, cst.List)):
            for el in target.elements:
                yield from self._targets(el.value)
        elif isinstance(target, cst.StarredElement):
            yield from self._targets(target.value)
        else:
            yield target

    def _assigned(self, target: cst.BaseExpression, node: cst.CSTNode, annotation: str = "") -> None:
        kind, scope = self._scope()
        for t in self._targets(target):
            if isinstance(t, cst.Name) and kind in ("module", "class"):
                qual = f"{scope}.{t.value}"
                sig = f"{t.value}: {annotation}" if annotation else t.value
                self._add(Symbol(qual, t.value, "variable", self.module, self.path, self._line(node), sig))
            elif (
                kind == "function"
                and scope
                and isinstance(t, cst.Attribute)
                and isinstance(t.value, cst.Name)
                and t.value.value == "self"
            ):
                cls = scope.rsplit(".", 1)[0]
                qual = f"{cls}.{t.attr.value}"
                sig = f"{t.attr.value}: {annotation}" if annotation else t.attr.value
                self._add(
                    Symbol(qual, t.attr.value, "variable", self.module, self.path, self._line(node), sig)
                )

    def visit_Assign(self, node: cst.Assign) -> None:
        for tgt in node.targets:
            self._assigned(tgt.target, node)

    def visit_AnnAssign(self, node: cst.AnnAssign) -> None:
        ann = self.code.code_for_node(node.annotation.annotation)
        self._assigned(node.target, node, ann)
        kind, scope = self._scope()
        if kind == "class" and isinstance(node.target, cst.Name):
            # remember dataclass-style fields (annotation, has default) for check_call
            for sym in self.symbols:
                if sym.qualname == f"{scope}.{node.target.value}":
                    sym.params = [Param(node.target.value, "positional", node.value is not None)]

    def visit_AugAssign(self, node: cst.AugAssign) -> None:
        self._assigned(node.target, node)

    def visit_For(self, node: cst.For) -> None:
        if self._scope()[0] == "module":
            self._assigned(node.target, node)

    def visit_With(self, node: cst.With) -> None:
        if self._scope()[0] == "module":
            for item in node.items:
                if item.asname is not None:
                    self._assigned(item.asname.name, node)

    # imports
    def visit_Import(self, node: cst.Import) -> None:
        top = self._scope()[0] == "module"
        for alias in node.names:
            full = get_full_name_for_node(alias.name) or ""
            if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
                local = alias.asname.name.value
                target = full
            else:
                local = full.split(".")[0]
                target = local
            if top:
                self.imports[local] = (target, None)

    def visit_ImportFrom(self, node: cst.ImportFrom) -> None:
        if self._scope()[0] != "module":
            return
        mod = get_full_name_for_node(node.module) if node.module is not None else ""
        level = len(node.relative)
        target = _resolve_relative(self.module, self.is_package, level, mod or "") if level else (mod or "")
        if isinstance(node.names, cst.ImportStar):
            self.star_imports.append(target)
            return
        for alias in node.names:
            name = get_full_name_for_node(alias.name) or ""
            local = name
            if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
                local = alias.asname.name.value
            self.imports[local] = (target, name)

    # references
    def visit_Name(self, node: cst.Name) -> None:
        self.idents[node.value] += 1

    def visit_Attribute(self, node: cst.Attribute) -> None:
        self.idents[node.attr.value] += 1


def parse_file(source: str, module: str, path: str, is_package: bool) -> _FileEntry | None:
    """Index one file's source; None when it does not parse."""
    try:
        tree = cst.parse_module(source)
    except (cst.ParserSyntaxError, RecursionError, ValueError):
        return None
    wrapper = cst.MetadataWrapper(tree, unsafe_skip_copy=True)
    col = _Collector(wrapper, module, path, is_package)
    try:
        wrapper.visit(col)
    except RecursionError:
        return None
    mod_sym = Symbol(module, module.rsplit(".", 1)[-1], "module", module, path, 1, f"module {module}")
    mod_sym.doc = _first_doc_line(tree.body)
    return _FileEntry(
        hash="",
        module=module,
        symbols=[mod_sym, *col.symbols],
        imports=col.imports,
        star_imports=col.star_imports,
        bases=col.bases,
        open_names=sorted(set(col.open_names)),
        idents=dict(col.idents),
    )


# ---------------------------------------------------------------- file discovery


def iter_python_files(root: Path) -> Iterator[Path]:
    """Python files under `root`, skipping hidden folders, virtual environments and build output."""
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(
            d
            for d in dirnames
            if not d.startswith(".") and d not in SKIP_DIRS and not (here / d / "pyvenv.cfg").exists()
        )
        for name in sorted(filenames):
            if name.endswith(".py"):
                yield here / name


def _distribution_files(name: str) -> list[tuple[Path, Path]]:
    """(file, import root) pairs of an installed top-level package, found without importing it."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return []
    if spec is None:
        return []
    if spec.submodule_search_locations:
        out: list[tuple[Path, Path]] = []
        for loc in spec.submodule_search_locations:
            pkg = Path(loc)
            out.extend((f, pkg.parent) for f in iter_python_files(pkg))
        return out
    if spec.origin and spec.origin.endswith(".py"):
        origin = Path(spec.origin)
        return [(origin, origin.parent)]
    return []


# ---------------------------------------------------------------- the index


def _symbol_from(data: dict[str, Any]) -> Symbol:
    params = [Param(**p) for p in data.get("params", [])]
    return Symbol(**{**data, "params": params})


def _entry_to_json(e: _FileEntry) -> dict[str, Any]:
    return {
        "hash": e.hash,
        "module": e.module,
        "symbols": [asdict(s) for s in e.symbols],
        "imports": {k: list(v) for k, v in e.imports.items()},
        "star_imports": e.star_imports,
        "bases": e.bases,
        "open_names": e.open_names,
        "idents": e.idents,
    }


def _entry_from_json(d: dict[str, Any]) -> _FileEntry:
    return _FileEntry(
        hash=str(d["hash"]),
        module=str(d["module"]),
        symbols=[_symbol_from(s) for s in d["symbols"]],
        imports={k: (str(v[0]), v[1]) for k, v in d["imports"].items()},
        star_imports=list(d["star_imports"]),
        bases={k: list(v) for k, v in d["bases"].items()},
        open_names=list(d["open_names"]),
        idents={k: int(v) for k, v in d["idents"].items()},
    )


class SymbolIndex:
    """Symbols of the repository's own code, with lookups used by completion, validation, LSP and fixes."""

    def __init__(self, files: dict[str, _FileEntry] | None = None) -> None:
        self.files: dict[str, _FileEntry] = files or {}
        self._link()

    # -- building
    @classmethod
    def build(
        cls,
        root: Path,
        state_dir: Path | None = None,
        internal: Sequence[str] = (),
        max_file_bytes: int | None = None,
    ) -> SymbolIndex:
        """Index `root` (and the distributions in `internal`), reusing the cache for unchanged files.

        `max_file_bytes`: a changed file larger than this is not parsed (its cached entry, if any, is
        kept): a fast first build for the editor, completed by a build without the limit."""
        root = Path(root).resolve()
        cache_path = state_dir / "index" / "index.json" if state_dir is not None else None
        old: dict[str, _FileEntry] = {}
        if cache_path is not None:
            old = cls._load_cache(cache_path)
        pairs: list[tuple[Path, Path, str]] = [
            (f, root, f.relative_to(root).as_posix()) for f in iter_python_files(root)
        ]
        for dist in internal:
            for f, import_root in _distribution_files(dist):
                pairs.append((f, import_root, f.as_posix()))
        files: dict[str, _FileEntry] = {}
        changed = False
        for f, import_root, rel in pairs:
            try:
                data = f.read_bytes()
            except OSError:
                continue
            digest = hashlib.blake2b(data, digest_size=16).hexdigest()
            prev = old.get(rel)
            if prev is not None and prev.hash == digest:
                files[rel] = prev
                continue
            if max_file_bytes is not None and len(data) > max_file_bytes:
                if prev is not None:
                    files[rel] = prev
                continue
            changed = True
            module = module_name_for(f, import_root) if import_root != root else module_name_for(f, root)
            entry = parse_file(data.decode("utf-8", "replace"), module, rel, f.name == "__init__.py")
            if entry is None:
                entry = _FileEntry(digest, module, [], {}, [], {}, [], {})
            entry.hash = digest
            files[rel] = entry
        if cache_path is not None and (changed or set(files) != set(old)):
            cls._save_cache(cache_path, files)
        return cls(files)

    @staticmethod
    def _load_cache(path: Path) -> dict[str, _FileEntry]:
        try:
            raw = json.loads(path.read_bytes())
            if raw.get("version") != CACHE_VERSION:
                return {}
            return {k: _entry_from_json(v) for k, v in raw["files"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return {}  # corrupt or old cache: rebuilt from scratch

    @staticmethod
    def _save_cache(path: Path, files: dict[str, _FileEntry]) -> None:
        from ect.state import write_json

        try:
            write_json(
                path, {"version": CACHE_VERSION, "files": {k: _entry_to_json(v) for k, v in files.items()}}
            )
        except OSError as exc:  # a read-only state dir must not break indexing
            print(f"ect: warning: cannot write index cache: {exc}", file=sys.stderr)

    def _link(self) -> None:
        self._symbols: dict[str, Symbol] = {}
        self._by_name: dict[str, list[Symbol]] = {}
        self._children: dict[str, list[Symbol]] = {}
        self._imports: dict[str, dict[str, tuple[str, str | None]]] = {}
        self._stars: dict[str, list[str]] = {}
        self._bases: dict[str, list[str]] = {}
        self._open: set[str] = set()
        counts: Counter[str] = Counter()
        self._idents_by_module: dict[str, dict[str, int]] = {}
        for entry in self.files.values():
            counts.update(entry.idents)
            self._idents_by_module[entry.module] = entry.idents
            for sym in entry.symbols:
                if sym.qualname not in self._symbols:
                    self._symbols[sym.qualname] = sym
            self._imports.setdefault(entry.module, {}).update(entry.imports)
            self._stars.setdefault(entry.module, []).extend(entry.star_imports)
            self._bases.update(entry.bases)
            self._open.update(entry.open_names)
        self._counts = counts
        definitions: Counter[str] = Counter(s.name for s in self._symbols.values() if s.kind != "module")
        for sym in self._symbols.values():
            sym.uses = max(0, counts.get(sym.name, 0) - definitions.get(sym.name, 0))
            self._by_name.setdefault(sym.name, []).append(sym)
            parent = sym.qualname.rsplit(".", 1)[0] if "." in sym.qualname else ""
            if parent and parent != sym.qualname:
                self._children.setdefault(parent, []).append(sym)

    # -- lookups
    def __len__(self) -> int:
        return len(self._symbols)

    def symbols(self) -> Iterable[Symbol]:
        return self._symbols.values()

    def get(self, qualname: str) -> Symbol | None:
        sym = self._symbols.get(qualname)
        if sym is not None:
            return sym
        if "." in qualname:  # a re-exported name, e.g. `pkg.Name` defined in `pkg.sub`
            parent, name = qualname.rsplit(".", 1)
            if parent in self._imports:
                return self.resolve_import(parent, name)
        return None

    def references_elsewhere(self, name: str, module: str) -> int:
        """References to identifier `name` in the indexed files other than `module`'s (whose live text
        the caller counts itself: the indexed copy may be stale)."""
        return self._counts.get(name, 0) - self._idents_by_module.get(module, {}).get(name, 0)

    def modules(self) -> list[str]:
        return sorted(q for q, s in self._symbols.items() if s.kind == "module")

    def find(self, name: str) -> list[Symbol]:
        return list(self._by_name.get(name, []))

    def imports_of(self, module: str) -> dict[str, tuple[str, str | None]]:
        return dict(self._imports.get(module, {}))

    def resolve_import(
        self, module: str, name: str, _seen: set[tuple[str, str]] | None = None
    ) -> Symbol | None:
        """The symbol that `from module import name` binds, following re-exports; None if not internal."""
        seen = _seen if _seen is not None else set()
        if (module, name) in seen:
            return None
        seen.add((module, name))
        sym = self._symbols.get(f"{module}.{name}")
        if sym is not None and sym.kind != "variable":
            return sym
        target = self._imports.get(module, {}).get(name)
        if target is not None:
            tmod, tname = target
            if tname is None:
                return self._symbols.get(tmod)
            found = self.resolve_import(tmod, tname, seen)
            if found is not None:
                return found if found.name == name else replace(found, name=name)
        if sym is not None:
            return sym
        for star in self._stars.get(module, []):
            found = self.resolve_import(star, name, seen)
            if found is not None:
                return found
        return None

    def is_open(self, qualname: str) -> bool:
        """True when `qualname`'s attributes cannot be listed statically (unknown names may exist)."""
        return self._is_open(qualname, set())

    def _is_open(self, qualname: str, seen: set[str]) -> bool:
        if qualname in seen:
            return False
        seen.add(qualname)
        if qualname in self._open:
            return True
        sym = self._symbols.get(qualname)
        if sym is None:
            return True
        if sym.kind == "module":
            return any(self._symbols.get(s) is None for s in self._stars.get(qualname, []))
        if sym.kind != "class":
            return True
        for base in self._bases.get(qualname, []):
            base_sym = self._resolve_expr(sym.module, base)
            if base_sym is None or base_sym.kind != "class":
                if base not in ("object", "Generic") and not base.startswith(("Generic[", "typing.Generic")):
                    return True
            elif self._is_open(base_sym.qualname, seen):
                return True
        return False

    def _resolve_expr(self, module: str, expr: str) -> Symbol | None:
        """Resolve a dotted expression written in `module` (e.g. a base class) to an internal symbol."""
        head, _, rest = expr.partition("[")[0].partition(".")
        sym = self._symbols.get(f"{module}.{head}")
        if sym is None:
            target = self._imports.get(module, {}).get(head)
            if target is not None:
                tmod, tname = target
                sym = self._symbols.get(tmod) if tname is None else self.resolve_import(tmod, tname)
        if sym is None:
            return None
        for part in rest.split(".") if rest else []:
            nxt = {m.name: m for m in self.members(sym.qualname)}.get(part)
            if nxt is None:
                return None
            sym = nxt
        return sym

    def members(self, qualname: str) -> list[Symbol]:
        """Attributes of a module (defined, imported, submodules) or a class (own and internal bases')."""
        sym = self.get(qualname)
        if sym is None:
            return []
        qualname = sym.qualname
        out: dict[str, Symbol] = {}
        if sym.kind == "module":
            for child in self._children.get(qualname, []):
                out.setdefault(child.name, child)
            for local, (tmod, tname) in self._imports.get(qualname, {}).items():
                if local in out:
                    continue
                found = self._symbols.get(tmod) if tname is None else self.resolve_import(tmod, tname)
                if found is None:
                    what = f"import {tmod}" if tname is None else f"from {tmod} import {tname}"
                    kind = "module" if tname is None else "variable"
                    found = Symbol(f"{qualname}.{local}", local, kind, qualname, sym.path, 1, what)
                elif found.name != local:
                    found = replace(found, name=local)
                out[local] = found
            for star in self._stars.get(qualname, []):
                for m in self.members(star) if star in self._symbols else []:
                    if not m.name.startswith("_"):
                        out.setdefault(m.name, m)
        elif sym.kind == "class":
            self._class_members(sym, out, set())
        return sorted(out.values(), key=lambda s: s.name)

    def _class_members(self, sym: Symbol, out: dict[str, Symbol], seen: set[str]) -> None:
        if sym.qualname in seen:
            return
        seen.add(sym.qualname)
        for child in self._children.get(sym.qualname, []):
            out.setdefault(child.name, child)
        for base in self._bases.get(sym.qualname, []):
            base_sym = self._resolve_expr(sym.module, base)
            if base_sym is not None and base_sym.kind == "class":
                self._class_members(base_sym, out, seen)

    # -- call checking
    def call_params(self, qualname: str) -> list[Param] | None:
        """Parameters of a callable as seen by a caller; None when they cannot be known."""
        sym = self.get(qualname)
        if sym is None:
            return None
        if sym.kind in ("function", "method"):
            if any(d.split("(")[0].split(".")[-1] in ("overload",) for d in sym.decorators):
                return None
            return sym.params
        if sym.kind != "class":
            return None
        members = {m.name: m for m in self.members(sym.qualname)}
        init = members.get("__init__")
        if init is not None and init.kind == "method":
            return init.params
        if self.is_open(sym.qualname) or "__new__" in members:
            return None
        if any(
            d.split("(")[0].split(".")[-1] in ("dataclass", "define", "frozen", "attrs", "s")
            for d in sym.decorators
        ):
            fields = [m for m in self._children.get(sym.qualname, []) if m.kind == "variable" and m.params]
            return [Param(f.name, "positional", f.params[0].has_default) for f in fields]
        if sym.decorators or self._bases.get(sym.qualname):
            return None
        return []

    def check_call(self, qualname: str, n_positional: int, keywords: Sequence[str]) -> str | None:
        """None when the call can succeed (or cannot be judged); else the reason it cannot."""
        sym = self.get(qualname)
        if sym is None:
            return f"'{qualname}' is not defined"
        params = self.call_params(qualname)
        if params is None:
            return None
        name = sym.name
        positional = [p for p in params if p.kind in ("positional_only", "positional")]
        has_varargs = any(p.kind == "var_positional" for p in params)
        has_varkw = any(p.kind == "var_keyword" for p in params)
        if n_positional > len(positional) and not has_varargs:
            return f"{name}() takes {len(positional)} positional argument(s) but {n_positional} were given"
        filled = {p.name for p in positional[:n_positional]}
        by_keyword = {p.name: p for p in params if p.kind in ("positional", "keyword_only")}
        posonly = {p.name for p in params if p.kind == "positional_only"}
        for kw in keywords:
            if kw in filled:
                return f"{name}() got multiple values for argument '{kw}'"
            if kw not in by_keyword and not has_varkw:
                hint = self.closest(kw, list(by_keyword))
                extra = f" (did you mean '{hint[0]}'?)" if hint else ""
                if kw in posonly:
                    return f"{name}() got positional-only argument '{kw}' passed as keyword"
                return f"{name}() got an unexpected keyword argument '{kw}'{extra}"
        given = filled | set(keywords)
        missing = [
            p.name
            for p in params
            if p.kind in ("positional_only", "positional", "keyword_only")
            and not p.has_default
            and p.name not in (filled if p.kind == "positional_only" else given)
        ]
        if missing:
            return f"{name}() missing required argument(s): {', '.join(repr(m) for m in missing)}"
        return None

    @staticmethod
    def closest(name: str, candidates: Iterable[str], n: int = 3) -> list[str]:
        return difflib.get_close_matches(name, list(candidates), n=n, cutoff=0.6)

    # -- serialisation
    def to_json(self) -> dict[str, Any]:
        return {"version": CACHE_VERSION, "files": {k: _entry_to_json(v) for k, v in self.files.items()}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SymbolIndex:
        return cls({k: _entry_from_json(v) for k, v in data["files"].items()})
