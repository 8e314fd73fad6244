"""Index completions: internal members after `name.` and internal names at the cursor (no model needed)."""

from __future__ import annotations

import ast
import functools
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ect.models.index import Symbol, SymbolIndex

_DOTTED = re.compile(r"((?:[A-Za-z_]\w*\s*\.\s*)*)([A-Za-z_]\w*)?$")
_CLASS = re.compile(r"^(\s*)class\s+([A-Za-z_]\w*)")
_DEF = re.compile(r"^(\s*)(?:async\s+)?def\s+\w+\s*\(\s*(self|cls)\b")


@dataclass
class Item:
    label: str
    kind: str  # the Symbol kind
    detail: str
    doc: str
    uses: int
    partial: str  # what the user already typed of `label`

    @property
    def remainder(self) -> str:
        return self.label[len(self.partial) :]


MAX_CLASS_LOOKBACK = 5000  # lines searched upwards for the class of `self.`


@functools.lru_cache(maxsize=4)
def split_lines(text: str) -> tuple[str, ...]:
    """The lines of a document (cached: one split per version of a buffer, not per keystroke)."""
    return tuple(text.splitlines())


_IMPORT_LINE = re.compile(r"^[ \t]*(?:import|from) .*$", re.M)


@functools.lru_cache(maxsize=4)
def document_imports(text: str) -> dict[str, tuple[str, str | None, int]]:
    """local name -> (module, name or None, level) from the import lines that parse on their own
    (cached per text, and per set of import lines: typing elsewhere parses nothing again; callers must
    not change the result)."""
    return _imports_of(tuple(m.group(0) for m in _IMPORT_LINE.finditer(text)))


@functools.lru_cache(maxsize=16)
def _imports_of(lines: tuple[str, ...]) -> dict[str, tuple[str, str | None, int]]:
    out: dict[str, tuple[str, str | None, int]] = {}
    for line in lines:
        stripped = line.strip()
        if not stripped.startswith(("import ", "from ")):
            continue
        try:
            node = ast.parse(stripped).body[0]
        except (SyntaxError, IndexError, ValueError):
            continue
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.asname:
                    out[a.asname] = (a.name, None, 0)
                else:
                    out[a.name.split(".")[0]] = (a.name.split(".")[0], None, 0)
        elif isinstance(node, ast.ImportFrom):
            for a in node.names:
                if a.name != "*":
                    out[a.asname or a.name] = (node.module or "", a.name, node.level)
    return out


def _absolute(module: str, level: int, file_module: str, is_package: bool) -> str:
    if not level:
        return module
    parts = file_module.split(".")
    if not is_package:
        parts = parts[:-1]
    if level > 1:
        parts = parts[: max(0, len(parts) - (level - 1))]
    base = ".".join(parts)
    return f"{base}.{module}" if base and module else (base or module)


def _enclosing_class(lines: tuple[str, ...] | list[str], line: int) -> str | None:
    """The class whose method the cursor is in, when the receiver is `self`/`cls`."""
    in_method_indent: int | None = None
    for i in range(line, max(-1, line - MAX_CLASS_LOOKBACK), -1):
        text = lines[i] if i < len(lines) else ""
        if in_method_indent is None:
            m = _DEF.match(text)
            if m:
                in_method_indent = len(m.group(1))
            continue
        c = _CLASS.match(text)
        if c and len(c.group(1)) < in_method_indent:
            return c.group(2)
    return None


class Completer:
    """Completions for one document from the symbol index (keep one per document and index: the ranked
    members of each receiver are computed once, not per keystroke)."""

    MAX_CACHED = 256  # receivers whose ranked members are kept

    def __init__(self, index: SymbolIndex, file_module: str, is_package: bool) -> None:
        self.index = index
        self.module = file_module
        self.is_package = is_package
        self._ranked: dict[str, list[tuple[str, Symbol]]] = {}  # receiver -> (lowered name, symbol)

    def _resolve_head(self, head: str, text: str, lines: tuple[str, ...], line: int) -> str | None:
        if head in ("self", "cls"):
            cls = _enclosing_class(lines, line)
            return f"{self.module}.{cls}" if cls else None
        imports = document_imports(text)
        if head in imports:
            mod, name, level = imports[head]
            mod = _absolute(mod, level, self.module, self.is_package)
            if name is None:
                return mod
            sym = self.index.resolve_import(mod, name)
            if sym is not None:
                return sym.qualname
            return f"{mod}.{name}" if self.index.get(f"{mod}.{name}") else None
        saved = self.index.imports_of(self.module).get(head)
        if saved is not None:
            mod, name = saved
            sym = self.index.resolve_import(mod, name) if name else self.index.get(mod)
            return sym.qualname if sym else None
        if self.index.get(f"{self.module}.{head}") is not None:
            return f"{self.module}.{head}"
        return None

    def members(self, qual: str) -> list[tuple[str, Symbol]]:
        """The members of `qual`, one per name, most used first (computed once per receiver)."""
        got = self._ranked.get(qual)
        if got is None:
            got = rank(self.index.members(qual))
            if len(self._ranked) >= self.MAX_CACHED:
                self._ranked.clear()
            self._ranked[qual] = got
        return got

    def complete(self, text: str, line: int, character: int) -> list[Item]:
        return self.complete_top(text, line, character)[0]

    def complete_top(
        self, text: str, line: int, character: int, limit: int | None = None
    ) -> tuple[list[Item], int]:
        """The first `limit` items (all when None) at (line, character) and how many there are."""
        lines = split_lines(text)
        current = lines[line][:character] if line < len(lines) else ""
        m = _DOTTED.search(current)
        if m is None:
            return [], 0
        chain = [p.strip() for p in m.group(1).split(".") if p.strip()]
        partial = m.group(2) or ""
        if not chain:
            return self._names(partial, text, limit)
        qual = self._resolve_head(chain[0], text, lines, line)
        for part in chain[1:]:
            if qual is None:
                return [], 0
            nxt = next((s for name, s in self.members(qual) if s.name == part), None)
            qual = nxt.qualname if nxt and nxt.kind in ("module", "class") else None
        if qual is None:
            return [], 0
        return select(self.members(qual), partial, limit)

    def _names(self, partial: str, text: str, limit: int | None) -> tuple[list[Item], int]:
        if not partial:
            return [], 0
        own = self.index.members(self.module)
        imported = [
            s for name, s in ((n, self._imported(n, v)) for n, v in document_imports(text).items()) if s
        ]
        return select(rank([*own, *imported]), partial, limit)

    def _imported(self, local: str, spec: tuple[str, str | None, int]) -> Symbol | None:
        from dataclasses import replace

        mod, name, level = spec
        mod = _absolute(mod, level, self.module, self.is_package)
        sym = self.index.resolve_import(mod, name) if name else self.index.get(mod)
        return replace(sym, name=local) if sym is not None else None


def rank(symbols: list[Symbol]) -> list[tuple[str, Symbol]]:
    """One symbol per name (the first), most used first, then by name; with the name lowered."""
    seen: dict[str, Symbol] = {}
    for s in symbols:
        seen.setdefault(s.name, s)
    ordered = sorted(seen.values(), key=lambda s: (-s.uses, s.name))
    return [(s.name.lower(), s) for s in ordered]


def select(
    ranked: list[tuple[str, Symbol]], partial: str, limit: int | None = None
) -> tuple[list[Item], int]:
    """The ranked symbols that start with `partial` (case-insensitive; private ones only after `_`),
    those that match its case first; the first `limit` as items, and how many matched."""
    low = partial.lower()
    public = not partial.startswith("_")
    exact: list[Symbol] = []
    other: list[Symbol] = []
    for name, s in ranked:
        if name.startswith(low) and not (public and name.startswith("_")):
            (exact if s.name.startswith(partial) else other).append(s)
    chosen = (exact + other)[:limit] if limit is not None else exact + other
    return [Item(s.name, s.kind, s.signature, s.doc, s.uses, partial) for s in chosen], len(exact) + len(
        other
    )
