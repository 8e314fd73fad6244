"""Retrieval of the internal signatures relevant at a cursor (imported names, the receiver's class,
modules used nearby), and the name resolution shared with validation. No torch here."""

from __future__ import annotations

import re
from collections.abc import Iterable

from ect.models.fim import CTX_LINES, compact_signature
from ect.models.index import Symbol, SymbolIndex

RECEIVER = re.compile(r"([A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)*)\.(\w*)$")  # `receiver.typed` ending a line prefix
_PARTIAL = re.compile(r"(?<![\w.])([A-Za-z_]\w*)$")
_CLASS = re.compile(r"class\s+([A-Za-z_]\w*)")
_IDENT = re.compile(r"[A-Za-z_]\w*")
_OPEN_CALL = re.compile(r"([A-Za-z_][\w.]*)\($")


def signature_line(sym: Symbol, owner: str = "", index: SymbolIndex | None = None) -> str:
    """A symbol as a prompt line: `Owner.name(a, b=...)`, `class Name(x)`, or `Owner.attr`."""
    if sym.kind in ("function", "method"):
        return compact_signature(sym.name, sym.params, owner)
    if sym.kind == "class":
        params = (index.call_params(sym.qualname) if index is not None else None) or []
        return compact_signature(sym.name, params, owner, is_class=True)
    if sym.kind == "module":
        return f"import {sym.qualname}"
    return f"{owner}.{sym.name}" if owner else sym.name


class Resolver:
    """Resolves names and dotted expressions written in one file to internal symbols."""

    def __init__(self, index: SymbolIndex, module: str, text: str) -> None:
        self.index = index
        self.module = module
        self.text = text
        self.imports = index.imports_of(module)
        self._members: dict[str, dict[str, Symbol]] = {}

    def members(self, qualname: str) -> dict[str, Symbol]:
        got = self._members.get(qualname)
        if got is None:
            got = {m.name: m for m in self.index.members(qualname)}
            self._members[qualname] = got
        return got

    def enclosing_class(self, cursor: int) -> Symbol | None:
        line_start = self.text.rfind("\n", 0, cursor) + 1
        line = self.text[
            line_start : self.text.find("\n", line_start) if "\n" in self.text[line_start:] else None
        ]
        limit = len(line) - len(line.lstrip()) if line.strip() else 10**6
        pos = line_start
        while pos > 0:
            prev_start = self.text.rfind("\n", 0, pos - 1) + 1
            prev = self.text[prev_start : pos - 1]
            pos = prev_start
            if not prev.strip() or prev.lstrip().startswith(("#", ")", "]", "}")):
                continue
            indent = len(prev) - len(prev.lstrip())
            if indent < limit:
                m = _CLASS.match(prev.lstrip())
                if m:
                    return self.index.get(f"{self.module}.{m.group(1)}")
                limit = indent
                if indent == 0:
                    return None
        return None

    def resolve_name(self, name: str, cursor: int) -> Symbol | None:
        if name in ("self", "cls"):
            return self.enclosing_class(cursor)
        sym = self.index.get(f"{self.module}.{name}")
        if sym is not None and sym.kind != "variable":
            return sym
        target = self.imports.get(name)
        if target is not None:
            tmod, tname = target
            return self.index.get(tmod) if tname is None else self.index.resolve_import(tmod, tname)
        # a local bound by `name = Callee(...)` or annotated `name: Type` earlier in the file
        before = self.text[max(0, cursor - 6000) : cursor]
        pat = re.compile(
            rf"(?<![\w.]){re.escape(name)}\s*(?::\s*[\"']?([\w.]+)[\"']?\s*)?(?:=\s*([\w.]+)\s*\()?"
        )
        found: Symbol | None = None
        for m in pat.finditer(before):
            expr = m.group(2) or m.group(1)
            if expr and expr != name:
                sym2 = self.resolve_chain(expr, cursor, depth=1)
                if sym2 is not None and sym2.kind in ("function", "method") and "->" in sym2.signature:
                    ret = sym2.signature.rsplit("->", 1)[1].strip().strip("\"'")
                    sym2 = self._resolve_in(sym2.module, ret)
                if sym2 is not None and sym2.kind == "class":
                    found = sym2
        return found

    def resolve_chain(self, dotted: str, cursor: int, depth: int = 0) -> Symbol | None:
        """The symbol `a.b.c` denotes at `cursor`; None when any step is not internal or not known."""
        parts = dotted.split(".")
        sym = self.resolve_name(parts[0], cursor) if depth == 0 else self._resolve_simple(parts[0])
        for part in parts[1:]:
            if sym is None or sym.kind not in ("module", "class"):
                return None
            sym = self.members(sym.qualname).get(part)
        return sym

    def _resolve_simple(self, name: str) -> Symbol | None:
        sym = self.index.get(f"{self.module}.{name}")
        if sym is not None:
            return sym
        target = self.imports.get(name)
        if target is None:
            return None
        tmod, tname = target
        return self.index.get(tmod) if tname is None else self.index.resolve_import(tmod, tname)

    def _resolve_in(self, module: str, dotted: str) -> Symbol | None:
        """`dotted` as written in another module (e.g. a return annotation)."""
        if not re.fullmatch(r"[A-Za-z_][\w.]*", dotted):
            return None
        other = self if module == self.module else Resolver(self.index, module, "")
        return other.resolve_chain(dotted, 0, depth=1)

    def resolve_callee(self, dotted: str, cursor: int) -> Symbol | None:
        sym = self.resolve_chain(dotted, cursor)
        return sym if sym is not None and sym.kind in ("function", "method", "class") else None


def _rank(members: Iterable[Symbol], partial: str, nearby: set[str]) -> list[Symbol]:
    def key(s: Symbol) -> tuple[int, int, int, str]:
        return (
            0 if partial and s.name.startswith(partial) else 1,
            0 if s.name in nearby else 1,
            -s.uses,
            s.name,
        )

    pool = [
        s
        for s in members
        if not (s.name.startswith("__") and s.name.endswith("__"))
        and (not s.name.startswith("_") or partial.startswith("_"))
    ]
    return sorted(pool, key=key)


def context_lines(
    index: SymbolIndex, module: str, text: str, cursor: int, max_lines: int = CTX_LINES
) -> list[str]:
    """Signature lines for the completion at `cursor` in `text` (a file of `module`)."""
    res = Resolver(index, module, text)
    line_start = text.rfind("\n", 0, cursor) + 1
    before = text[line_start:cursor]
    nearby = set(_IDENT.findall(text[max(0, cursor - 1500) : cursor]))
    lines: list[str] = []

    open_call = _OPEN_CALL.search(before.rstrip())
    if open_call:  # inside a call's arguments: the callee's signature first
        callee = res.resolve_callee(open_call.group(1), cursor)
        if callee is not None:
            lines.append(signature_line(callee, _owner(callee, index), index))

    m = RECEIVER.search(before)
    if m:
        receiver = res.resolve_chain(m.group(1), cursor)
        if receiver is not None and receiver.kind in ("module", "class"):
            owner = receiver.name if receiver.kind == "class" else m.group(1)
            for s in _rank(res.members(receiver.qualname).values(), m.group(2), nearby)[: max_lines * 2]:
                lines.append(signature_line(s, owner, index))
    else:
        pm = _PARTIAL.search(before)
        partial = pm.group(1) if pm else ""
        cands: dict[str, Symbol] = {}
        for local in res.imports:
            sym = res.resolve_name(local, cursor)
            if sym is not None and sym.kind in ("function", "class"):
                cands[local] = sym if sym.name == local else _renamed(sym, local)
        for sym in res.members(module).values() if index.get(module) else []:
            if sym.module == module and sym.kind in ("function", "class"):
                cands.setdefault(sym.name, sym)
        # Only names the cursor can use: while a word is typed, those it can become; before a word,
        # those used nearby. Unrelated signatures crowd the prompt and cost ghost text (bench_model).
        usable = [s for s in cands.values() if (s.name.startswith(partial) if partial else s.name in nearby)]
        for s in _rank(usable, partial, nearby)[:max_lines]:
            lines.append(signature_line(s, "", index))
        cls = res.enclosing_class(cursor)
        if cls is not None and "self" in nearby:
            for s in _rank(res.members(cls.qualname).values(), partial, nearby)[:3]:
                lines.append(signature_line(s, "self", index))
    return list(dict.fromkeys(lines))[:max_lines]


def _owner(sym: Symbol, index: SymbolIndex) -> str:
    parent = index.get(sym.qualname.rsplit(".", 1)[0]) if "." in sym.qualname else None
    return parent.name if parent is not None and parent.kind == "class" else ""


def _renamed(sym: Symbol, name: str) -> Symbol:
    from dataclasses import replace

    return replace(sym, name=name)
