"""The server gate against an attacker with push access: a real central bare repository with the
ect hooks, real SSH keys for four people (alice, bob, carol, mallory), real pushes.

The fast set pushes a few variants of every class of hole through the real hooks (first
promotion, forged approvals and checks, identity, carry-over, standing rejections, notes
rewrites, branch protection and shadowing, the policy's own gate, malformed records) plus
honest controls; the pure parts (bounded parsing, identities, shadowing) are checked
in-process with many variants. The whole catalogue (review/redteam.py) runs as a slow test
and in scripts/bench_gate.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from ect.review import codeowners, records
from ect.review.gitcmd import Git
from ect.review.pre_receive import _shadows, judge, pusher_identities
from ect.review.redteam import CATALOGUE, Lab, Outcome, make_lab, run_catalogue, summary
from ect.review.settings import parse
from ect.review.testing import isolated_env

FAST = (
    "first promotion with main moved",  # runs before any stage branch exists
    "honest: signed check",
    "approval in bob's name signed with mallory's key",
    "self-approval with --author set to alice",
    "the pusher (GitLab user name",
    "bob's approval carried over a re-indent",
    "carol's check over an empty range",
    "a rejection dropped by adding a new commit",
    "notes fast-forward that deletes",
    "stage branch force-pushed back",
    "policy ref change approved by mallory only",
    "malformed record (deep nesting)",
    "honest: production after the bake time",
)


@pytest.fixture(scope="module")
def fast(tmp_path_factory: pytest.TempPathFactory) -> tuple[Lab, list[Outcome]]:
    lab = make_lab(tmp_path_factory.mktemp("attacks"))
    return lab, run_catalogue(lab, lambda name: any(name.startswith(p) for p in FAST))


def _by_kind(outcomes: list[Outcome], kind: str) -> list[Outcome]:
    return [o for o in outcomes if o.kind == kind]


def test_the_fast_set_covers_every_class(fast: tuple[Lab, list[Outcome]]) -> None:
    _, outcomes = fast
    assert len(outcomes) == len(FAST)
    assert {o.kind for o in outcomes} == {"control", "forged", "bypass", "crash"}


def test_honest_work_still_passes(fast: tuple[Lab, list[Outcome]]) -> None:
    _, outcomes = fast
    controls = _by_kind(outcomes, "control")
    assert len(controls) == 2
    assert [o.name for o in controls if not o.accepted or o.error] == []


@pytest.mark.parametrize("kind", ["forged", "bypass", "crash"])
def test_no_attack_is_accepted(fast: tuple[Lab, list[Outcome]], kind: str) -> None:
    _, outcomes = fast
    attacks = _by_kind(outcomes, kind)
    assert len(attacks) >= (1 if kind == "crash" else 2)  # crash: many more variants in-process below
    assert [(o.name, o.error) for o in attacks if o.accepted or o.error] == []


def test_the_gate_never_crashed(fast: tuple[Lab, list[Outcome]]) -> None:
    lab, outcomes = fast
    assert lab.crashes == []
    assert summary(outcomes)["crashes"] == 0


def test_server_log_records_receive_times(fast: tuple[Lab, list[Outcome]]) -> None:
    lab, _ = fast
    log = lab.central.out(
        "notes", f"--ref={records.SERVER_LOG}", "show", lab.central.rev("refs/heads/staging")
    )
    entries = [records.loads(line) for line in log.splitlines()]
    assert {(e["type"], e["stage"]) for e in entries} >= {("received", "staging")}


def test_rejections_name_the_rule(fast: tuple[Lab, list[Outcome]]) -> None:
    lab, _ = fast
    tip = lab.central.rev("refs/heads/staging")
    old = lab.central.rev(f"{tip}~1")
    pushed = lab.push(f"+{old}:refs/heads/staging", force=True)
    assert not pushed.ok and "only move forward" in pushed.stderr
    pushed = lab.push(f"{tip}:refs/tags/live")
    assert not pushed.ok and "would shadow the stage 'production'" in pushed.stderr
    pushed = lab.push(f"{tip}:refs/ect/policy")
    assert not pushed.ok and "refs/ect/policy" in pushed.stderr


def test_a_verified_signature_does_not_vouch_for_an_edited_copy(fast: tuple[Lab, list[Outcome]]) -> None:
    from ect.review.gate import Trust
    from ect.review.policy import from_server

    lab, _ = fast
    sha = lab.central.rev("refs/heads/staging")
    honest = lab.record("approval", sha, "bob", message="lgtm")
    trust = Trust(from_server(lab.central))
    assert trust.key_of(records.Record(honest, sha))  # verified (and cached) first
    for edit in (
        {"message": "lgtm, ship the next one too"},
        {"by": "carol@example.com"},
        {"stage": "production"},
    ):
        assert trust.key_of(records.Record({**honest, **edit}, sha)) is None, edit


def test_notes_refs_must_be_commits(fast: tuple[Lab, list[Outcome]]) -> None:
    lab, _ = fast
    blob = lab.git.out("hash-object", "-w", "--stdin", input=b"x\n").strip()
    pushed = lab.push(f"{blob}:refs/notes/ect/requests")
    assert not pushed.ok and "must point to a commit" in pushed.stderr


@pytest.mark.slow
def test_the_whole_catalogue(tmp_path: Path) -> None:
    lab = make_lab(tmp_path)
    outcomes = run_catalogue(lab)
    result = summary(outcomes)
    assert result["attacks"] == len(CATALOGUE) - result["controls"] >= 50
    assert (result["forged_accepted"], result["bypasses_accepted"], result["crashes"]) == (0, 0, 0), [
        (o.name, o.error) for o in outcomes if o.kind != "control" and (o.accepted or o.error)
    ]
    assert result["controls_failed"] == 0


# ---- in-process: fail closed without a protected policy ------------------------------------


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> tuple[Git, str]:
    root = tmp_path_factory.mktemp("bare")
    env = isolated_env(root / "home")
    work = root / "work"

    def run(*args: str, cwd: Path = work) -> str:
        return subprocess.run(
            ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
        ).stdout

    work.mkdir()
    run("init", "-q", "-b", "main")
    (work / "pyproject.toml").write_text("[tool.ect.review]\nrequire_signed = false\n")
    run("add", "-A")
    run("-c", "user.email=a@example.com", "-c", "user.name=A", "commit", "-qm", "init")
    run("clone", "-q", "--bare", str(work), str(root / "central.git"), cwd=root)
    git = Git(root / "central.git", env=env)
    return git, git.rev("main")


def test_no_policy_ref_refuses_every_push(bare: tuple[Git, str]) -> None:
    git, sha = bare
    errors = judge(git, [("0" * 40, sha, "refs/heads/staging")], {})
    assert len(errors) == 1 and "no protected policy" in errors[0]


def test_missing_policy_commit_or_signers_refuses(bare: tuple[Git, str]) -> None:
    git, sha = bare
    git.run("config", "ect.policyRef", "refs/ect/policy")
    try:
        assert "does not exist" in judge(git, [("0" * 40, sha, "refs/heads/x")], {})[0]
        git.run("update-ref", "refs/ect/policy", sha)
        # the policy turns signing off and names no signers: nothing can be trusted
        assert "no allowed signers" in judge(git, [("0" * 40, sha, "refs/heads/staging")], {})[0]
        git.run("config", "ect.policyRef", "refs/heads/main")
        assert "must be under refs/ect/" in judge(git, [("0" * 40, sha, "refs/heads/staging")], {})[0]
    finally:
        git.run("config", "--unset", "ect.policyRef", check=False)
        git.run("update-ref", "-d", "refs/ect/policy", check=False)


# ---- in-process: bounded parsing, identities, shadowing ---------------------------------

SHA = "a" * 40
BAD_LINES = [
    '{"v":1,"type":"approval","commit":"%s","ts":1e400,"by":"b"}',
    '{"v":1,"type":"approval","commit":"%s","ts":' + "9" * 400 + ',"by":"b"}',
    '{"v":1,"type":"approval","commit":"%s","ts":-5,"by":"b"}',
    '{"v":1,"type":"approval","commit":"%s","ts":true,"by":"b"}',
    '{"v":1,"type":"approval","commit":"%s","ts":Infinity,"by":"b"}',
    '{"v":1,"type":"approval","commit":"%s","ts":1,"by":"b","x":' + "[" * 3000 + "]" * 3000 + "}",
    '{"v":1,"type":"approval","commit":"%s","ts":1,"by":"b","x":' + '{"a":' * 50 + "1" + "}" * 50 + "}",
    '{"v":1,"type":"approval","commit":"%s","ts":1,"by":["b"]}',
    '{"v":1,"type":"approval","commit":"%s","ts":1,"by":"' + "b" * 20000 + '"}',
    '{"v":1,"type":"check","commit":"%s","ts":1,"tree":{},"outcome":"pass"}',
    '{"v":1,"type":"received","commit":"%s","ts":1,"stage":"staging","ref":"r"}',
    "[" * 100000,
    "\udcff not json",
]


@pytest.mark.parametrize("line", BAD_LINES, ids=range(len(BAD_LINES)))
def test_malformed_records_are_skipped_with_a_warning(line: str) -> None:
    good = records.dumps(records.make("approval", SHA, 5.0, by="bob@example.com"))
    found, problems = records.parse_note(f"{line.replace('%s', SHA)}\n{good}\n", SHA, "approvals")
    assert [r.get("by") for r in found] == ["bob@example.com"]
    assert len(problems) == 1 and "skipped" in problems[0]


def test_codeowners_and_roles_match_exact_identities() -> None:
    users = {"bob": ["bob@example.com"]}
    assert codeowners.matches("@bob", "bob@example.com", None, users)
    for impostor in (
        "bob@evil.example",
        "Bob@example.com",
        "bob+x@example.com",
        "bob",
        "bob@example.com.evil",
    ):
        assert not codeowners.matches("@bob", impostor, None, users), impostor
    assert not codeowners.matches("@bob", "bob@example.com")  # an unmapped handle matches nobody


def test_pusher_identities_from_the_front_end() -> None:
    settings = parse({"review": {"users": {"mallory": ["mallory@example.com"]}}})
    assert pusher_identities(settings, {"GL_USERNAME": "mallory"}) == {"mallory", "mallory@example.com"}
    assert pusher_identities(settings, {"REMOTE_USER": "x@example.com"}) == {"x@example.com"}
    assert pusher_identities(settings, {}) == frozenset()


@pytest.mark.parametrize(
    ("ref", "shadowed"),
    [
        ("refs/tags/staging", "staging"),
        ("refs/tags/live", "production"),
        ("refs/heads/production", "production"),
        ("refs/staging", "staging"),
        ("refs/remotes/origin/live", "production"),
        ("refs/heads/staging", None),
        ("refs/heads/live", None),
        ("refs/heads/feature/staging-fix", None),
    ],
)
def test_stage_names_are_reserved(ref: str, shadowed: str | None) -> None:
    settings = parse({"stages": {"staging": {}, "production": {"branch": "live"}}})
    assert _shadows(ref, settings) == shadowed
