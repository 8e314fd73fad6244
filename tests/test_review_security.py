"""Forged approvals never count: unsigned, wrong key, self-approval, an older commit,
hand-edited or moved notes. Real repositories, real SSH keys and signatures."""

from __future__ import annotations

from pathlib import Path

import pytest
from ect.review import records
from ect.review.approvals import make_decision
from ect.review.bot import run_bot
from ect.review.diff import base_for, compute
from ect.review.gate import GateResult, evaluate
from ect.review.gitcmd import Git
from ect.review.policy import from_worktree
from ect.review.store import Store
from ect.review.testing import Scenario, keygen, make_scenario

from ect.config import load_config

SIGNED = 'require_signed = true\nallowed_signers = "allowed_signers"\n'


@pytest.fixture(scope="module")
def sc(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    sc = make_scenario(tmp_path_factory.mktemp("sec"), ("alice", "bob", "carol"), review=SIGNED, hook=False)
    sc.git("alice", "checkout", "-q", "-b", "feature")
    sc.commit("alice", {"pkg/core.py": "def add(a, b):\n    return a + b\n\n\nTWO = 2\n"}, "two")
    # carol (not an author) runs the bot on alice's change and signs its verdict
    sc.git("carol", "fetch", "-q", str(sc.clones["alice"]), "+refs/heads/*:refs/remotes/alice/*")
    root = sc.clones["carol"]
    cfg = load_config(root)
    report = run_bot(root, cfg, from_worktree(Git(root), root, cfg), "alice/feature", key=sc.keys["carol"])
    assert report.check is not None and report.check.outcome == "pass"
    sc.git("alice", "fetch", "-q", str(root), "refs/notes/ect/*:refs/notes/ect/*")
    return sc


def _gate(sc: Scenario, rev: str = "HEAD") -> GateResult:
    root = sc.clones["alice"]
    git = Git(root, env=sc.env)
    policy = from_worktree(git, root, load_config(root))
    return evaluate(git, Store(git), policy, rev, "staging", lambda b: git.maybe_rev(f"refs/heads/{b}"))


def _decision(sc: Scenario, who: str, key: Path | None, rev: str = "HEAD") -> dict[str, object]:
    """A record made by `who` (git identity of their clone) about alice's `rev`."""
    alice = Git(sc.clones["alice"], env=sc.env)
    head = alice.rev(rev)
    settings = from_worktree(alice, sc.clones["alice"], load_config(sc.clones["alice"])).settings
    change = compute(alice, base_for(alice, settings, head), head)
    if who != "alice":
        sc.git(who, "fetch", "-q", str(sc.clones["alice"]), "+refs/heads/*:refs/remotes/alice/*")
    reviewer = Git(sc.clones[who], env=sc.env)
    if who == "alice":
        change.authors = set()  # a hand-made self-approval: bypass the CLI's own refusal
    return make_decision(reviewer, change, "approval", "lgtm", None, key)


def _with_record(sc: Scenario, data: dict[str, object], commit: str | None = None) -> GateResult:
    """Evaluate the gate with exactly one extra approval line attached to `commit`."""
    git = Git(sc.clones["alice"], env=sc.env)
    ref = "refs/notes/ect/approvals"
    git.run("update-ref", "-d", ref)
    target = commit or str(data["commit"])
    blob = git.out("hash-object", "-w", "--stdin", input=(records.dumps(data) + "\n").encode()).strip()
    git.run("notes", f"--ref={ref}", "add", "-f", "-C", blob, target)
    return _gate(sc)


def _accepted(result: GateResult) -> int:
    return sum(1 for d in result.decisions if d.counts)


def test_valid_signed_approval_opens_the_gate(sc: Scenario) -> None:
    result = _with_record(sc, _decision(sc, "bob", sc.keys["bob"]))
    assert result.ok, result.unmet
    assert _accepted(result) == 1


def test_unsigned_approval_is_not_counted(sc: Scenario) -> None:
    result = _with_record(sc, _decision(sc, "bob", None))
    assert not result.ok and _accepted(result) == 0
    assert result.decisions[0].state == "unsigned"


def test_wrong_key_is_not_counted(sc: Scenario, tmp_path: Path) -> None:
    mallory = keygen(tmp_path / "mallory", "mallory")
    result = _with_record(sc, _decision(sc, "bob", mallory))
    assert not result.ok and _accepted(result) == 0
    assert result.decisions[0].state == "bad-signature"
    # alice's key used to sign an approval that claims to be bob's
    result = _with_record(sc, _decision(sc, "bob", sc.keys["alice"]))
    assert _accepted(result) == 0 and result.decisions[0].state == "bad-signature"


def test_self_approval_is_not_counted(sc: Scenario) -> None:
    data = _decision(sc, "alice", sc.keys["alice"])
    result = _with_record(sc, data)
    assert _accepted(result) == 0 and result.decisions[0].state == "self"


def test_approval_of_an_older_commit_is_stale(sc: Scenario) -> None:
    old = _decision(sc, "bob", sc.keys["bob"])
    sc.commit("alice", {"pkg/more.py": "Y = 1\n"}, "another commit")
    try:
        result = _with_record(sc, old)
        assert _accepted(result) == 0 and result.decisions[0].state == "stale"
        assert any("stale" in item for item in result.unmet)
    finally:
        sc.git("alice", "reset", "-q", "--hard", "HEAD~1")


def test_identical_diff_keeps_the_approval(sc: Scenario) -> None:
    """An amend that leaves the diff against the base unchanged (message only) keeps it valid."""
    approval = _decision(sc, "bob", sc.keys["bob"])
    before = sc.git("alice", "rev-parse", "HEAD")
    sc.git("alice", "commit", "-q", "--amend", "-m", "two (reworded)")
    try:
        root = sc.clones["alice"]
        cfg = load_config(root)
        run_bot(root, cfg, from_worktree(Git(root), root, cfg), None, run_tests=True)
        result = _with_record(sc, approval)
        assert result.ok, result.unmet
        assert result.decisions[0].state == "carried"
    finally:
        sc.git("alice", "reset", "-q", "--hard", before)


def test_hand_edited_notes_are_not_counted(sc: Scenario) -> None:
    genuine = _decision(sc, "bob", sc.keys["bob"])
    assert _accepted(_with_record(sc, dict(genuine, message="edited after signing"))) == 0
    assert _accepted(_with_record(sc, dict(genuine, by="carol@example.com"))) == 0
    # bob's approval of the current head, re-pointed by hand at a newer commit
    newer = sc.commit("alice", {"pkg/more.py": "Y = 1\n"}, "sneaky")
    try:
        moved = _with_record(sc, dict(genuine, commit=newer))
        assert _accepted(moved) == 0 and moved.decisions[0].state == "bad-signature"
    finally:
        sc.git("alice", "reset", "-q", "--hard", "HEAD~1")
    # a genuine record attached to another commit than the one it names is skipped and reported
    git = Git(sc.clones["alice"], env=sc.env)
    _with_record(sc, genuine, commit=sc.git("alice", "rev-parse", "HEAD~1"))
    store = Store(git)
    assert store.records("approvals") == []
    assert any("attached elsewhere" in p for p in store.problems)


def test_rejection_blocks_until_the_reviewer_approves(sc: Scenario) -> None:
    git = Git(sc.clones["alice"], env=sc.env)
    approve = _decision(sc, "bob", sc.keys["bob"])
    reject = dict(approve, type="rejection", ts=float(str(approve["ts"])) + 5, message="no")
    from ect.review import signing

    reject["sig"] = signing.sign(records.signed_payload(reject), sc.keys["bob"])
    ref = "refs/notes/ect/approvals"
    git.run("update-ref", "-d", ref)
    store = Store(git)
    store.append(approve)
    store.append(reject)
    result = _gate(sc)
    assert not result.ok and any("rejected by bob@example.com: no" in u for u in result.unmet)
