"""The fingerprint database's storage of block names and explanations (`ect.fingerprints.store`)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ect.fingerprints.store import KEEP_RECORDS, Record, Store


def _record(nodeid: str, fp: str, names: list[str], ts: float) -> Record:
    deps = {
        "py": {"pkg/mod.py": ["d1", names, False]},
        "data": {"data.txt": "x"},
        "via": {"pkg/mod.py": {names[0]: "while collecting tests/test_mod.py"}},
    }
    return Record(nodeid, "tests/test_mod.py", fp, "passed", 0.1, "env", ts, deps)


def test_block_name_sets_are_stored_once_and_dropped_with_the_last_record_using_them(tmp_path: Path) -> None:
    store = Store(tmp_path / "fp.db")
    shared = ["f", "f|1", "f|*"]
    with store.write() as conn:
        for i in range(50):  # parametrised tests that ran the same blocks
            store.put_record(conn, _record(f"tests/test_mod.py::test_p[{i}]", "a", shared, 1.0))
    db = sqlite3.connect(tmp_path / "fp.db")
    assert db.execute("SELECT count(*) FROM namesets").fetchone()[0] == 1
    assert db.execute("SELECT count(*) FROM deps").fetchone()[0] == 100  # py + data for each

    # one test recorded with new blocks more often than records are kept: its old sets go
    with store.write() as conn:
        for n in range(KEEP_RECORDS + 3):
            store.put_record(conn, _record("tests/test_mod.py::test_q", f"q{n}", ["g", f"g|{n}"], 2.0 + n))
    sets = {row[0] for row in db.execute("SELECT names FROM namesets")}
    kept = {f"g\ng|{n}" for n in range(3, KEEP_RECORDS + 3)}
    assert sets == {"f\nf|1\nf|*", *kept}

    # selection reads the names back (every record of test_q is reached), and the compressed explanation
    fid = db.execute("SELECT id FROM files WHERE path = 'pkg/mod.py'").fetchone()[0]
    asked: list[list[str]] = []
    stale = store.stale_records([fid], "env", lambda _fid, names: asked.append(names) or "g" in names)
    assert sorted(stale) == ["tests/test_mod.py::test_q"]
    assert ["f", "f|1", "f|*"] in asked  # once for the 50 records that share it
    assert asked.count(["f", "f|1", "f|*"]) == 1
    newest = stale["tests/test_mod.py::test_q"][0]
    assert newest.deps["py"]["pkg/mod.py"][1] == ["g", f"g|{KEEP_RECORDS + 2}"]
    assert isinstance(newest.deps["via_json"], bytes)
    db.close()
    store.close()


def test_file_versions_that_no_kept_record_uses_are_dropped(tmp_path: Path) -> None:
    store = Store(tmp_path / "fp.db")
    rounds = KEEP_RECORDS + 2
    for n in range(rounds):  # edit-run rounds: each records test_q against a new version of mod.py
        with store.write() as conn:
            store.put_version(conn, "pkg/mod.py", f"v{n}", b"x = 1\n", set())
            store.put_version(conn, "pkg/other.py", f"o{n}", b"y = 1\n", set())  # no record uses it
            deps = {"py": {"pkg/mod.py": [f"v{n}", ["g"], False]}, "data": {}}
            rec = Record(
                "tests/test_mod.py::test_q", "tests/test_mod.py", f"q{n}", "passed", 0.1, "env", n, deps
            )
            store.put_record(conn, rec)
    db = sqlite3.connect(tmp_path / "fp.db")
    kept = {f"v{n}" for n in range(rounds - KEEP_RECORDS, rounds)}
    assert {r[0] for r in db.execute("SELECT digest FROM files WHERE path = 'pkg/mod.py'")} == kept
    assert {r[0] for r in db.execute("SELECT digest FROM versions WHERE path = 'pkg/mod.py'")} == kept
    # a path no record uses keeps its versions: it stays known as instrumented (`refine`)
    assert db.execute("SELECT count(*) FROM versions WHERE path = 'pkg/other.py'").fetchone()[0] == rounds
    db.close()
    store.close()


def test_a_reader_reaches_only_the_records_that_saw_the_version_whose_names_it_reads(tmp_path: Path) -> None:
    store = Store(tmp_path / "fp.db")
    with store.write() as conn:
        for n, source in enumerate(("old", "now")):  # two tests: one ran against an older lib.py
            ran = ["reader"] if source == "old" else ["other", "reader"]
            deps = {"py": {"pkg/lib.py": [source, [], True], "pkg/use.py": ["u", ran, False]}, "data": {}}
            rec = Record(
                f"tests/test_use.py::test_{source}", "tests/test_use.py", f"f{n}", "passed", 0.1, "env", 1.0
            )
            rec.deps = deps
            store.put_record(conn, rec)
    db = sqlite3.connect(tmp_path / "fp.db")
    ids = {(p, d): i for i, p, d in db.execute("SELECT id, path, digest FROM files")}
    db.close()
    old, use = ids[("pkg/lib.py", "old")], ids[("pkg/use.py", "u")]
    # lib.py's version "old" differs from now in a module-level name that use.py's `reader` block reads
    stale = store.stale_records([old, use], "env", lambda fid, names: [old] if fid == use else False)
    assert sorted(stale) == ["tests/test_use.py::test_old"]
    # settled first: the test whose record depends on no changed version is not even looked at
    assert store.settle([old], "env") == {old}
    asked: list[int] = []
    stale = store.stale_records(
        [old, use], "env", lambda fid, names: asked.append(fid) or ([old] if fid == use else False)
    )
    assert sorted(stale) == ["tests/test_use.py::test_old"]
    assert sorted(asked) == sorted([old, use])  # not test_now's pair (use.py, other blocks)
    store.close()
