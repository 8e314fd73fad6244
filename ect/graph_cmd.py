"""`ect graph [MODULE]`: who imports what, from the cached import graph."""

from __future__ import annotations

import json

import click


@click.command("graph")
@click.argument("target", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def graph(target: str | None, as_json: bool) -> int:
    """Show the import graph, or one module's dependencies and dependants.

    TARGET is a dotted module name or a repo-relative path.
    """
    from ect.config import load_config
    from ect.errors import EctError
    from ect.graph import build
    from ect.repo import find_root

    root = find_root()
    cfg = load_config(root)
    g, stats = build(root, cfg)
    if target is None:
        rows = {f: g.dependencies(f) for f in g.files}
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "files": rows,
                        "dynamic": {f: g.infos[f].dynamic for f in g.dynamic_files},
                        "stats": stats,
                    },
                    indent=2,
                )
            )
        else:
            edges = sum(len(v) for v in rows.values())
            click.echo(
                f"{len(g.files)} Python files, {edges} internal import edges "
                f"({stats['parsed']} parsed, {stats['cached']} from cache)"
            )
            for f in g.dynamic_files:
                click.echo(f"  dynamic import: {f}: {g.infos[f].dynamic[0]}")
        return 0
    path = target if target in g.infos else None
    if path is None:
        matches = sorted(g.by_module.get(target, ()))
        if not matches:
            raise EctError(f"no module or file named {target!r} in this repository")
        path = matches[0]
    deps = g.dependencies(path)
    # transitive dependants
    seen: dict[str, str] = {}
    frontier = [path]
    while frontier:
        nxt = []
        for cur in frontier:
            for dep, how in g.dependants(cur).items():
                if dep not in seen and dep != path:
                    seen[dep] = f"{how} (via {cur})" if cur != path else how
                    nxt.append(dep)
        frontier = nxt
    if as_json:
        click.echo(
            json.dumps(
                {
                    "file": path,
                    "names": g.names_of(path),
                    "imports": deps,
                    "imported_by": g.dependants(path),
                    "transitive_dependants": seen,
                },
                indent=2,
            )
        )
        return 0
    click.echo(f"{path} ({', '.join(g.names_of(path))})")
    click.echo(f"  imports ({len(deps)}):")
    for d in deps:
        click.echo(f"    {d}")
    click.echo(f"  depended on by ({len(seen)}, transitively):")
    for d, how in sorted(seen.items()):
        click.echo(f"    {d}  [{how}]")
    return 0
