"""Which cache misses the recorder runs as import time (`ect.fingerprints.memo`)."""

from __future__ import annotations

import ast
import textwrap

from fp_testutil import FP_SAMPLE, LOG_HELPER, check, edit

from ect.fingerprints.memo import MEMO
from ect.fingerprints.recorder import instrument

SOURCE = textwrap.dedent(
    """
    import functools

    _CACHE = {}


    @functools.lru_cache(maxsize=None)
    def memoised(x):
        '''doc'''
        return make(x)


    @functools.cache
    def memoised_generator(x):
        yield make(x)


    class Factory(type):
        def __call__(cls, key):
            found = cls.__made.get(key)
            if found is None:
                found = cls.__made.setdefault(key, cls.build(key))
            return found


    def global_cache(key):
        try:
            return _CACHE[key]
        except KeyError:
            _CACHE[key] = value = make(key)
            return value


    def local_dict(words):
        seen = {}
        for w in words:
            if w not in seen:
                seen[w] = make(w)
        return seen


    def counter(w):
        COUNTS[w] = COUNTS[w] + 1


    def registry(name):
        HANDLERS[name] = make(name)  # stored, never looked up here: not a cache


    async def fetch(key):
        if key not in _CACHE:
            _CACHE[key] = await load(key)
        return _CACHE[key]


    def make_getter():
        class Getter:
            def __init__(self):
                self._zones = {}

            def __call__(self, name):
                rv = self._zones.get(name, None)
                if rv is None:
                    rv = self.nocache(name)
                    self._zones[name] = rv
                return rv

        return Getter()
    """
)


def _wrapped() -> dict[str, list[str]]:
    """Function name -> the statements run between MEMO(1) and MEMO(0)."""
    tree = ast.parse(SOURCE)
    instrument(tree)
    out: dict[str, list[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for sub in ast.walk(node):
                if isinstance(sub, ast.Try) and sub.finalbody and MEMO in ast.unparse(sub.finalbody[0]):
                    out.setdefault(node.name, []).extend(ast.unparse(s) for s in sub.body)
    compile(tree, "<memo>", "exec")  # still valid Python
    return out


def test_memo_decorators_and_hand_written_caches_run_their_misses_as_import_time() -> None:
    wrapped = _wrapped()
    assert wrapped == {
        "memoised": ["return make(x)"],
        # Factory's, then Getter's, nested in make_getter (dateutil's gettz): the call whose result
        # is stored, up to its store (what is done to it in between is cached with it), not the lookup
        "__call__": [
            "found = cls.__made.setdefault(key, cls.build(key))",
            "rv = self.nocache(name)",
            "self._zones[name] = rv",
        ],
        "global_cache": ["_CACHE[key] = value = make(key)"],
        "make_getter": ["rv = self.nocache(name)", "self._zones[name] = rv"],
    }, wrapped
    names = instrument(ast.parse(SOURCE))
    assert "make_getter|*__call__" in names  # its own hit marker: who called the cache


def test_the_hit_path_is_not_wrapped_and_a_miss_names_the_block_holding_the_cache() -> None:
    tree = ast.parse(SOURCE)
    instrument(tree)
    text = ast.unparse(tree)
    # the factory's lookup and return run outside the wrapper, so a hit costs nothing more
    call = text[text.index("def __call__") : text.index("def global_cache")]
    lookup = "cls.__made.get(__ect_hits__.keyed('Factory.__call__', key))"  # notes the key looked up
    assert call.index(lookup) < call.index(f"{MEMO}(1, 'Factory.__call__', key)")
    assert call.rstrip().endswith("return found")
    # a decorator's hits run nothing: its misses are import time (no block named)
    assert f"{MEMO}(1, '')" in text[text.index("def memoised(") : text.index("def memoised_generator")]


KEYED = textwrap.dedent(
    """
    class Zones:
        def __init__(self):
            self._zones = {}
            self._seen = {}
            self._all = {}
            self._moved = {}

        def get(self, name):
            rv = self._zones.get(name)
            if rv is None:
                rv = parse(name)
                self._zones[name] = rv
            return rv

        def get_pair(self, name, strict=False):
            key = (name, strict)
            if key not in self._seen:
                self._seen[key] = parse(name)
            return self._seen[key]

        def get_any(self, name):
            if name not in self._all:
                self._all[name] = parse(name)
            return self._all[name]

        def every(self):
            return list(self._all.values())  # another reader of the cache: its entries escape

        def get_offset(self, name, offset):
            if isinstance(offset, float):
                key = (name, int(offset))
            else:
                key = (name, offset)
            found = self._offsets.get(key)
            if found is None:
                found = self._offsets.setdefault(key, parse(name))
            return found

        def get_maybe(self, name, strict):
            if strict:
                key = name
            found = self._maybe.get(key)  # unbound when not strict: the lookup raises
            if found is None:
                found = self._maybe.setdefault(key, parse(name))
            return found

        def get_moved(self, name):
            rv = self._moved.get(name)
            if rv is None:
                name = name.lower()  # the key changes after its lookup
                rv = self._moved[name] = parse(name)
            return rv
    """
)


def _keyed_blocks(source: str) -> set[str]:
    tree = ast.parse(source)
    instrument(tree)
    text = ast.unparse(tree)
    return {part.split("'")[1] for part in text.split("__ect_hits__.keyed(")[1:]}


def test_a_cache_used_under_one_steady_key_only_records_its_lookups_keys() -> None:
    # `get`, `get_pair` and `get_offset` (a key bound in both branches, dateutil's tzoffset)
    # qualify; `get_any`'s container is read elsewhere (`every`); `get_moved` stores under a key
    # reassigned after its lookup; `get_maybe`'s key may be unbound
    assert _keyed_blocks(KEYED) == {"Zones.get", "Zones.get_pair", "Zones.get_offset"}
    text = ast.unparse(_instrumented(KEYED))
    assert f"{MEMO}(1, 'Zones.get', name)" in text
    assert f"{MEMO}(1, 'Zones.get_any')" in text and f"{MEMO}(1, 'Zones.get_moved')" in text
    looped = textwrap.dedent(
        """
        class Zones:
            def get(self, names):
                for name in names:
                    if name not in self._zones:
                        self._zones[name] = parse(name)
                return self._zones[name]
        """
    )
    assert _keyed_blocks(looped) == set()  # a key a loop assigns: by function


def _instrumented(source: str) -> ast.Module:
    tree = ast.parse(source)
    instrument(tree)
    compile(tree, "<memo>", "exec")
    return tree


def test_recording_adds_no_callable_to_a_modules_namespace(make_repo, ran_log) -> None:
    # toolz.curried wraps every callable of a module's namespace: a function the recorder put there
    # (a first version bound the miss hook as a module global) made its test fail only under ect
    files = {
        "pyproject.toml": FP_SAMPLE["pyproject.toml"],
        "shop/__init__.py": "",
        "shop/ops.py": (
            "_made = {}\n\n\ndef make(key):\n    found = _made.get(key)\n    if found is None:\n"
            "        found = _made[key] = str(key)\n    return found\n\n\ndef double(x):\n    return 2 * x\n"
        ),
        "tests/test_ops.py": LOG_HELPER
        + (
            "from shop import ops\n\n\ndef test_public_callables():\n    _ran('test_public_callables')\n"
            "    assert ops.make(1) == '1'\n"
            "    assert sorted(n for n, v in vars(ops).items() if callable(v)) == ['double', 'make']\n"
        ),
    }
    repo = make_repo(files)
    proc = check(repo, "--all")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert ran_log() == ["test_public_callables"]
    edit(repo, "shop/ops.py", "str(key)", "str(key) + ''")  # inside the cache miss: still recorded
    proc = check(repo, "--explain")
    assert proc.returncode == 0, proc.stdout
    assert ran_log() == ["test_public_callables"], proc.stdout


GETTER = {
    "pyproject.toml": FP_SAMPLE["pyproject.toml"],
    "shop/__init__.py": "",
    "shop/zones.py": textwrap.dedent(
        """
        def _make_getter():
            class Getter:
                def __init__(self):
                    self._zones = {}

                def __call__(self, name):
                    rv = self._zones.get(name)
                    if rv is None:
                        rv = parse_zone(name)
                        self._zones[name] = rv
                    return rv

            return Getter()


        get = _make_getter()


        def parse_zone(name):
            return name.upper()


        def other(x):
            return x + 1
        """
    ),
    "tests/test_zones.py": LOG_HELPER
    + textwrap.dedent(
        """
        from shop import zones


        def test_first():
            _ran('test_first')
            assert zones.get('utc') == 'UTC'


        def test_second():
            _ran('test_second')
            assert zones.get('utc') == 'UTC'


        def test_other():
            _ran('test_other')
            assert zones.other(1) == 2
        """
    ),
}


def test_a_cache_in_an_object_a_module_made_reaches_the_tests_that_got_its_result(make_repo, ran_log) -> None:
    """dateutil's `gettz = __get_gettz()`: `test_second` gets `test_first`'s cached zone without
    running `parse_zone`; a change to it must run both, and not `test_other`, though the module's
    import ran a method of the same class (missed before: the full suite failed test_second)."""
    repo = make_repo(GETTER)
    proc = check(repo, "--all")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(ran_log()) == ["test_first", "test_other", "test_second"]
    edit(repo, "shop/zones.py", "return name.upper()", "return name.lower()")
    proc = check(repo, "--explain")
    assert proc.returncode == 1, proc.stdout
    assert sorted(ran_log()) == ["test_first", "test_second"], proc.stdout
    assert "in a cache miss of shop/zones.py::_make_getter|*__call__" in proc.stdout


KEYED_REPO = {
    "pyproject.toml": FP_SAMPLE["pyproject.toml"],
    "shop/__init__.py": "",
    "shop/zones.py": textwrap.dedent(
        """
        def _make_getter():
            class Getter:
                def __init__(self):
                    self._zones = {}

                def __call__(self, name, fresh=False):
                    rv = None if fresh else self._zones.get(name)
                    if rv is None:
                        rv = parse_zone(name)
                        self._zones[name] = rv
                    return rv

            return Getter()


        get = _make_getter()


        def parse_zone(name):
            if name == "bad":
                raise ValueError(bad_message())
            if name.startswith("utc"):
                return utc_zone(name)
            return name.upper()


        def utc_zone(name):
            return "UTC"


        def bad_message():
            return "no such zone"
        """
    ),
    "tests/test_zones.py": LOG_HELPER
    + textwrap.dedent(
        """
        import pytest

        from shop import zones


        def test_first():
            _ran('test_first')
            assert zones.get('utc') == 'UTC'


        def test_second():
            _ran('test_second')
            assert zones.get('utc') == 'UTC'


        def test_cet():
            _ran('test_cet')
            assert zones.get('cet') == 'CET'


        def test_bad():
            _ran('test_bad')
            with pytest.raises(ValueError, match='no such zone'):
                zones.get('bad', fresh=True)  # a miss with no lookup before it
        """
    ),
}


def test_a_cache_miss_reaches_the_tests_that_looked_up_its_key(make_repo, ran_log) -> None:
    """What runs in the miss for 'utc' reaches test_first, which ran it, and test_second, which got
    its cached result, not test_cet, which looked up another zone (before, every caller of the
    getter ran); a miss that raised (nothing cached) still reaches the test that ran it."""
    repo = make_repo(KEYED_REPO)
    proc = check(repo, "--all")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert ran_log() == ["test_bad", "test_cet", "test_first", "test_second"]
    edit(repo, "shop/zones.py", 'return "UTC"', 'return "utc"')
    proc = check(repo, "--explain")
    assert proc.returncode == 1, proc.stdout
    assert ran_log() == ["test_first", "test_second"], proc.stdout
    assert "for a key the test looked up there" in proc.stdout
    edit(repo, "shop/zones.py", 'return "utc"', 'return "UTC"')
    edit(repo, "shop/zones.py", 'return "no such zone"', 'return "no zone"')
    proc = check(repo)
    assert proc.returncode == 1, proc.stdout
    assert ran_log() == ["test_bad"], proc.stdout


BOUND = {
    "pyproject.toml": FP_SAMPLE["pyproject.toml"],
    "shop/__init__.py": "",
    "shop/fields.py": textwrap.dedent(
        """
        class Field:
            def bind(self, parent):
                self.parent = parent.upper()


        class Inferred:
            def __init__(self):
                self._cache = {}

            def field(self, cls):
                found = self._cache.get(cls)
                if found is None:
                    found = cls()
                    found.bind("schema")
                    self._cache[cls] = found
                return found


        INFERRED = Inferred()
        """
    ),
    "tests/test_fields.py": LOG_HELPER
    + textwrap.dedent(
        """
        from shop import fields


        def test_first():
            _ran('test_first')
            assert fields.INFERRED.field(fields.Field).parent == 'SCHEMA'


        def test_second():
            _ran('test_second')
            assert fields.INFERRED.field(fields.Field).parent == 'SCHEMA'
        """
    ),
}


def test_what_is_done_to_a_value_before_it_is_cached_reaches_who_got_it(make_repo, ran_log) -> None:
    """marshmallow's `Inferred`: the cached field is bound to its schema between `cls()` and the
    store; test_second gets it bound without running `bind`, so a change to `bind` must run it."""
    repo = make_repo(BOUND)
    proc = check(repo, "--all")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert ran_log() == ["test_first", "test_second"]
    edit(repo, "shop/fields.py", "parent.upper()", "parent.lower()")
    proc = check(repo, "--explain")
    assert proc.returncode == 1, proc.stdout
    assert ran_log() == ["test_first", "test_second"], proc.stdout
