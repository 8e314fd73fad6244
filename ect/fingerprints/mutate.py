"""Small random mutations of Python source with libcst, for `ect verify` and the selection benchmark.

Operators: flip a comparison, change a number or a string constant, drop a statement
(replaced by `pass`), swap `and`/`or`. Docstrings are left alone. Every mutant is valid
Python that differs from the original.
"""

from __future__ import annotations

import difflib
import random
from dataclasses import dataclass
from pathlib import Path

import libcst as cst
from libcst.metadata import PositionProvider

_FLIP: dict[type[cst.BaseCompOp], type[cst.BaseCompOp]] = {
    cst.LessThan: cst.GreaterThanEqual,
    cst.GreaterThanEqual: cst.LessThan,
    cst.GreaterThan: cst.LessThanEqual,
    cst.LessThanEqual: cst.GreaterThan,
    cst.Equal: cst.NotEqual,
    cst.NotEqual: cst.Equal,
    cst.In: cst.NotIn,
    cst.NotIn: cst.In,
    cst.Is: cst.IsNot,
    cst.IsNot: cst.Is,
}


@dataclass
class Mutant:
    """One mutation of one file."""

    path: str
    line: int
    operator: str
    original: str
    mutated: str

    def diff(self) -> str:
        return "".join(
            difflib.unified_diff(
                self.original.splitlines(True),
                self.mutated.splitlines(True),
                f"a/{self.path}",
                f"b/{self.path}",
                n=1,
            )
        )

    def apply(self, root: Path) -> None:
        (root / self.path).write_text(self.mutated, encoding="utf-8")

    def revert(self, root: Path) -> None:
        (root / self.path).write_text(self.original, encoding="utf-8")


class _Sites(cst.CSTVisitor):
    METADATA_DEPENDENCIES = (PositionProvider,)

    def __init__(self) -> None:
        self.sites: list[tuple[cst.CSTNode, str, int]] = []
        self._docstrings: set[int] = set()

    def _line(self, node: cst.CSTNode) -> int:
        return int(self.get_metadata(PositionProvider, node).start.line)

    def _mark_docstring(self, body: object) -> None:
        stmts = getattr(body, "body", None)
        if isinstance(stmts, (list, tuple)) and stmts and isinstance(stmts[0], cst.SimpleStatementLine):
            first = stmts[0].body[0] if stmts[0].body else None
            if isinstance(first, cst.Expr) and isinstance(
                first.value, (cst.SimpleString, cst.ConcatenatedString)
            ):
                self._docstrings.add(id(stmts[0]))
                self._docstrings.add(id(first.value))

    def visit_Module(self, node: cst.Module) -> None:
        self._mark_docstring(node)

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self._mark_docstring(node.body)

    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        self._mark_docstring(node.body)

    def visit_ComparisonTarget(self, node: cst.ComparisonTarget) -> None:
        if type(node.operator) in _FLIP:
            self.sites.append((node, "flip comparison", self._line(node)))

    def visit_Integer(self, node: cst.Integer) -> None:
        self.sites.append((node, "change constant", self._line(node)))

    def visit_SimpleString(self, node: cst.SimpleString) -> None:
        if id(node) not in self._docstrings and not node.prefix.lower().count("b"):
            self.sites.append((node, "change constant", self._line(node)))

    def visit_BooleanOperation(self, node: cst.BooleanOperation) -> None:
        self.sites.append((node, "swap and/or", self._line(node)))

    def visit_SimpleStatementLine(self, node: cst.SimpleStatementLine) -> None:
        if id(node) in self._docstrings or not node.body:
            return
        if isinstance(node.body[0], (cst.Import, cst.ImportFrom, cst.Pass, cst.Global, cst.Nonlocal)):
            return
        self.sites.append((node, "drop statement", self._line(node)))


class _Replace(cst.CSTTransformer):
    def __init__(self, target: cst.CSTNode) -> None:
        self.target = target

    def on_leave(self, original_node: cst.CSTNode, updated_node: cst.CSTNode) -> cst.CSTNode:  # type: ignore[override]
        if original_node is not self.target:
            return updated_node
        node = updated_node
        if isinstance(node, cst.ComparisonTarget):
            return node.with_changes(operator=_FLIP[type(node.operator)]())
        if isinstance(node, cst.Integer):
            try:
                value = int(node.value.replace("_", ""), 0)
            except ValueError:
                return node
            return node.with_changes(value=str(value + 1))
        if isinstance(node, cst.SimpleString):
            quote_at = len(node.prefix) + len(node.quote)
            return node.with_changes(value=node.value[:quote_at] + "~" + node.value[quote_at:])
        if isinstance(node, cst.BooleanOperation):
            op = cst.Or() if isinstance(node.operator, cst.And) else cst.And()
            return node.with_changes(operator=op)
        if isinstance(node, cst.SimpleStatementLine):
            return node.with_changes(body=[cst.Pass()])
        return node


def sites_of(source: str) -> tuple[cst.MetadataWrapper, list[tuple[cst.CSTNode, str, int]]] | None:
    try:
        wrapper = cst.MetadataWrapper(cst.parse_module(source))
    except (cst.ParserSyntaxError, RecursionError):
        return None
    visitor = _Sites()
    wrapper.visit(visitor)
    return wrapper, visitor.sites


def make_mutants(root: Path, files: list[str], count: int, seed: int) -> list[Mutant]:
    """`count` distinct random mutants over `files` (each site equally likely)."""
    rng = random.Random(seed)
    candidates: list[tuple[str, int]] = []
    parsed: dict[str, tuple[str, cst.MetadataWrapper, list[tuple[cst.CSTNode, str, int]]]] = {}
    for rel in sorted(files):
        try:
            source = (root / rel).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        found = sites_of(source)
        if found is None:
            continue
        parsed[rel] = (source, found[0], found[1])
        candidates.extend((rel, i) for i in range(len(found[1])))
    rng.shuffle(candidates)
    mutants: list[Mutant] = []
    for rel, index in candidates:
        if len(mutants) >= count:
            break
        source, wrapper, sites = parsed[rel]
        node, operator, line = sites[index]
        mutated = wrapper.module.visit(_Replace(node)).code
        if mutated == source:
            continue
        try:
            compile(mutated, rel, "exec", dont_inherit=True)
        except (SyntaxError, ValueError):
            continue
        mutants.append(Mutant(rel, line, operator, source, mutated))
    return mutants
