"""Settings, stages, CODEOWNERS and the bad-input paths of `ect review` / `ect promote`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from ect.review import codeowners
from ect.review.settings import parse
from ect.review.testing import Scenario, make_scenario

from ect.config import ConfigError
from ect.errors import EctError
from ect.hooks_server import check_server_hook, install_server_hook, uninstall_server_hook


def test_stage_settings() -> None:
    assert [s.name for s in parse({}).stages] == ["staging", "production"]
    listed = parse({"stages": ["qa", "prod"]})
    assert [(s.name, s.branch) for s in listed.stages] == [("qa", "qa"), ("prod", "prod")]
    tables = parse(
        {
            "stages": {
                "staging": {},
                "production": {"branch": "live", "bake_minutes": 30, "required_approvals": 2},
            }
        }
    )
    assert tables.stages[1].branch == "live" and tables.stages[1].bake_minutes == 30
    assert tables.stage("live")[0] == 1
    with pytest.raises(ConfigError, match="unknown stage 'nope'"):
        tables.stage("nope")


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"review": {"required_aprovals": 1}}, "unknown key 'review.required_aprovals'"),
        ({"review": {"required_approvals": "1"}}, "'review.required_approvals' must be int"),
        ({"review": {"prfaq": "loud"}}, "'review.prfaq' must be one of"),
        ({"stages": {"production": {"bake": 1}}}, "unknown key 'stages.production.bake'"),
        ({"stages": 3}, "'stages' must be"),
        ({"stages": {"a": {"branch": "x"}, "b": {"branch": "x"}}}, "same branch"),
    ],
)
def test_bad_settings_are_one_line_errors(sections: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse(sections)


def test_codeowners_last_match_wins() -> None:
    rules = codeowners.parse(
        "# owners\n*       @everyone\n/docs/ docs@example.com\nsrc/**/*.py @alice @bob  # python\n"
        "src/vendor/ @carol\n"
    )
    assert codeowners.owners_of(rules, "README.md") == ("@everyone",)
    assert codeowners.owners_of(rules, "docs/index.md") == ("docs@example.com",)
    assert codeowners.owners_of(rules, "src/pkg/mod.py") == ("@alice", "@bob")
    assert codeowners.owners_of(rules, "src/vendor/x.py") == ("@carol",)
    users = {"alice": ["alice@example.com"], "dana": ["dana@corp.example"]}
    # handles match only the identities `review.users` maps them to, exactly
    assert codeowners.matches("@alice", "alice@example.com", None, users)
    assert not codeowners.matches("@alice", "alice@evil.example", None, users)
    assert not codeowners.matches("@alice", "alice@example.com")  # unmapped: nobody
    assert codeowners.matches("docs@example.com", "docs@EXAMPLE.com")  # the domain has no case
    assert not codeowners.matches("docs@example.com", "DOCS@example.com")  # the local part has
    assert not codeowners.matches("@alice", "bob@example.com", None, users)
    assert not codeowners.matches("@org/team", "team@example.com")
    teams = {"@org/team": ["@dana", "eve@example.com"]}
    assert codeowners.matches("@org/team", "dana@corp.example", teams, users)
    assert not codeowners.matches("@org/team", "dana@example.com", teams, users)
    assert codeowners.matches("@org/team", "eve@example.com", teams)
    assert not codeowners.matches("@org/team", "bob@example.com", teams)


def test_codeowners_gate(tmp_path: Path) -> None:
    sc = make_scenario(
        tmp_path,
        people=("alice", "bob", "carol"),
        review='[tool.ect.review.users]\nbob = ["bob@example.com"]\ncarol = ["carol@example.com"]\n',
        extra_files={"CODEOWNERS": "* @bob @carol\npkg/core.py @carol\n"},
        hook=False,  # the local gate, unsigned: the server gate is covered by test_review_attacks
    )
    sc.git("alice", "checkout", "-q", "-b", "feature")
    sha = sc.commit("alice", {"pkg/core.py": "def add(a, b):\n    return b + a\n"}, "swap")
    sc.git("alice", "push", "-q", "origin", "HEAD")
    assert sc.ect("alice", "review", "bot").returncode == 0
    assert sc.ect("alice", "review", "push").returncode == 0
    for who in ("bob", "carol"):
        sc.git(who, "fetch", "-q", "origin")
    assert sc.ect("bob", "review", "approve", sha, "--push").returncode == 0
    refused = sc.ect("alice", "promote", sha, "--to", "staging")
    assert refused.returncode == 1
    assert "CODEOWNERS: pkg/core.py needs approval from @carol" in refused.stdout
    assert sc.ect("carol", "review", "approve", sha, "--push").returncode == 0
    granted = sc.ect("alice", "promote", sha, "--to", "staging")
    assert granted.returncode == 0, granted.stdout + granted.stderr


@pytest.fixture(scope="module")
def solo(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    return make_scenario(tmp_path_factory.mktemp("solo"), people=("alice",), hook=False)


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["promote", "HEAD", "--to", "qa"], 2, "unknown stage 'qa'"),
        (["promote", "nosuchrev", "--to", "staging"], 2, "unknown revision: nosuchrev"),
        (["promote", "HEAD", "--to", "staging", "--timeout", "-1"], 2, "--timeout must be >= 0"),
        (["review", "approve", "nosuchrev"], 2, "unknown revision"),
        (["review", "push", "nowhere"], 2, "no git remote named 'nowhere'"),
        (["review", "show", "--stage", "qa"], 2, "unknown stage 'qa'"),
    ],
)
def test_bad_input_is_a_one_line_error(solo: Scenario, args: list[str], code: int, message: str) -> None:
    proc = solo.ect("alice", *args)
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0


def test_bad_config_and_not_a_repo(solo: Scenario, tmp_path: Path) -> None:
    root = solo.clones["alice"]
    pyproject = root / "pyproject.toml"
    saved = pyproject.read_text()
    try:
        pyproject.write_text(saved + "max_inlin = 3\n")
        proc = solo.ect("alice", "review", "show")
        assert proc.returncode == 2 and "unknown key 'review.max_inlin'" in proc.stderr
    finally:
        pyproject.write_text(saved)
    outside = subprocess.run(
        [sys.executable, "-m", "ect", "review", "show"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=solo.env,
        check=False,
    )
    assert outside.returncode == 2 and "not a git repository" in outside.stderr


def test_server_hook_install(tmp_path: Path, solo: Scenario) -> None:
    bare = tmp_path / "c.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    assert check_server_hook(bare) is not None
    hook = install_server_hook(bare)
    assert check_server_hook(bare) is None and "ect.review.pre_receive" in hook.read_text()
    assert install_server_hook(bare) == hook  # idempotent
    with pytest.raises(EctError, match="not a bare repository"):
        install_server_hook(solo.clones["alice"])
    with pytest.raises(EctError, match="not a git repository"):
        install_server_hook(tmp_path / "missing")
    assert uninstall_server_hook(bare) and not hook.exists()
    hook.write_text("#!/bin/sh\nexit 0\n")
    with pytest.raises(EctError, match="not installed by ect"):
        install_server_hook(bare)
    install_server_hook(bare, force=True)
    assert check_server_hook(bare) is None
    # through the CLI
    other = tmp_path / "d.git"
    subprocess.run(["git", "init", "-q", "--bare", str(other)], check=True)
    proc = subprocess.run(
        [sys.executable, "-m", "ect", "hooks", "install", "--server", str(other)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert check_server_hook(other) is None


STAGES = """
[tool.ect.stages.staging]
[tool.ect.stages.production]
branch = "live"
bake_minutes = 60
required_approvals = 1
"""


def test_later_stage_bake_time_and_own_approvals(tmp_path: Path) -> None:
    import time

    from ect.review.gate import evaluate
    from ect.review.gitcmd import Git
    from ect.review.policy import from_worktree
    from ect.review.store import Store

    from ect.config import load_config

    sc = make_scenario(tmp_path, review="", extra_files={}, hook=False)
    pyproject = sc.clones["alice"] / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace("[tool.ect.review]", STAGES + "\n[tool.ect.review]"))
    sc.git("alice", "commit", "-qam", "stages")
    sc.git("alice", "push", "-q", "origin", "main")
    sc.git("alice", "checkout", "-q", "-b", "feature")
    sha = sc.commit("alice", {"pkg/extra.py": "X = 1\n"}, "x")
    sc.git("alice", "push", "-q", "origin", "HEAD")
    assert sc.ect("alice", "review", "bot").returncode == 0
    assert sc.ect("alice", "review", "push").returncode == 0
    sc.git("bob", "fetch", "-q", "origin")
    assert sc.ect("bob", "review", "approve", sha, "--push").returncode == 0
    assert sc.ect("alice", "promote", sha, "--to", "staging").returncode == 0
    refused = sc.ect("alice", "promote", sha, "--to", "production")
    assert refused.returncode == 1
    assert "bake time: 0.0 of 60 min on 'staging'" in refused.stdout
    assert "approvals: 0 of 1" in refused.stdout  # the review approval does not count for production
    assert sc.ect("bob", "review", "approve", sha, "--stage", "production", "--push").returncode == 0
    assert sc.ect("alice", "review", "pull").returncode == 0
    root = sc.clones["alice"]
    git = Git(root, env=sc.env)
    policy = from_worktree(git, root, load_config(root))

    def tip(branch: str) -> str | None:
        return git.maybe_rev(f"refs/remotes/origin/{branch}")

    later = evaluate(git, Store(git), policy, sha, "production", tip, now=time.time() + 3601)
    assert later.ok, later.unmet


def test_promote_without_a_remote_moves_the_local_branch(tmp_path: Path) -> None:
    from ect.review.testing import CORE, PYPROJECT, TEST, isolated_env

    env = isolated_env(tmp_path / "home")
    repo = tmp_path / "repo"

    def run(*args: str, email: str = "alice@example.com") -> subprocess.CompletedProcess[str]:
        full = {**env, "GIT_AUTHOR_EMAIL": email, "GIT_COMMITTER_EMAIL": email}
        return subprocess.run(list(args), cwd=repo, env=full, capture_output=True, text=True, check=False)

    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True, env=env)
    for rel, text in {
        "pyproject.toml": PYPROJECT.format(review=""),
        "pkg/__init__.py": "",
        "pkg/core.py": CORE,
        "tests/test_core.py": TEST,
        ".gitignore": ".ect/\n",
    }.items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(text)
    run("git", "config", "user.email", "alice@example.com")
    run("git", "config", "user.name", "Alice")
    run("git", "add", "-A")
    run("git", "commit", "-qm", "init")
    run("git", "branch", "staging")
    run("git", "checkout", "-qb", "feature")
    (repo / "pkg/core.py").write_text(CORE + "\n\ndef mul(a, b):\n    return a * b\n")
    run("git", "commit", "-qam", "mul")
    assert run(sys.executable, "-m", "ect", "review", "bot").returncode == 0
    refused = run(sys.executable, "-m", "ect", "promote", "HEAD", "--to", "staging")
    assert refused.returncode == 1 and "approvals: 0 of 1" in refused.stdout
    run("git", "config", "user.email", "bob@example.com")
    assert run(sys.executable, "-m", "ect", "review", "approve", "-m", "ok").returncode == 0
    granted = run(sys.executable, "-m", "ect", "promote", "HEAD", "--to", "staging")
    assert granted.returncode == 0, granted.stdout + granted.stderr
    assert run("git", "rev-parse", "staging").stdout == run("git", "rev-parse", "HEAD").stdout
