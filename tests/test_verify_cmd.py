"""`ect verify` on a real repository: mutants, full suite vs selection, scratch worktree cleaned up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from ect_testutil import GIT_ENV, git, run_ect
from fp_testutil import FAST, FP_SAMPLE

from ect import runner
from ect.verify_report import count_selected, score


def test_verify_reports_full_recall_and_leaves_no_trace(make_repo, ran_log) -> None:
    repo = make_repo(FP_SAMPLE)
    proc = run_ect(repo, "verify", "--mutants", "6", "--seed", "3", "--json", env=FAST, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(proc.stdout)
    assert data["mutants"] == 6 and data["tests_total"] == 5
    assert data["caught_by_full_suite"] >= 1
    assert data["recall"] == 1.0 and data["misses"] == []
    assert 0 < data["median_test_time_fraction"] <= 1
    for result in data["results"]:
        assert result["path"].startswith("shop/") and result["operator"]
        if result["caught_full"]:
            assert result["caught_selection"]
    # the scratch worktree is gone, the user's tree and state are untouched
    assert git(repo, "worktree", "list").count("\n") == 1
    assert git(repo, "status", "--porcelain") == ""
    assert not (repo / ".ect" / "fingerprints.db").exists()
    # same seed, same mutants
    again = json.loads(
        run_ect(repo, "verify", "--mutants", "6", "--seed", "3", "--json", env=FAST, timeout=300).stdout
    )
    assert [(r["path"], r["line"], r["operator"]) for r in again["results"]] == [
        (r["path"], r["line"], r["operator"]) for r in data["results"]
    ]


def test_verify_text_output_and_bad_input(make_repo, tmp_path) -> None:
    repo = make_repo(FP_SAMPLE)
    proc = run_ect(repo, "verify", "--mutants", "2", env=FAST, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "recall:" in proc.stdout and "100.0%" in proc.stdout
    bad = run_ect(repo, "verify", "--mutants", "0")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    outside = run_ect(tmp_path, "verify")
    assert outside.returncode == 2 and outside.stderr.startswith("ect: error:")
    empty = make_repo({"README.md": "nothing\n"}, name="empty")
    proc = run_ect(empty, "verify", "--mutants", "2")
    assert proc.returncode == 2 and "ect: error:" in proc.stderr


# A realistic layout: a src/ package installed editable (a .pth line, as setuptools writes it) into
# the venv that runs the tests, a conftest that needs an ignored local .env, an untracked ect.toml,
# a _version.py written at install time (ignored), a test parametrized with a value that changes
# every run, and a folder pytest is told to skip.
CALC = {
    "pyproject.toml": """
        [project]
        name = "calc"
        version = "0.1.0"
        [tool.pytest.ini_options]
        testpaths = ["tests"]
        norecursedirs = ["tests/manual"]
    """,
    ".gitignore": ".env\nsrc/calc/_version.py\n",
    "src/calc/__init__.py": "from calc._version import VERSION as VERSION\n",
    "src/calc/core.py": """
        def add(a, b):
            return a + b


        def scale(x, k):
            if k < 0:
                raise ValueError("negative")
            return x * k
    """,
    "src/calc/text.py": """
        def shout(s):
            return s.upper() + "!"
    """,
    "tests/conftest.py": """
        from pathlib import Path

        import pytest

        ENV = Path(__file__).resolve().parent.parent / ".env"


        def pytest_configure(config):
            if not ENV.is_file():
                raise pytest.UsageError(f"{ENV} is missing")
    """,
    "tests/test_core.py": """
        import time

        import pytest

        from calc.core import add, scale


        @pytest.mark.parametrize("stamp", [f"run-{time.time_ns()}", "fixed"])
        def test_add(stamp):
            assert add(2, 3) == 5


        def test_scale():
            assert scale(2, 3) == 6


        def test_scale_negative():
            with pytest.raises(ValueError):
                scale(1, -1)
    """,
    "tests/test_text.py": """
        from calc.text import shout


        def test_shout():
            assert shout("a") == "A!"
    """,
    "tests/manual/test_by_hand.py": """
        from calc import core

        raise RuntimeError("run by hand only: pytest never collects this folder")
    """,
}


def editable_venv(tmp_path: Path, src: Path) -> Path:
    """A venv whose Python sees ect's environment and has `src` installed editable; its python."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    site = Path(
        subprocess.run(
            [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    (site / "_ect_env.pth").write_text(
        f"import site; site.addsitedir({sysconfig.get_paths()['purelib']!r})\n"
    )
    (site / "__editable__.calc-0.1.0.pth").write_text(f"{src}\n")
    return venv / "bin" / "python"


@pytest.mark.slow
def test_verify_on_a_realistic_layout(make_repo, tmp_path) -> None:
    repo = make_repo(CALC, name="calc")
    (repo / ".env").write_text("CALC_MODE=local\n")
    (repo / "src" / "calc" / "_version.py").write_text('VERSION = "0.1.0"\n')
    (repo / "ect.toml").write_text('pytest_args = ["-p", "no:cacheprovider"]\n')
    python = editable_venv(tmp_path, repo / "src")
    env = {**os.environ, **GIT_ENV, **FAST}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(
        [str(python), "-m", "ect", "verify", "--mutants", "8", "--json"],
        cwd=repo,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(proc.stdout)
    assert data["errors"] == [] and data["misses"] == [], data
    assert data["tests_total"] == 5 and data["caught_by_full_suite"] >= 4  # the mutated copy ran
    assert data["recall"] == 1.0
    assert any(".env" in n and "ect.toml" in n for n in data["notes"])
    for r in data["results"]:
        sel, full = r["selection"], r["full"]
        assert full["ran"] == 5 and full["time_s"] > 0, r
        if sel["selected"]:  # a selection that ran tests ran what it selected
            assert sel["ran"] >= sel["selected"] and sel["exit_code"] in (0, 1), r
        if r["path"] == "src/calc/text.py":  # narrowed: the untracked ect.toml is no change
            assert 0 < sel["selected"] < full["selected"], r
        if r["path"] == "src/calc/core.py" and r["line"] == 2:  # test_add's id differs every run
            assert r["outcome"] == "caught" and any("test_add" in n for n in r["selection_failed"]), r
    assert any(r["path"] == "src/calc/core.py" and r["line"] == 2 for r in data["results"])
    assert data["time_fraction_mutants"] == len(data["results"])
    assert git(repo, "status", "--porcelain") == "?? ect.toml\n"
    assert git(repo, "worktree", "list").count("\n") == 1


@pytest.mark.slow
def test_an_errored_selection_run_is_no_catch(make_repo) -> None:
    files = dict(FP_SAMPLE)
    # stands in for an environment that breaks only the selection's run (it names tests)
    files["tests/conftest.py"] = """
        import pytest


        def pytest_configure(config):
            if "--" in config.invocation_params.args:
                raise pytest.UsageError("this environment cannot run named tests")
    """
    repo = make_repo(files)
    proc = run_ect(repo, "verify", "--mutants", "3", "--seed", "3", "--json", env=FAST, timeout=300)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    data = json.loads(proc.stdout)
    assert data["errors"] and data["caught_by_selection"] == 0
    assert all("cannot run named tests" in e["reason"] for e in data["errors"]), data["errors"]
    assert "not verified" in proc.stderr and "Traceback" not in proc.stderr
    errored = [r for r in data["results"] if r["outcome"] == "error"]
    assert errored and all(r["selection"]["ran"] == 0 and not r["caught_selection"] for r in errored)
    text = run_ect(repo, "verify", "--mutants", "1", "--seed", "3", env=FAST, timeout=300)
    assert text.returncode == 3 and "errored runs:               1" in text.stdout, text.stdout


def test_a_mutant_that_breaks_a_conftest_is_caught_not_a_crash(make_repo) -> None:
    # every mutant of the only source file breaks the conftest's import: pytest stops before any test,
    # with the exit status it gives a bad command line
    files = {
        "pyproject.toml": FP_SAMPLE["pyproject.toml"],
        "shop/__init__.py": "",
        "shop/rates.py": "RATE = 2\n",
        "tests/conftest.py": "from shop.rates import RATE\n\nassert RATE == 2\n",
        "tests/test_rate.py": "from shop.rates import RATE\n\n\ndef test_rate():\n    assert RATE > 0\n",
    }
    repo = make_repo(files)
    proc = run_ect(repo, "verify", "--mutants", "1", "--json", env=FAST, timeout=300)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    data = json.loads(proc.stdout)
    assert data["results"][0]["outcome"] == "caught", data
    assert proc.returncode == 0, proc.stdout + proc.stderr


def run_of(exit_code: int, outcomes: dict[str, str], output: str = "", collect: list[str] | None = None):
    run = runner.TestRun(exit_code, 1000.0, dict(outcomes), list(collect or []), output)
    run.durations = {n: 0.1 for n in outcomes}
    return run


def test_scoring_rules() -> None:
    passing = {"t.py::a", "t.py::b", "t.py::c"}
    full = run_of(1, {"t.py::a": "failed", "t.py::b": "passed", "t.py::c": "passed"})
    m = "src/m.py"

    def judge(sel, selected=2, full_run=full):
        return score(
            m,
            full_run,
            full_run.collect_errors,
            sel,
            sel.collect_errors if sel else [],
            selected,
            [],
            passing,
        )

    assert judge(run_of(1, {"t.py::a": "failed", "t.py::b": "passed"})).outcome == "caught"
    # failing some other test is no catch of this mutant
    assert judge(run_of(1, {"t.py::b": "failed", "t.py::c": "passed"})).outcome == "missed"
    assert judge(None, 0).outcome == "missed"
    usage = judge(run_of(4, {}, "ERROR: not found: t.py::a[x]\n"))
    assert usage.outcome == "error" and "not found: t.py::a[x]" in usage.error
    empty = judge(run_of(5, {}, "no tests ran"))
    assert empty.outcome == "error" and "none of its 2 tests" in empty.error
    assert judge(run_of(3, {"t.py::a": "failed"}, "INTERNALERROR> boom")).outcome == "error"
    # a module that no longer imports fails by its file in both runs
    broken = run_of(2, {}, "", ["t.py"])
    assert judge(run_of(2, {}, "", ["t.py"]), full_run=broken).outcome == "caught"
    # the full suite stopped on an error in the mutated file: caught only by the same error
    conftest = run_of(4, {}, f"ImportError while loading conftest\n{m}:3: in <module>\nE   NameError: x\n")
    assert judge(run_of(4, {}, conftest.output), full_run=conftest).outcome == "caught"
    assert judge(run_of(4, {}, "E   OSError: other\n"), full_run=conftest).outcome == "error"
    # ... or by the same error in both runs (the mutated file need not be in the traceback)
    elsewhere_tb = run_of(4, {}, "ImportError while loading conftest\nE   AttributeError: y\n")
    assert judge(run_of(4, {}, elsewhere_tb.output), full_run=elsewhere_tb).outcome == "caught"
    elsewhere = judge(run_of(0, {"t.py::a": "passed"}), full_run=run_of(4, {}, "E   OSError: disk\n"))
    assert elsewhere.outcome == "error" and elsewhere.error.startswith("full suite run errored")
    assert judge(run_of(0, {"t.py::a": "passed"}), full_run=run_of(0, {"t.py::a": "passed"})).outcome == (
        "survived"
    )


def test_count_selected_follows_the_plugin() -> None:
    suite = {"t.py::a[1]", "t.py::a[2]", "t.py::b", "t.py::C::d", "u/v.py::e"}
    assert count_selected(None, suite) == 5
    assert count_selected(["u"], suite) == 1 and count_selected(["t.py"], suite) == 4
    assert count_selected(["t.py::a[1]", "t.py::C"], suite) == 2
    assert count_selected(["t.py::a[gone]"], suite) == 2  # every parametrization of a
    assert count_selected(["t.py::zz"], suite) == 4  # the whole file
