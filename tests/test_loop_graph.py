"""The import graph and static selection on real files in real git repositories."""

from __future__ import annotations

import json

from ect_testutil import git, run_ect

PKG = {
    "pkg/__init__.py": "from pkg.api import public\n",
    "pkg/api.py": "from .impl import helper\n\ndef public():\n    return helper()\n",
    "pkg/impl.py": "def helper():\n    return 1\n",
    "pkg/plugins/__init__.py": "",
    "pkg/plugins/loader.py": (
        "import importlib\n\ndef load(name):\n    return importlib.import_module(name)\n"
    ),
    "pkg/plugins/a.py": "A = 1\n",
    "pkg/lit.py": "import importlib\nmod = importlib.import_module('pkg.impl')\n",
    "pkg/sub/__init__.py": "",
    "pkg/sub/deep.py": "from .. import impl\nfrom ..api import public\n",
    "tests/test_reexport.py": "import pkg\n\ndef test_public():\n    assert pkg.public() == 1\n",
    "tests/test_sub.py": "from pkg.sub import deep\n\ndef test_deep():\n    assert deep.impl.helper() == 1\n",
    "tests/test_lit.py": "from pkg import lit\n\ndef test_lit():\n    assert lit.mod.helper() == 1\n",
    "tests/test_patch.py": (
        "from unittest import mock\n\n"
        "def test_patch():\n    with mock.patch('pkg.plugins.a.A', 2):\n        pass\n"
    ),
    "tests/test_loader.py": (
        "from pkg.plugins.loader import load\n\ndef test_load():\n    assert load('pkg.plugins.a').A == 1\n"
    ),
    "tests/test_alone.py": "def test_alone():\n    assert True\n",
}


def selected(repo, *args: str) -> list[str]:
    proc = run_ect(repo, "check", "--json", *args)
    data = json.loads(proc.stdout)
    if data["selection"]["run_all"]:
        return ["<all>"]
    return [t["path"] for t in data["selection"]["tests"]]


def touch(repo, rel: str) -> None:
    path = repo / rel
    path.write_text(path.read_text() + "\n# edit\n")


def test_relative_imports_and_reexports(make_repo) -> None:
    repo = make_repo(PKG)
    touch(repo, "pkg/impl.py")
    # test_reexport: `import pkg` runs pkg/__init__, which re-exports api, which imports impl relatively.
    # test_lit: importlib.import_module('pkg.impl') with a literal is an import.
    # test_loader reaches a dynamic import_module(name): it may load anything, so it runs too.
    assert selected(repo) == [
        "tests/test_lit.py",
        "tests/test_loader.py",
        "tests/test_patch.py",
        "tests/test_reexport.py",
        "tests/test_sub.py",
    ]


def test_dotted_string_counts_as_a_dependency(make_repo) -> None:
    repo = make_repo(PKG)
    touch(repo, "pkg/plugins/a.py")
    got = selected(repo)
    assert "tests/test_patch.py" in got  # mock.patch('pkg.plugins.a.A')
    assert "tests/test_alone.py" not in got


def test_leaf_with_no_dependants_selects_nothing_but_dynamic(make_repo) -> None:
    files = {k: v for k, v in PKG.items() if "loader" not in k}
    repo = make_repo(files)
    touch(repo, "pkg/sub/deep.py")
    assert selected(repo) == ["tests/test_sub.py"]


def test_explain_names_the_dynamic_import(make_repo) -> None:
    repo = make_repo(PKG)
    touch(repo, "pkg/sub/deep.py")
    proc = run_ect(repo, "check", "--explain")
    assert "dynamic import at line 4: import_module(...)" in proc.stdout
    assert "tests/test_loader.py" in proc.stdout


def test_graph_command(make_repo) -> None:
    repo = make_repo(PKG)
    proc = run_ect(repo, "graph", "pkg.impl")
    assert proc.returncode == 0, proc.stderr
    assert "pkg/api.py  [imports pkg.impl]" in proc.stdout
    assert "tests/test_reexport.py" in proc.stdout
    data = json.loads(run_ect(repo, "graph", "pkg/sub/deep.py", "--json").stdout)
    assert data["imports"] == ["pkg/__init__.py", "pkg/api.py", "pkg/impl.py"]
    proc = run_ect(repo, "graph", "no.such")
    assert proc.returncode == 2 and "no module or file named" in proc.stderr


def test_cache_reparses_only_changed_files(make_repo) -> None:
    repo = make_repo(PKG)
    out = run_ect(repo, "graph").stdout
    assert "parsed" in out and "0 from cache" in out
    touch(repo, "pkg/impl.py")
    out = run_ect(repo, "graph").stdout
    assert "(1 parsed, " in out
    git(repo, "checkout", "-q", ".")


def test_src_layout_and_pytest_rootdir_names(make_repo) -> None:
    repo = make_repo(
        {
            "src/lib/__init__.py": "",
            "src/lib/core.py": "V = 1\n",
            "tests/helpers.py": "from lib.core import V\n",
            "tests/test_uses_helper.py": "from helpers import V\n\ndef test_v():\n    assert V == 1\n",
            "tests/test_other.py": "def test_o():\n    assert True\n",
            "pyproject.toml": "[tool.pytest.ini_options]\npythonpath = ['src', 'tests']\n",
        }
    )
    touch(repo, "src/lib/core.py")
    assert selected(repo) == ["tests/test_uses_helper.py"]


def test_a_package_relative_dynamic_import_reaches_that_package_only(make_repo) -> None:
    files = {
        "lazy/__init__.py": (
            "import importlib\n\n\ndef __getattr__(name):\n"
            '    return importlib.import_module("." + name, __name__)\n'
        ),
        "lazy/x.py": "X = 1\n",
        "lazy/deep/__init__.py": "",
        "lazy/deep/y.py": "Y = 1\n",
        "other/__init__.py": "",
        "other/z.py": "Z = 1\n",
        "tests/test_lazy.py": "import lazy\n\ndef test_lazy():\n    assert lazy.x.X == 1\n",
        "tests/test_other.py": "from other import z\n\ndef test_other():\n    assert z.Z == 1\n",
    }
    repo = make_repo(files)
    touch(repo, "other/z.py")  # `import_module("." + name, __name__)` cannot load other.z
    assert selected(repo) == ["tests/test_other.py"]
    git(repo, "checkout", "--", ".")
    for changed in ("lazy/x.py", "lazy/deep/y.py"):  # any module of the package may be loaded
        touch(repo, changed)
        assert selected(repo) == ["tests/test_lazy.py"]
        git(repo, "checkout", "--", ".")
