"""The review bot on real repositories: rules on changed lines only, fingerprints that
survive re-runs, auto-resolution, the inline cap, SARIF, and the checks it records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ect.review.bot import BotReport, run_bot
from ect.review.gitcmd import Git
from ect.review.policy import from_worktree
from ect.review.store import Store
from ect.review.testing import Scenario, make_scenario

from ect.config import load_config

RULES = """\
untested_module = "advisory"
prfaq = "blocking"
[tool.ect.review.forbidden]
"os.system" = "use subprocess.run"
[tool.ect.review.deprecated]
"pkg.core.add" = "use operator.add"
"""
LEGACY = "import os\n\n\ndef old():\n    os.system('true')\n"


@pytest.fixture
def sc(tmp_path: Path) -> Scenario:
    sc = make_scenario(
        tmp_path,
        people=("alice",),
        review=RULES,
        hook=False,
        extra_files={"pkg/legacy.py": LEGACY, "tests/test_legacy.py": "import pkg.legacy\n"},
    )
    sc.git("alice", "checkout", "-q", "-b", "feature")
    return sc


def _bot(sc: Scenario, run_tests: bool = False) -> BotReport:
    root = sc.clones["alice"]
    cfg = load_config(root)
    return run_bot(root, cfg, from_worktree(Git(root), root, cfg), None, run_tests=run_tests)


def _comments(sc: Scenario) -> list[dict[str, object]]:
    store = Store(Git(sc.clones["alice"], env=sc.env))
    return [r.data for r in store.of_type("comment")]


def test_rules_flag_only_added_lines_and_never_duplicate(sc: Scenario) -> None:
    sc.commit(
        "alice",
        {
            "pkg/legacy.py": LEGACY + "\n\ndef new():\n    os.system('ls')\n",
            "pkg/uses.py": "from pkg.core import add\n\n\ndef twice(x):\n    return add(x, x)\n",
        },
        "new code",
    )
    first = _bot(sc)
    rules = sorted((f.rule, f.path, f.line) for f in first.findings)
    assert ("forbidden-api", "pkg/legacy.py", 9) in rules
    assert not any(r == ("forbidden-api", "pkg/legacy.py", 5) for r in rules)  # untouched line
    assert ("deprecated-api", "pkg/uses.py", 1) in rules and ("deprecated-api", "pkg/uses.py", 5) in rules
    assert ("untested-module", "pkg/uses.py", 1) in rules
    assert {f.severity for f in first.findings if f.rule == "forbidden-api"} == {"blocking"}
    assert len(first.posted) == len(first.findings)
    for _ in range(3):
        again = _bot(sc)
        assert again.posted == [] and again.resolved == []
    assert len(_comments(sc)) == len(first.findings)
    # moving the flagged code down does not re-post it either
    sc.commit(
        "alice", {"pkg/legacy.py": "# moved\n" + LEGACY + "\n\ndef new():\n    os.system('ls')\n"}, "move"
    )
    assert _bot(sc).posted == []


def test_a_later_commit_resolves_the_finding(sc: Scenario) -> None:
    sc.commit("alice", {"pkg/legacy.py": LEGACY + "\n\ndef new():\n    os.system('ls')\n"}, "bad")
    first = _bot(sc, run_tests=True)
    [blocking] = first.blocking
    shown = json.loads(sc.ect("alice", "review", "show", "--json").stdout)
    assert any("unresolved blocking comment at pkg/legacy.py:9" in u for u in shown["gate"]["unmet"])
    sc.commit("alice", {"pkg/legacy.py": LEGACY + "\n\ndef new():\n    return 0\n"}, "fix")
    second = _bot(sc, run_tests=True)
    assert second.resolved == [blocking.fp] and second.blocking == []
    proc = sc.ect("alice", "review", "show", "--json")
    shown = json.loads(proc.stdout)
    assert shown["comments"] == [] and [c["fp"] for c in shown["resolved"]] == [blocking.fp]
    assert not any("blocking comment" in u for u in shown["gate"]["unmet"])
    assert shown["check"]["outcome"] == "pass"


def test_inline_comments_are_capped(sc: Scenario) -> None:
    calls = "".join(f"\n\ndef f{i}():\n    os.system('echo {i}')\n" for i in range(40))
    sc.commit("alice", {"pkg/legacy.py": LEGACY + calls}, "many")
    report = _bot(sc)
    assert len(report.inline) == 30 and len(report.summary) == 10
    stored = _comments(sc)
    assert sum(1 for c in stored if c["inline"]) == 30 and len(stored) == 40
    text = sc.ect("alice", "review", "show").stdout
    assert "10 more finding(s)" in text


def test_prfaq_rule_and_sarif_export(sc: Scenario, tmp_path: Path) -> None:
    sc.commit("alice", {"billing/__init__.py": "", "billing/api.py": "X = 1\n"}, "new service")
    out = tmp_path / "bot.sarif"
    proc = sc.ect("alice", "review", "bot", "--no-tests", "--sarif", str(out))
    assert proc.returncode == 1, proc.stdout + proc.stderr  # a blocking finding
    sarif = json.loads(out.read_text())
    assert sarif["version"] == "2.1.0"
    results = sarif["runs"][0]["results"]
    prfaq = [r for r in results if r["ruleId"] == "prfaq"]
    assert prfaq and prfaq[0]["level"] == "error"
    assert prfaq[0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].startswith("billing/")
    assert all(r["partialFingerprints"]["ectFingerprint/v1"] for r in results)
    sc.commit("alice", {"billing/PRFAQ.md": "# Billing\n"}, "work backwards")
    again = sc.ect("alice", "review", "bot", "--no-tests", "--json")
    data = json.loads(again.stdout)
    assert data["resolved"] and not any(f["rule"] == "prfaq" for f in data["findings"])
    shown = json.loads(sc.ect("alice", "review", "show", "--sarif", "-").stdout)
    assert any(r.get("baselineState") == "absent" for r in shown["runs"][0]["results"])


def test_compile_errors_and_failing_tests_block(sc: Scenario) -> None:
    sc.commit(
        "alice", {"pkg/core.py": "def add(a, b):\n    return a - b\n", "pkg/broken.py": "def f(:\n"}, "oops"
    )
    report = _bot(sc, run_tests=True)
    assert report.check is not None and report.check.outcome == "fail"
    rules = {f.rule for f in report.blocking}
    assert any(r.startswith("compile/") for r in rules)
    sc.commit("alice", {"pkg/broken.py": "def f():\n    return 1\n"}, "compiles")
    report = _bot(sc, run_tests=True)
    assert [f.rule for f in report.blocking] == ["test-failed"]
    promote = sc.ect("alice", "promote", "HEAD", "--to", "staging")
    assert promote.returncode == 1
    assert "checks failed" in promote.stdout and "test fails" in promote.stdout


def test_bot_on_another_revision_uses_a_temporary_worktree(sc: Scenario) -> None:
    first = sc.commit("alice", {"pkg/extra.py": "import os\nos.system('x')\n"}, "one")
    sc.commit("alice", {"pkg/extra.py": "Y = 2\n"}, "two")
    proc = sc.ect("alice", "review", "bot", f"main..{first}", "--json")
    data = json.loads(proc.stdout)
    assert data["head"] == first and data["checks"] == "pass"
    assert any(f["rule"] == "forbidden-api" for f in data["findings"])
    assert sc.git("alice", "worktree", "list").count("\n") == 0  # cleaned up


def test_verified_fixes_of_the_fix_engine_become_comments(sc: Scenario) -> None:
    pytest.importorskip("ect.fix.engine")
    sc.commit(
        "alice",
        {
            "pkg/core.py": "def add(a, b):\n    return a + b\n\n\ndef twice(x):\n    return ad(x, x)\n",
            "tests/test_core.py": "from pkg.core import twice\n\n\ndef test_twice():\n"
            "    assert twice(2) == 4\n",
        },
        "typo",
    )
    report = _bot(sc, run_tests=True)
    fixes = [f for f in report.findings if f.rule == "verified-fix"]
    assert fixes and fixes[0].path == "pkg/core.py" and fixes[0].line == 6
    assert fixes[0].severity == "advisory" and fixes[0].fix and "+    return add(x, x)" in fixes[0].fix
    assert [f.rule for f in report.blocking] == ["test-failed"]
    shown = sc.ect("alice", "review", "show").stdout
    assert "verified fix" in shown and "return add(x, x)" in shown
