"""Candidate fixes for a failure, from config moves, the symbol index and runtime attribute names."""

from __future__ import annotations

import builtins
import difflib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from ect.fix import edits
from ect.fix.failures import Failure
from ect.fix.settings import FixSettings

if TYPE_CHECKING:
    from ect.models.index import SymbolIndex


@dataclass
class Candidate:
    """One proposed edit: the whole new text of `path` (built on first use when `build` is given, so
    only the candidates that get verified pay for their libcst transform)."""

    title: str
    path: str
    new_text: str
    score: float
    origin: str  # 'config' | 'index' | 'runtime' | 'model'
    build: Callable[[], str | None] | None = None

    def text(self) -> str | None:
        if self.build is not None:
            self.new_text = self.build() or ""
            self.build = None
        return self.new_text or None


@dataclass
class FileContext:
    path: str
    source: str
    module: str
    is_package: bool


def file_context(root: Path, path: str, source: str) -> FileContext:
    from ect.models.index import module_name_for

    full = root / path
    return FileContext(path, source, module_name_for(full, root), full.name == "__init__.py")


def _ratio(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a, b).ratio()


def _closest(name: str, options: set[str] | list[str], n: int = 4) -> list[str]:
    return difflib.get_close_matches(name, sorted(set(options) - {name}), n=n, cutoff=0.6)


def _uses_relative(source: str) -> bool:
    return any(line.lstrip().startswith("from .") for line in source.splitlines())


def _import_spec(ctx: FileContext, module: str) -> tuple[str, int]:
    """(module, level) to import `module` from this file, relative when the file already uses that style."""
    package = ctx.module if ctx.is_package else ctx.module.rpartition(".")[0]
    if package and _uses_relative(ctx.source) and (module == package or module.startswith(package + ".")):
        return module[len(package) + 1 :], 1
    return module, 0


def _add_import(ctx: FileContext, module: str, name: str | None, asname: str | None = None) -> str | None:
    if name is None:
        return edits.add_import(ctx.source, module, None, asname, 0, ctx.module)
    mod, level = _import_spec(ctx, module)
    return edits.add_import(ctx.source, mod, name, asname, level, ctx.module)


def _is_test_module(module: str) -> bool:
    last = module.rsplit(".", 1)[-1]
    return (
        last.startswith("test_")
        or last.endswith("_test")
        or last == "conftest"
        or module.startswith("tests.")
    )


def for_name(
    f: Failure, ctx: FileContext, index: SymbolIndex | None, settings: FixSettings
) -> list[Candidate]:
    out: list[Candidate] = []
    name = f.name
    if index is not None:
        seen: set[tuple[str, str | None]] = set()
        for sym in index.find(name):
            if (
                sym.module == ctx.module
                or _is_test_module(sym.module)
                or sym.qualname.count(".") - sym.module.count(".") > 1
            ):
                continue
            if sym.kind == "module":
                parent, _, leaf = sym.qualname.rpartition(".")
                spec: tuple[str, str | None] = (parent, leaf) if parent else (leaf, None)
            else:
                spec = (sym.module, name)
            if spec in seen:
                continue
            seen.add(spec)
            new = _add_import(ctx, spec[0], spec[1])
            if new:
                what = f"from {spec[0]} import {spec[1]}" if spec[1] else f"import {spec[0]}"
                bonus = min(sym.uses, 50) / 10 + (2 if sym.kind != "variable" else 0)
                out.append(Candidate(f"Add `{what}`", ctx.path, new, 50 + bonus, "index"))
        # how the rest of the repository imports this name
        usage: dict[tuple[str, str | None], int] = {}
        for module in index.modules():
            target = index.imports_of(module).get(name)
            if target is not None and not target[0].startswith("."):
                usage[target] = usage.get(target, 0) + 1
        for (tmod, tname), count in sorted(usage.items(), key=lambda kv: -kv[1])[:3]:
            if (tmod, tname) in seen or (tname is None and tmod.split(".")[0] == name):
                new = _add_import(ctx, tmod, tname) if tname else _add_import(ctx, tmod, None)
            else:
                asname = None if (tname or tmod) == name else name
                new = (
                    _add_import(ctx, tmod, tname, asname)
                    if tname
                    else edits.add_import(ctx.source, tmod, None, asname, 0, ctx.module)
                )
            if new and all(c.new_text != new for c in out):
                what = (f"from {tmod} import {tname}" if tname else f"import {tmod}") + (
                    f" as {name}" if (tname or tmod.split(".")[-1]) != name else ""
                )
                out.append(Candidate(f"Add `{what}`", ctx.path, new, 48 + min(count, 20) / 10, "index"))
    if name in getattr(sys, "stdlib_module_names", ()):
        new = edits.add_import(ctx.source, name, None, None, 0, ctx.module)
        if new:
            out.append(Candidate(f"Add `import {name}`", ctx.path, new, 45, "index"))
    bound = edits.bound_names(ctx.source)
    options = bound | {n for n in dir(builtins) if not n.startswith("_")}
    only_line = f.line if name in bound else None
    for other in _closest(name, options):
        out.append(
            Candidate(
                f"Change `{name}` to `{other}`",
                ctx.path,
                "",
                30 + 10 * _ratio(name, other),
                "index",
                build=partial(edits.rename_name, ctx.source, name, other, only_line),
            )
        )
    return out


def for_attribute(
    f: Failure, ctx: FileContext, index: SymbolIndex | None, settings: FixSettings
) -> list[Candidate]:
    out: list[Candidate] = []
    options: set[str] = set(f.choices)
    if index is not None and f.owner:
        options |= {m.name for m in index.members(f.owner)}
        moved = settings.renames.get(f"{f.owner}.{f.name}")
        if moved:
            new_owner, _, new_name = moved.rpartition(".")
            if new_owner == f.owner:
                out.append(
                    Candidate(
                        f"Use `{moved}` (moved)",
                        ctx.path,
                        "",
                        100,
                        "config",
                        build=partial(edits.rename_attribute, ctx.source, f.name, new_name, f.line),
                    )
                )
    for other in _closest(f.name, options):
        out.append(
            Candidate(
                f"Change `.{f.name}` to `.{other}`",
                ctx.path,
                "",
                30 + 10 * _ratio(f.name, other),
                "index" if other not in f.choices else "runtime",
                build=partial(edits.rename_attribute, ctx.source, f.name, other, f.line),
            )
        )
    return out


def for_import(
    f: Failure, ctx: FileContext, index: SymbolIndex | None, settings: FixSettings
) -> list[Candidate]:
    out: list[Candidate] = []
    name, module = f.name, f.owner
    moved = settings.renames.get(f"{module}.{name}")
    if moved:
        new_mod, _, new_name = moved.rpartition(".")
        out.append(
            Candidate(
                f"Import `{name}` from its new place `{moved}`",
                ctx.path,
                "",
                100,
                "config",
                build=partial(
                    edits.move_from_import,
                    ctx.source,
                    ctx.module,
                    ctx.is_package,
                    module,
                    name,
                    new_mod,
                    new_name,
                ),
            )
        )
    if index is None:
        return out
    for sym in index.find(name):
        if sym.module == module or sym.kind == "module" or _is_test_module(sym.module):
            continue
        if sym.qualname != f"{sym.module}.{name}":
            continue
        out.append(
            Candidate(
                f"Import `{name}` from `{sym.module}`",
                ctx.path,
                "",
                50 + min(sym.uses, 50) / 10,
                "index",
                build=partial(
                    edits.move_from_import,
                    ctx.source,
                    ctx.module,
                    ctx.is_package,
                    module,
                    name,
                    sym.module,
                    name,
                ),
            )
        )
    members = [m.name for m in index.members(module)]
    for other in _closest(name, members):
        ratio = _ratio(name, other)

        def renamed(other: str = other) -> str | None:
            plain = edits.move_from_import(
                ctx.source, ctx.module, ctx.is_package, module, name, module, other, alias=False
            )
            return (edits.rename_name(plain, name, other) or plain) if plain else None

        out.append(
            Candidate(f"Change `{name}` to `{other}`", ctx.path, "", 30 + 10 * ratio, "index", renamed)
        )
        aliased = partial(
            edits.move_from_import, ctx.source, ctx.module, ctx.is_package, module, name, module, other
        )
        out.append(
            Candidate(f"Import `{other}` as `{name}`", ctx.path, "", 29 + 10 * ratio, "index", aliased)
        )
    return out


def for_module(
    f: Failure, ctx: FileContext, index: SymbolIndex | None, settings: FixSettings
) -> list[Candidate]:
    out: list[Candidate] = []
    missing = f.name
    for old, new_path in settings.renames.items():
        old_mod, _, old_name = old.rpartition(".")
        if old_mod == missing:  # a moved symbol whose old module is gone
            new_mod, _, new_name = new_path.rpartition(".")
            out.append(
                _moved_import(
                    ctx, f"Import `{new_path}` (moved from `{old}`)", old_mod, old_name, new_mod, new_name
                )
            )
            continue
        if missing == old or missing.startswith(old + "."):
            out.append(
                Candidate(
                    f"Use `{new_path}` (moved from `{old}`)",
                    ctx.path,
                    "",
                    100,
                    "config",
                    build=partial(edits.rename_module, ctx.source, ctx.module, ctx.is_package, old, new_path),
                )
            )
    if index is not None:
        for other in _closest(missing, index.modules()):
            out.append(
                Candidate(
                    f"Change module `{missing}` to `{other}`",
                    ctx.path,
                    "",
                    30 + 10 * _ratio(missing, other),
                    "index",
                    build=partial(
                        edits.rename_module, ctx.source, ctx.module, ctx.is_package, missing, other
                    ),
                )
            )
    return out


def _callee_params(index: SymbolIndex, qual: str) -> list[str]:
    """Parameter names of the internal callable a TypeError names (`func`, `Cls.meth`, `Cls.__init__`)."""
    qual = qual.removesuffix(".__init__")
    names: list[str] = []
    for sym in index.find(qual.rsplit(".", 1)[-1]):
        if sym.qualname == qual or sym.qualname.endswith("." + qual):
            params = index.call_params(sym.qualname) or []
            names += [p.name for p in params if p.kind in ("positional", "keyword_only")]
    return names


def for_keyword(
    f: Failure, ctx: FileContext, index: SymbolIndex | None, settings: FixSettings
) -> list[Candidate]:
    out: list[Candidate] = []
    params = _callee_params(index, f.owner) if index is not None and f.owner else []
    if not params and index is not None:  # the callee named at the call site, whatever it accepts
        for callee in edits.callees_with_keyword(ctx.source, f.line, f.name):
            for sym in index.find(callee):
                params += [p.name for p in sym.params if p.kind in ("positional", "keyword_only")]
    # the keywords this file passes elsewhere (callees taking **kwargs, or unknown to the index): lower rank
    elsewhere = sorted(edits.keyword_names(ctx.source) - {f.name} - set(params))
    for names, base in ((params, 30), (elsewhere, 25)):
        for other in _closest(f.name, names):
            out.append(
                Candidate(
                    f"Change keyword `{f.name}=` to `{other}=`",
                    ctx.path,
                    "",
                    base + 10 * _ratio(f.name, other),
                    "index",
                    build=partial(edits.rename_keyword, ctx.source, f.name, other, f.line),
                )
            )
    return out


def for_arg_count(
    f: Failure, ctx: FileContext, index: SymbolIndex | None, settings: FixSettings
) -> list[Candidate]:
    out: list[Candidate] = []
    takes, given = (int(x) for x in f.owner.split(":"))
    callee = f.name.rsplit(".", 1)[-1]
    if callee == "__init__":
        callee = f.name.rsplit(".", 2)[-2] if f.name.count(".") else callee
    if given - takes != 1:
        return out
    n = edits.positional_count(ctx.source, callee, f.line)
    for i in range(n):
        out.append(
            Candidate(
                f"Remove positional argument {i + 1} of `{callee}()`",
                ctx.path,
                "",
                20 + i / 10,
                "index",
                build=partial(edits.drop_positional, ctx.source, callee, i, f.line),
            )
        )
    return out


def for_moved(
    f: Failure, ctx: FileContext, index: SymbolIndex | None, settings: FixSettings
) -> list[Candidate]:
    """A static finding: the file imports a path the config declares moved or deprecated."""
    new_path = settings.renames.get(f.name, "")
    old_mod, _, old_name = f.name.rpartition(".")
    new_mod, _, new_name = new_path.rpartition(".")
    out: list[Candidate] = []
    if old_mod and new_mod:
        out.append(
            _moved_import(
                ctx, f"Import `{new_path}` instead of `{f.name}`", old_mod, old_name, new_mod, new_name
            )
        )
    out.append(
        Candidate(
            f"Use `{new_path}` instead of `{f.name}`",
            ctx.path,
            "",
            99,
            "config",
            build=partial(edits.rename_module, ctx.source, ctx.module, ctx.is_package, f.name, new_path),
        )
    )
    return out


GENERATORS = {
    "name": for_name,
    "attribute": for_attribute,
    "import": for_import,
    "module": for_module,
    "keyword": for_keyword,
    "arg_count": for_arg_count,
    "moved": for_moved,
}


def generate(
    f: Failure, ctx: FileContext, index: SymbolIndex | None, settings: FixSettings
) -> list[Candidate]:
    """Distinct candidates, best first (texts are built later, when a candidate is verified)."""
    gen = GENERATORS.get(f.kind)
    found = gen(f, ctx, index, settings) if gen else []
    best: dict[str, Candidate] = {}
    for c in found:
        if c.build is None and c.new_text == ctx.source:
            continue
        if c.title not in best or best[c.title].score < c.score:
            best[c.title] = c
    return sorted(best.values(), key=lambda c: -c.score)


def _moved_import(
    ctx: FileContext, title: str, old_mod: str, old_name: str, new_mod: str, new_name: str
) -> Candidate:
    """The config-declared move of `old_mod.old_name` to `new_mod.new_name`, as an import rewrite."""
    build = partial(
        edits.move_from_import, ctx.source, ctx.module, ctx.is_package, old_mod, old_name, new_mod, new_name
    )
    return Candidate(title, ctx.path, "", 100, "config", build=build)
