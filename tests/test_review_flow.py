"""End to end: a bare central repository with the gate hook, two clones with their own
identities and SSH keys, real pushes and fetches, the real `ect` CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ect.review.testing import Scenario, make_scenario

SIGNED = 'require_signed = true\nallowed_signers = "allowed_signers"\n'
FEATURE = "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n"


def _ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def _feature(sc: Scenario, text: str = FEATURE) -> str:
    sc.git("alice", "checkout", "-q", "-b", "feature")
    sha = sc.commit("alice", {"pkg/core.py": text}, "add sub")
    _ok(sc.ect("alice", "review", "bot"))
    _ok(sc.ect("alice", "review", "push"))
    sc.git("alice", "push", "-q", "origin", "HEAD")
    return sha


def _approve(sc: Scenario, who: str, rev: str) -> None:
    """`who` checks out the change, runs the bot with their key (a check the server trusts: signed,
    and not by an author) and approves."""
    sc.git(who, "fetch", "-q", "origin")
    _ok(sc.ect(who, "review", "pull"))
    _ok(sc.ect(who, "review", "bot", rev, "--key", str(sc.keys[who])))
    _ok(sc.ect(who, "review", "approve", rev, "--key", str(sc.keys[who]), "-m", "lgtm", "--push"))


def _central(sc: Scenario, ref: str) -> str | None:
    proc = sc.git_proc(str(sc.central), "rev-parse", "--verify", "-q", ref)
    return proc.stdout.strip() or None


@pytest.fixture
def sc(tmp_path: Path) -> Scenario:
    return make_scenario(tmp_path, review=SIGNED)


def test_refused_then_granted_then_stale(sc: Scenario) -> None:
    c1 = _feature(sc)
    refused = sc.ect("alice", "promote", "HEAD", "--to", "staging")
    assert refused.returncode == 1
    assert "approvals: 0 of 1" in refused.stdout
    assert _central(sc, "refs/heads/staging") is None

    # the author cannot approve their own change
    own = sc.ect("alice", "review", "approve", "--key", str(sc.keys["alice"]))
    assert own.returncode == 1 and "cannot approve" in own.stderr

    _approve(sc, "bob", c1)
    # a new commit makes bob's approval stale
    c2 = sc.commit("alice", {"pkg/extra.py": "X = 1\n"}, "more")
    sc.git("alice", "push", "-q", "origin", "HEAD")
    _ok(sc.ect("alice", "review", "bot", "--no-tests"))
    stale = sc.ect("alice", "promote", c2, "--to", "staging")
    assert stale.returncode == 1
    assert "stale" in stale.stdout and "bob@example.com" in stale.stdout

    granted = sc.ect("alice", "promote", c1, "--to", "staging")
    assert granted.returncode == 0, granted.stdout + granted.stderr
    assert _central(sc, "refs/heads/staging") == c1
    assert sc.git("alice", "rev-parse", "staging") == c1

    # the next stage needs the previous one to hold the revision
    early = sc.ect("alice", "promote", c2, "--to", "production")
    assert early.returncode == 1 and "does not hold" in early.stdout
    _ok(sc.ect("alice", "promote", c1, "--to", "production"))
    assert _central(sc, "refs/heads/production") == c1

    shown = json.loads(_ok(sc.ect("alice", "review", "show", c1, "--json")))
    assert shown["gate"]["already"] is True
    kinds = [e["kind"] for e in _events(sc, "alice")]
    assert "promotion.refused" in kinds and "promotion.done" in kinds and "review.requested" in kinds
    done = [e for e in _events(sc, "alice") if e["kind"] == "promotion.done"]
    assert done[0]["stage"] == "staging" and done[0]["first_commit_ts"] > 0
    assert [e["kind"] for e in _events(sc, "bob")].count("review.approved") == 1


def _events(sc: Scenario, who: str) -> list[dict[str, object]]:
    from ect.events import query

    return query(sc.clones[who] / ".ect")


def test_wait_returns_when_approval_arrives(sc: Scenario) -> None:
    c1 = _feature(sc)
    waiter = subprocess.Popen(
        [sys.executable, "-m", "ect", "promote", c1, "--to", "staging", "--wait", "--timeout", "60"],
        cwd=sc.clones["alice"],
        env=sc.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(0.5)
        assert waiter.poll() is None, "promote --wait returned before the approval arrived"
        _approve(sc, "bob", c1)
        out, err = waiter.communicate(timeout=60)
    finally:
        if waiter.poll() is None:
            waiter.kill()
    assert waiter.returncode == 0, out + err
    assert "waiting for" in out and "approvals: 0 of 1" in out
    assert _central(sc, "refs/heads/staging") == c1


def test_wait_times_out(sc: Scenario) -> None:
    _feature(sc)
    proc = sc.ect("alice", "promote", "HEAD", "--to", "staging", "--wait", "--timeout", "3")
    assert proc.returncode == 1
    assert "waiting for" in proc.stdout and "refused" in proc.stdout


def test_pre_receive_rejects_direct_pushes(sc: Scenario) -> None:
    c1 = _feature(sc)
    direct = sc.git_proc("alice", "push", "origin", f"{c1}:refs/heads/staging")
    assert direct.returncode != 0
    assert "does not pass the 'staging' gate" in direct.stderr
    assert _central(sc, "refs/heads/staging") is None

    _approve(sc, "bob", c1)
    # bob cannot push production directly either: staging does not hold it yet
    sc.git("bob", "fetch", "-q", "origin")
    prod = sc.git_proc("bob", "push", "origin", f"{c1}:refs/heads/production")
    assert prod.returncode != 0 and "does not hold" in prod.stderr
    # with the approval in the central notes a plain push passes the hook
    ok = sc.git_proc("alice", "push", "origin", f"{c1}:refs/heads/staging")
    assert ok.returncode == 0, ok.stderr
    # review notes cannot be rewritten on the server
    sc.git("alice", "update-ref", "refs/notes/ect/approvals", sc.git("alice", "rev-parse", "HEAD"))
    forced = sc.git_proc("alice", "push", "-f", "origin", "refs/notes/ect/approvals")
    assert forced.returncode != 0 and "append-only" in forced.stderr
    gone = sc.git_proc("alice", "push", "origin", ":refs/heads/staging")
    assert gone.returncode != 0 and "cannot be deleted" in gone.stderr


def test_notes_from_two_clones_merge_without_loss(sc: Scenario) -> None:
    c1 = _feature(sc)
    sc.git("bob", "fetch", "-q", "origin")
    # both add records without pulling first: the second push has to merge
    _ok(sc.ect("alice", "review", "reject", c1, "-m", "self-check", "--key", str(sc.keys["alice"])))
    _ok(sc.ect("bob", "review", "approve", c1, "--key", str(sc.keys["bob"])))
    _ok(sc.ect("bob", "review", "push"))
    _ok(sc.ect("alice", "review", "push"))
    _ok(sc.ect("bob", "review", "pull"))
    for who in ("alice", "bob"):
        text = sc.git(who, "notes", "--ref=refs/notes/ect/approvals", "show", c1)
        kinds = sorted(json.loads(line)["by"] + ":" + json.loads(line)["type"] for line in text.splitlines())
        assert kinds == ["alice@example.com:rejection", "bob@example.com:approval"]
        reviews = sc.git(who, "notes", "--ref=refs/notes/ect/reviews", "show", c1)
        assert {json.loads(line)["type"] for line in reviews.splitlines()} == {"request", "check"}


def test_corrupt_and_unknown_version_records_are_reported_and_skipped(sc: Scenario) -> None:
    c1 = _feature(sc)
    _approve(sc, "bob", c1)
    _ok(sc.ect("alice", "review", "pull"))
    good = sc.git("alice", "notes", "--ref=refs/notes/ect/approvals", "show", c1)
    bad = good + "\n{not json\n" + json.dumps({"v": 99, "type": "approval", "commit": c1, "ts": 1, "by": "x"})
    sc.git("alice", "notes", "--ref=refs/notes/ect/approvals", "add", "-f", "-m", bad, c1)
    checked = sc.ect("alice", "review", "check")
    assert checked.returncode == 1
    assert "not JSON" in checked.stderr and "unknown schema version 99" in checked.stderr
    shown = json.loads(_ok(sc.ect("alice", "review", "show", c1, "--json")))
    assert len(shown["problems"]) == 2
    assert [d["by"] for d in shown["decisions"]] == ["bob@example.com"]
    # the valid approval still counts
    _ok(sc.ect("alice", "promote", c1, "--to", "staging"))


def test_trusted_checkers_require_a_signed_bot_verdict(tmp_path: Path) -> None:
    from ect.review import records
    from ect.review.gitcmd import Git
    from ect.review.store import Store

    review = SIGNED + 'trusted_checkers = ["ci@example.com"]\n'
    sc = make_scenario(tmp_path, people=("alice", "bob", "ci"), review=review)
    c1 = _feature(sc)
    _approve(sc, "bob", c1)
    # alice forges a passing verdict in ci's name
    alice = Git(sc.clones["alice"], env=sc.env)
    forged = records.make(
        "check",
        c1,
        time.time(),
        tree=alice.tree(c1),
        outcome="pass",
        checks="pass",
        tests_run=True,
        by="ci@example.com",
        sig="-----BEGIN SSH SIGNATURE-----\nAAAA\n",
    )
    Store(alice).append(forged)
    _ok(sc.ect("alice", "review", "push"))
    refused = sc.ect("alice", "promote", c1, "--to", "staging")
    assert refused.returncode == 1 and "no bot check signed by ci@example.com" in refused.stdout
    sc.git("ci", "fetch", "-q", "origin")
    _ok(sc.ect("ci", "review", "pull"))
    _ok(sc.ect("ci", "review", "bot", c1, "--key", str(sc.keys["ci"])))
    _ok(sc.ect("ci", "review", "push"))
    granted = sc.ect("alice", "promote", c1, "--to", "staging")
    assert granted.returncode == 0, granted.stdout + granted.stderr
