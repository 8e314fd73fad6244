"""Run the node ids ect selected even when pytest no longer knows some of them (hooks for ect's plugin).

Fingerprints name tests by the node ids of their last run. A test parametrized with a value
that changes from run to run (a timestamp, an object's repr, a temporary path) has a new id
each time, and pytest answers an unknown id on the command line with a usage error that runs
no test at all. So ect hands pytest the test files instead and deselects here, after
collection: an id that still exists runs as asked; an id that no longer does runs every
parametrization of its function, or the whole file when the function is gone.

A file named on the command line is collected even where the full suite would never look
(`norecursedirs`, `--ignore`, `collect_ignore`); such files are dropped here, so that ect's
selection stays a subset of the full suite and a stray module cannot abort the run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

_ENV = "ECT_NODEIDS"  # the requested ids, handed on to xdist workers


def _split(arg: str) -> tuple[str, str]:
    """(absolute path, the rest of the node id) of a command-line argument."""
    base, bracket, params = arg.partition("[")  # as pytest does: `::` inside parameters is no separator
    path, sep, rest = base.partition("::")
    return os.path.abspath(path), rest + bracket + params if sep else ""


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):  # an xdist worker: the controller already rewrote its args
        return
    os.environ.pop(_ENV, None)
    if (
        config.option.pyargs
        or config.args_source != pytest.Config.ArgsSource.ARGS
        or os.environ.get("ECT_RESULTS") is None
    ):
        return  # the whole suite, or not a run of ect's
    files: list[str] = []
    for arg in config.args:
        path = arg.partition("[")[0].partition("::")[0]
        if path not in files and not _outside_suite(config, Path(path).absolute()):
            files.append(path)
    if not files and config.args:
        pytest.exit("ect: every selected test lies where the full suite does not collect", returncode=5)
    if any("::" in a for a in config.args):
        kept = [a for a in config.args if a.partition("[")[0].partition("::")[0] in files]
        os.environ[_ENV] = json.dumps(kept)
    config.args[:] = files


def _outside_suite(config: pytest.Config, path: Path) -> bool:
    """Whether the full suite would skip `path`: ignored itself or in an ignored directory under rootdir."""
    root = config.rootpath
    if path != root and root not in path.parents:
        return False
    here = path
    while here != root:
        if config.hook.pytest_ignore_collect(collection_path=here, config=config):
            return True
        here = here.parent
    return False


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    raw = os.environ.get(_ENV)
    if not raw:
        return
    whole: list[str] = []
    wanted: dict[str, list[str]] = {}  # absolute path -> ids within it
    for arg in json.loads(raw):
        path, rest = _split(arg)
        if rest:
            wanted.setdefault(path, []).append(rest)
        else:
            whole.append(path)
    by_path: dict[str, list[tuple[str, pytest.Item]]] = {}
    for item in items:
        by_path.setdefault(os.path.abspath(item.path), []).append((item.nodeid.partition("::")[2], item))
    keep: set[int] = set()
    for path, found in by_path.items():
        if any(path == w or path.startswith(w + os.sep) for w in whole):
            keep.update(id(item) for _, item in found)
            continue
        for rest in wanted.get(path, []):
            hits = [i for r, i in found if r == rest or r.startswith((rest + "::", rest + "["))]
            if not hits:  # gone: every parametrization of the function, else the whole file
                function = rest.partition("[")[0]
                hits = [i for r, i in found if r == function or r.startswith(function + "[")]
                hits = hits or [i for _, i in found]
            keep.update(id(item) for item in hits)
    deselected = [item for item in items if id(item) not in keep]
    if deselected:
        items[:] = [item for item in items if id(item) in keep]
        config.hook.pytest_deselected(items=deselected)
