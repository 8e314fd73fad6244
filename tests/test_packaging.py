"""The built wheel installs one top-level import package, `ect`, and a team's own top-level `models`
and `review` packages keep working next to it (their tests, `ect fix`, `ect lsp` completion)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import tomllib
from ect_testutil import GIT_ENV, git, run_ect

ROOT = Path(__file__).resolve().parent.parent

TEAM = {
    "pyproject.toml": """
        [project]
        name = "team"
        version = "0.1.0"
        [tool.pytest.ini_options]
        testpaths = ["tests"]
        pythonpath = ["."]
    """,
    "models/__init__.py": 'OWNER = "team"\n',
    "models/layers.py": """
        def dense(x):
            return x * 2
    """,
    "review/__init__.py": """
        def score(x):
            return x + 1
    """,
    "app/__init__.py": "",
    "app/pipeline.py": """
        from models import layers


        def run(x):
            return layers.dense(x)
    """,
    "tests/test_team.py": """
        import models
        import review
        from app.pipeline import run


        def test_own_packages():
            assert models.OWNER == "team"
            assert review.score(1) == 2


        def test_run():
            assert run(3) == 6
    """,
}


def _configured_packages() -> set[str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return set(data["tool"]["setuptools"]["packages"])


def test_every_package_in_the_tree_is_configured() -> None:
    dirs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    found = {"ect._hooks"}
    for folder, package in [("ect", "ect"), *((d, p) for p, d in dirs.items() if p != "ect._hooks")]:
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((package, *rel)))
    assert found == _configured_packages()


@pytest.fixture(scope="module")
def wheel_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from this checkout's files, installed (no dependencies) into its own folder."""
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for rel in filter(None, listed.split("\0")):
        if (ROOT / rel).is_file() and not rel.startswith(("tests/", "scripts/")):
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, src / rel)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(base / "dist"), str(src)], check=True, timeout=600)
    [wheel] = (base / "dist").glob("ect_loop-*.whl")
    site = base / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True, timeout=300)
    return site


def _env(site: Path) -> dict[str, str]:
    # The wheel's folder comes first on sys.path, ahead of this checkout's editable install.
    return {"PYTHONPATH": str(site)}


def test_wheel_has_one_top_level_package(wheel_site: Path) -> None:
    [info] = wheel_site.glob("ect_loop-*.dist-info")
    assert (info / "top_level.txt").read_text().split() == ["ect"]
    [wheel] = wheel_site.parent.glob("dist/ect_loop-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        tops = {name.split("/")[0] for name in zf.namelist()}
    assert tops == {"ect", info.name}, tops
    assert (wheel_site / "ect/_hooks/pre-commit").is_file()
    assert (wheel_site / "ect/models/default_base/model.safetensors").is_file()
    assert not (wheel_site / "models").exists() and not (wheel_site / "review").exists()


@pytest.fixture
def team_repo(make_repo) -> Path:
    return make_repo(TEAM)


def test_team_packages_and_ect_side_by_side(wheel_site: Path, team_repo: Path) -> None:
    code = (
        "import models, review, ect.models.index as i, ect.review.gate as g\n"
        "print(models.__file__, i.__file__, g.__file__)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=team_repo,
        capture_output=True,
        text=True,
        env={**os.environ, **_env(wheel_site)},
        check=True,
    )
    theirs, index, gate = proc.stdout.split()
    assert Path(theirs).is_relative_to(team_repo)
    assert Path(index).is_relative_to(wheel_site) and Path(gate).is_relative_to(wheel_site)

    check = run_ect(team_repo, "check", "--all", env=_env(wheel_site))
    assert check.returncode == 0, check.stdout + check.stderr
    assert "2 passed" in check.stdout, check.stdout


def test_fix_on_a_team_models_package(wheel_site: Path, team_repo: Path) -> None:
    broken = "from models import layers\n\n\ndef run(x):\n    return layers.dnese(x)\n"
    (team_repo / "app/pipeline.py").write_text(broken)
    proc = run_ect(team_repo, "fix", "--json", env=_env(wheel_site))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [result] = json.loads(proc.stdout)["results"]
    assert result["fixes"] and result["fixes"][0]["title"] == "Change `.dnese` to `.dense`", result


def test_lsp_completes_from_the_team_models_package(wheel_site: Path, team_repo: Path) -> None:
    pytest_lsp = pytest.importorskip("pytest_lsp")
    from lsprotocol import types as t

    async def complete() -> list[str]:
        client = pytest_lsp.make_test_lsp_client()
        env = {**os.environ, **GIT_ENV, **_env(wheel_site)}
        await client.start_io(sys.executable, "-m", "ect", "lsp", cwd=str(team_repo), env=env)
        try:
            await client.initialize_session(
                t.InitializeParams(
                    capabilities=pytest_lsp.client_capabilities("neovim"), root_uri=team_repo.as_uri()
                )
            )
            path = team_repo / "app/pipeline.py"
            text = path.read_text() + "\nlayers.\n"
            uri = path.as_uri()
            client.text_document_did_open(
                t.DidOpenTextDocumentParams(t.TextDocumentItem(uri, "python", 1, text))
            )
            deadline = time.monotonic() + 60
            while True:  # the index is built in the background after initialize
                result = await client.text_document_completion_async(
                    t.CompletionParams(t.TextDocumentIdentifier(uri), t.Position(text.count("\n") - 1, 7))
                )
                items = result.items if isinstance(result, t.CompletionList) else (result or [])
                if items or time.monotonic() > deadline:
                    return [i.label for i in items]
                await asyncio.sleep(0.2)
        finally:
            await client.shutdown_session()

    assert "dense" in asyncio.run(complete())


def test_checkout_layout_is_kept() -> None:
    # review/ and models/ stay top-level folders of the repository; only the installed names change.
    assert (ROOT / "review/__init__.py").is_file() and (ROOT / "models/__init__.py").is_file()
    assert git(ROOT, "ls-files", "ect/review", "ect/models") == ""
