"""The bot's static rules, run on the files of the change at its head commit.

- `deprecated` / `forbidden`: internal APIs (dotted names) found with libcst's
  qualified-name resolution (imports, aliases, attribute chains);
- `untested_module`: a changed source module that no test file reaches through imports;
- `prfaq`: a new top-level service directory without a `PRFAQ.md` ("working backwards").
Only lines the change added or modified are reported for the API rules.
"""

from __future__ import annotations

import ast
import fnmatch
from pathlib import PurePosixPath
from typing import Any

from ect.review.diff import Change
from ect.review.findings import Finding
from ect.review.gitcmd import Git


def api_findings(
    path: str, source: str, added: set[int], apis: dict[str, str], rule: str, severity: str
) -> list[Finding]:
    """Uses of the dotted names in `apis` on `added` lines of one Python file."""
    if not apis or not added or severity == "off":
        return []
    import libcst as cst
    from libcst.metadata import MetadataWrapper, PositionProvider, QualifiedNameProvider

    try:
        wrapper = MetadataWrapper(cst.parse_module(source))
    except cst.ParserSyntaxError:
        return []  # the compile step reports it
    lines = source.splitlines()
    hits: dict[tuple[int, str], None] = {}

    def match(name: str) -> str | None:
        for api in apis:
            if name == api or name.startswith(api + "."):
                return api
        return None

    class Visitor(cst.CSTVisitor):
        METADATA_DEPENDENCIES = (QualifiedNameProvider, PositionProvider)

        def _pos(self, node: cst.CSTNode) -> int:
            return int(self.get_metadata(PositionProvider, node).start.line)

        def _check(self, node: cst.CSTNode) -> None:
            line = self._pos(node)
            if line not in added:
                return
            for qn in self.get_metadata(QualifiedNameProvider, node, set()):
                api = match(qn.name)
                if api:
                    hits[(line, api)] = None

        def visit_Name(self, node: cst.Name) -> None:
            self._check(node)

        def visit_Attribute(self, node: cst.Attribute) -> None:
            self._check(node)

        def visit_Import(self, node: cst.Import) -> None:
            line = self._pos(node)
            if line in added:
                for alias in node.names:
                    api = match(cst.helpers.get_full_name_for_node_or_raise(alias.name))
                    if api:
                        hits[(line, api)] = None

        def visit_ImportFrom(self, node: cst.ImportFrom) -> None:
            line = self._pos(node)
            if line not in added or node.relative or node.module is None:
                return
            module = cst.helpers.get_full_name_for_node_or_raise(node.module)
            names = [] if isinstance(node.names, cst.ImportStar) else list(node.names)
            for target in [module] + [
                f"{module}.{a.name.value}" for a in names if isinstance(a.name, cst.Name)
            ]:
                api = match(target)
                if api:
                    hits[(line, api)] = None

    wrapper.visit(Visitor())
    out = []
    for line, api in sorted(hits):
        why = apis[api]
        word = "forbidden" if rule == "forbidden-api" else "deprecated"
        message = f"`{api}` is {word}" + (f": {why}" if why else "")
        snippet = lines[line - 1] if 0 < line <= len(lines) else ""
        out.append(Finding(rule, severity, message, path, line, snippet))
    return out


def _module_name(path: str, roots: list[str]) -> str | None:
    p = PurePosixPath(path)
    if p.suffix != ".py":
        return None
    for root in sorted(roots, key=len, reverse=True):
        base = PurePosixPath(root)
        if root in (".", ""):
            rel = p
        elif p.is_relative_to(base):
            rel = p.relative_to(base)
        else:
            continue
        parts = list(rel.with_suffix("").parts)
        if parts and parts[-1] == "__init__":
            parts.pop()
        return ".".join(parts) if parts else None
    return None


def is_test_file(path: str, cfg: Any) -> bool:
    name = PurePosixPath(path).name
    return name == "conftest.py" or any(fnmatch.fnmatch(name, pat) for pat in cfg.test_patterns)


def _imports(source: bytes, module: str, is_pkg: bool) -> set[str]:
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return set()
    found: set[str] = set()
    pkg_parts = module.split(".") if is_pkg else module.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = pkg_parts[: len(pkg_parts) - (node.level - 1)] if node.level > 1 else pkg_parts
                mod = ".".join([*anchor, node.module] if node.module else anchor)
            else:
                mod = node.module or ""
            if mod:
                found.add(mod)
                found.update(f"{mod}.{a.name}" for a in node.names)
    return found


def untested_findings(git: Git, change: Change, cfg: Any, severity: str) -> list[Finding]:
    """Changed source modules that no test file imports, directly or through other modules."""
    if severity == "off":
        return []
    roots = list(cfg.source_roots)
    files = [
        f for f in git.out("ls-tree", "-r", "--name-only", "-z", change.head).split("\0") if f.endswith(".py")
    ]
    modules: dict[str, str] = {}
    for path in files:
        if is_test_file(path, cfg):
            continue
        name = _module_name(path, roots)
        if name:
            modules[name] = path
    changed = {
        name: path
        for name, path in modules.items()
        if path in change.files and change.files[path].status != "D" and change.added_lines(path)
    }
    if not changed:
        return []
    blobs = git.cat_batch([f"{change.head}:{p}" for p in files])
    edges: dict[str, set[str]] = {}
    tests: list[str] = []
    for path in files:
        data = blobs.get(f"{change.head}:{path}", b"")
        if is_test_file(path, cfg):
            tests.append(path)
            edges[path] = _imports(data, _module_name(path, roots) or path, path.endswith("__init__.py"))
        else:
            name = _module_name(path, roots)
            if name:
                edges[name] = _imports(data, name, path.endswith("__init__.py"))
    reached: set[str] = set()
    stack = [imp for t in tests for imp in edges.get(t, ())]
    while stack:
        imp = stack.pop()
        parts = imp.split(".")
        for i in range(len(parts), 0, -1):
            name = ".".join(parts[:i])
            if name in modules and name not in reached:
                reached.add(name)
                stack.extend(edges.get(name, ()))
    out = []
    for name, path in sorted(changed.items()):
        if name in reached:
            continue
        line = min(change.added_lines(path))
        text = blobs.get(f"{change.head}:{path}", b"").decode("utf-8", "replace").splitlines()
        snippet = text[line - 1] if 0 < line <= len(text) else ""
        out.append(
            Finding(
                "untested-module",
                severity,
                f"no test imports `{name}`: add or extend a test",
                path,
                line,
                snippet,
            )
        )
    return out


def prfaq_findings(git: Git, change: Change, severity: str, parents: list[str]) -> list[Finding]:
    """New top-level (or under `parents`) directories without a PRFAQ.md."""
    if severity == "off":
        return []
    new_dirs: dict[str, str] = {}
    for path, fc in sorted(change.files.items()):
        if fc.status == "D":
            continue
        parts = PurePosixPath(path).parts
        if parents:
            parent = next((p for p in parents if path.startswith(p.rstrip("/") + "/")), None)
            if parent is None:
                continue
            depth = len(PurePosixPath(parent).parts) + 1
        else:
            depth = 1
        if len(parts) <= depth:
            continue
        directory = "/".join(parts[:depth])
        if directory not in new_dirs and not git.ok("cat-file", "-e", f"{change.base}:{directory}"):
            new_dirs[directory] = path
    out = []
    for directory, first in new_dirs.items():
        if git.ok("cat-file", "-e", f"{change.head}:{directory}/PRFAQ.md"):
            continue
        line = min(change.added_lines(first), default=1)
        out.append(
            Finding(
                "prfaq",
                severity,
                f"new service directory `{directory}/` has no PRFAQ.md (work backwards from the "
                "press release and FAQ)",
                first,
                line,
                directory,
            )
        )
    return out
