"""The internal symbol index (libcst only): symbols, members, re-exports, call checks, cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ect.models.index import SymbolIndex

PKG = {
    "shop/__init__.py": (
        '"""Shop."""\nfrom .store import Store, open_store as open_shop\nfrom . import util\n'
    ),
    "shop/store.py": '''"""Storage."""
from dataclasses import dataclass


class Base:
    def close(self) -> None:
        """Close it."""


class Store(Base):
    """A key-value store."""

    limit = 10

    def __init__(self, root, *, readonly=False):
        self.root = root
        self.cache = {}

    def fetch(self, key, default=None):
        """Fetch one record."""
        return self.cache.get(key, default)

    @staticmethod
    def parse(text, /, strict=True, *rest, **extra):
        return text

    @property
    def size(self):
        return len(self.cache)


@dataclass
class Record:
    key: str
    value: int = 0


def open_store(root, **options):
    return Store(root)
''',
    "shop/util.py": "from .store import *\n\ndef helper(a, b):\n    return open_store(a).fetch(b)\n",
    "shop/dyn.py": "def __getattr__(name):\n    return name\n",
    "shop/ext.py": "import collections\n\nclass Counter2(collections.Counter):\n    pass\n",
    "app.py": "from shop import Store\n\ns = Store('x')\ns.fetch('k')\ns.fetch('j')\n",
    ".venv/lib/ignored.py": "def hidden():\n    pass\n",
}


def write_tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


@pytest.fixture()
def index(tmp_path: Path) -> SymbolIndex:
    write_tree(tmp_path, PKG)
    return SymbolIndex.build(tmp_path, tmp_path / ".ect")


def test_symbols_signatures_and_docs(index: SymbolIndex) -> None:
    store = index.get("shop.store.Store")
    assert store is not None and store.kind == "class" and store.doc == "A key-value store."
    assert store.path == "shop/store.py" and store.line == 10
    fetch = index.get("shop.store.Store.fetch")
    assert fetch is not None and fetch.kind == "method"
    assert [(p.name, p.kind, p.has_default) for p in fetch.params] == [
        ("key", "positional", False),
        ("default", "positional", True),
    ]
    assert fetch.signature == "def fetch(self, key, default=None)"
    assert fetch.uses >= 3  # helper + app.py twice
    assert index.get("shop.store.Store.size").kind == "variable"  # a property
    assert index.get("shop.store.Store.root").kind == "variable"  # assigned on self
    assert index.get("shop.store.Store.parse").decorators == ["staticmethod"]
    assert index.get("shop.store.Store.parse").params[0].kind == "positional_only"
    assert index.find("hidden") == []  # virtual environments are not indexed
    assert "shop" in index.modules() and "shop.store" in index.modules() and "app" in index.modules()


def test_members_reexports_and_inheritance(index: SymbolIndex) -> None:
    names = {m.name for m in index.members("shop")}
    assert {"Store", "open_shop", "util", "store", "dyn"} <= names
    assert index.resolve_import("shop", "open_shop").qualname == "shop.store.open_store"
    assert index.resolve_import("shop", "Store").qualname == "shop.store.Store"
    assert index.resolve_import("shop.util", "Record").qualname == "shop.store.Record"  # star import
    assert index.get("shop.Store").qualname == "shop.store.Store"
    members = {m.name for m in index.members("shop.store.Store")}
    assert {"fetch", "parse", "size", "root", "cache", "limit", "close"} <= members  # close: from Base
    assert not index.is_open("shop.store.Store")
    assert index.is_open("shop.dyn")  # module __getattr__
    assert index.is_open("shop.ext.Counter2")  # external base class


def test_check_call(index: SymbolIndex) -> None:
    assert index.check_call("shop.store.Store.fetch", 1, []) is None
    assert index.check_call("shop.store.Store.fetch", 0, ["key", "default"]) is None
    assert "missing" in index.check_call("shop.store.Store.fetch", 0, [])
    assert "positional" in index.check_call("shop.store.Store.fetch", 3, [])
    reason = index.check_call("shop.store.Store.fetch", 0, ["kye"])
    assert reason is not None and "did you mean 'key'" in reason
    assert "multiple values" in index.check_call("shop.store.Store.fetch", 1, ["key"])
    assert index.check_call("shop.store.Store", 1, ["readonly"]) is None  # class: __init__ params
    assert "unexpected" in index.check_call("shop.store.Store", 1, ["mode"])
    assert index.check_call("shop.store.Store.parse", 5, ["anything"]) is None  # *rest, **extra
    assert "missing" in index.check_call("shop.store.Store.parse", 0, ["text"])  # goes to **extra
    assert index.check_call("shop.store.Record", 1, []) is None  # dataclass fields
    assert "missing" in index.check_call("shop.store.Record", 0, ["value"])
    assert "not defined" in index.check_call("shop.store.Nope", 0, [])
    assert SymbolIndex.closest("fecth", ["fetch", "parse", "size"]) == ["fetch"]


def test_incremental_cache_and_corrupt_cache(tmp_path: Path) -> None:
    write_tree(tmp_path, PKG)
    state = tmp_path / ".ect"
    first = SymbolIndex.build(tmp_path, state)
    cache = state / "index" / "index.json"
    assert cache.is_file()
    cached = json.loads(cache.read_text())
    unchanged_hash = cached["files"]["shop/util.py"]["hash"]
    (tmp_path / "shop" / "util.py").write_text("def helper2(x):\n    return x\n")
    second = SymbolIndex.build(tmp_path, state)
    assert second.get("shop.util.helper") is None and second.get("shop.util.helper2") is not None
    assert json.loads(cache.read_text())["files"]["shop/util.py"]["hash"] != unchanged_hash
    assert len(second) == len(first)  # helper replaced by helper2
    cache.write_text("{ not json")
    third = SymbolIndex.build(tmp_path, state)
    assert third.get("shop.util.helper2") is not None
    assert json.loads(cache.read_text())["version"]  # rewritten


def test_json_round_trip_and_syntax_errors(tmp_path: Path) -> None:
    write_tree(tmp_path, {**PKG, "broken.py": "def oops(:\n"})
    index = SymbolIndex.build(tmp_path)
    again = SymbolIndex.from_json(json.loads(json.dumps(index.to_json())))
    assert len(again) == len(index)
    assert again.get("shop.store.Store.fetch") == index.get("shop.store.Store.fetch")
    assert index.get("broken") is None  # unparsable files contribute nothing
