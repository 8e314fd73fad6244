"""An adversarial test bench for the server gate: a real central bare repository with the hooks,
four people with their own SSH keys (alice writes code, bob reviews, carol is the trusted
checker and maintainer, mallory has push access, a key of her own and bad intentions), and
attacks that try to get a stage branch moved without an honest review.

Every attack works through real `git push`es to the central repository (the real hooks judge
them); records are real `ssh-keygen` signatures. An attack is *accepted* when the server lets
the forbidden thing through; a *crash* is any `ect gate error` (the gate failing on input
instead of judging it). Controls check that honest work still passes, so that a gate that
refuses everything scores nothing. Used by tests/test_review_attacks.py and
scripts/bench_review.py.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ect.review import records, signing
from ect.review.gitcmd import Git
from ect.review.pre_receive import record_received
from ect.review.store import Store
from ect.review.store import push as push_notes
from ect.review.testing import Scenario, make_scenario

PEOPLE = ("alice", "bob", "carol", "mallory")
POLICY = """require_signed = true
allowed_signers = "allowed_signers"
trusted_checkers = ["carol@example.com"]
maintainers = ["carol@example.com"]

[tool.ect.review.users]
bob = ["bob@example.com"]
carol = ["carol@example.com"]
mallory = ["mallory@example.com"]

[tool.ect.stages.staging]

[tool.ect.stages.production]
branch = "live"
bake_minutes = 60
required_approvals = 1
"""
CODEOWNERS = "* @bob @carol\nsecure/ @carol\n"


def email(who: str) -> str:
    return f"{who}@example.com"


@dataclass
class Pushed:
    ok: bool
    stderr: str


@dataclass
class Lab:
    """The central repository, the keys, and one working clone that everybody's records come from
    (records are data: who pushes a note does not make it theirs; its signature does)."""

    sc: Scenario
    policy_commit: str
    crashes: list[str] = field(default_factory=list)
    counter: int = 0

    @property
    def work(self) -> Path:
        return self.sc.clones["mallory"]

    @property
    def git(self) -> Git:
        return Git(self.work, env=self.sc.env)

    @property
    def central(self) -> Git:
        return Git(self.sc.central, env=self.sc.env)

    def tip(self, branch: str) -> str | None:
        return self.central.maybe_rev(f"refs/heads/{branch}")

    def run(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["git", *args],
            cwd=self.work,
            env={**self.sc.env, **(env or {})},
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )

    def push(self, *refspecs: str, pusher: str | None = None, force: bool = False) -> Pushed:
        """`git push`; `pusher` is "VAR=value", what the SSH/HTTP front end tells the hooks."""
        env = dict([pusher.split("=", 1)]) if pusher else None
        proc = self.run("push", "--porcelain", *(["--force"] if force else []), "origin", *refspecs, env=env)
        if "ect gate error" in proc.stderr:
            self.crashes.append(proc.stderr.strip().splitlines()[-1])
        return Pushed(proc.returncode == 0, proc.stderr)

    def change(
        self,
        files: dict[str, str] | None = None,
        *,
        author: str = "alice",
        committer: str | None = None,
        base: str | None = None,
        commits: int = 1,
    ) -> str:
        """Commit(s) on top of `base` (default: the staging tip, else the policy commit), pushed
        to an ungated branch; returns the head."""
        self.counter += 1
        start = base or self.tip("staging") or self.policy_commit
        self.run("checkout", "-q", "--detach", start)
        for i in range(commits):
            for rel, text in (
                files or {f"pkg/attack_{self.counter}_{i}.py": f"N = {self.counter}\n"}
            ).items():
                path = self.work / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
            self.run("add", "-A")
            who = committer or author
            env = {
                "GIT_AUTHOR_NAME": author,
                "GIT_AUTHOR_EMAIL": email(author),
                "GIT_COMMITTER_NAME": who,
                "GIT_COMMITTER_EMAIL": email(who),
            }
            self.run("commit", "-q", "--allow-empty", "-m", f"change {self.counter}.{i}", env=env)
        return self.git.rev("HEAD")  # its objects reach the server with the first push naming it

    def base_of(self, sha: str) -> str:
        return self.git.merge_base(self.tip("staging") or self.policy_commit, sha) or self.policy_commit

    def resync(self) -> None:
        """Make the work clone's notes the server's again (after an attack the server refused)."""
        self.run("fetch", "-q", "--prune", "origin", "+refs/notes/ect/*:refs/notes/ect/*")

    def record(
        self, kind: str, sha: str, who: str, *, key: str | None = "same", by: str | None = None, **fields: Any
    ) -> dict[str, Any]:
        """A record by `who` (principal `by`, default their e-mail), signed with `key`'s key
        ("same": who's own, None: unsigned)."""
        base = self.base_of(sha)
        data = records.make(kind, sha, time.time(), by=by or email(who), **fields)
        if kind in ("approval", "rejection", "withdrawal", "dismissal"):
            data.setdefault("base", base)
            data.setdefault("patch_id", self.git.patch_id(base, sha))
        signer = who if key == "same" else key
        if signer is not None:
            data["sig"] = signing.sign(records.signed_payload(data), self.sc.keys[signer])
        return data

    def check(self, sha: str, who: str = "carol", key: str | None = "same", **over: Any) -> dict[str, Any]:
        fields: dict[str, Any] = dict(
            tree=self.git.tree(sha),
            base=self.base_of(sha),
            outcome="pass",
            checks="pass",
            tests_run=True,
            summary="0 compile error(s), 0 failing test(s), 1 test file(s) run",
            blocking=0,
        )
        fields.update(over)
        return self.record("check", sha, who, key=key, **fields)

    def publish(self, *items: dict[str, Any]) -> None:
        """Append records and push them the normal way (merge with the central notes, then push)."""
        store = Store(self.git)
        for item in items:
            store.append(item)
        push_notes(self.git, "origin")

    def raw_note(self, ref: str, sha: str, text: bytes) -> Pushed:
        """Append raw bytes to the note on `sha` in `refs/notes/ect/<ref>` and push it as is."""
        self.run("fetch", "-q", "origin", f"+refs/notes/ect/{ref}:refs/notes/ect/{ref}")
        git = self.git
        old = git.run("notes", f"--ref=refs/notes/ect/{ref}", "show", sha, check=False).stdout
        blob = git.out("hash-object", "-w", "--stdin", input=old + text).strip()
        git.run("notes", f"--ref=refs/notes/ect/{ref}", "add", "-f", "-C", blob, sha)
        return self.push(f"refs/notes/ect/{ref}:refs/notes/ect/{ref}")

    def promote(self, sha: str, stage: str = "staging", pusher: str | None = None) -> bool:
        branch = "live" if stage == "production" else stage
        return self.push(f"{sha}:refs/heads/{branch}", pusher=pusher).ok and self.tip(branch) == sha

    def reviewed(self, sha: str) -> None:
        """The honest review: carol's signed check and bob's signed approval."""
        self.publish(self.check(sha), self.record("approval", sha, "bob"))


def make_lab(root: Path) -> Lab:
    sc = make_scenario(root, PEOPLE, review=POLICY, extra_files={"CODEOWNERS": CODEOWNERS})
    policy = Git(sc.central, env=sc.env).rev("refs/ect/policy")
    return Lab(sc, policy)


Attack = Callable[[Lab], bool]
# (name, class, attack): class is "forged" (an approval or check the gate must not count), or
# "bypass" (any other way past a rule); "control" entries must be accepted (honest work).
CATALOGUE: list[tuple[str, str, Attack]] = []


def attack(name: str, kind: str) -> Callable[[Attack], Attack]:
    def add(fn: Attack) -> Attack:
        CATALOGUE.append((name, kind, fn))
        return fn

    return add


# ---- first promotion (run before any stage branch exists) ------------------------------------


@attack("first promotion with main moved onto the change (empty-change self-approval)", "bypass")
def _first_empty(lab: Lab) -> bool:
    sha = lab.change(author="mallory")
    lab.push(f"{sha}:refs/heads/main", force=True)  # main is ungated: make the change look empty
    lab.publish(lab.check(sha), lab.record("approval", sha, "mallory"))
    return lab.promote(sha)


@attack("first production promotion before staging exists", "bypass")
def _first_prod(lab: Lab) -> bool:
    sha = lab.change()
    lab.reviewed(sha)
    lab.publish(lab.record("approval", sha, "mallory", stage="production"))
    return lab.promote(sha, "production")


# ---- controls ------------------------------------------------------------------------------


@attack("honest: signed check, signed approval, staging", "control")
def _honest(lab: Lab) -> bool:
    sha = lab.change()
    lab.reviewed(sha)
    return lab.promote(sha)


# ---- forged approvals ----------------------------------------------------------------------


def _forged(lab: Lab, make: Callable[[str], list[dict[str, Any]]], **change: Any) -> bool:
    pusher = change.pop("pusher", None)
    sha = lab.change(**change)
    lab.publish(lab.check(sha), *make(sha))
    return lab.promote(sha, pusher=pusher)


@attack("unsigned approval in bob's name", "forged")
def _unsigned(lab: Lab) -> bool:
    return _forged(lab, lambda s: [lab.record("approval", s, "bob", key=None)])


@attack("approval in bob's name signed with mallory's key", "forged")
def _wrong_key(lab: Lab) -> bool:
    return _forged(lab, lambda s: [lab.record("approval", s, "bob", key="mallory")])


@attack("approval by 'Bob@example.com' (case variant) signed by mallory", "forged")
def _case(lab: Lab) -> bool:
    return _forged(lab, lambda s: [lab.record("approval", s, "bob", key="mallory", by="Bob@example.com")])


@attack("self-approval by the author", "forged")
def _self(lab: Lab) -> bool:
    return _forged(lab, lambda s: [lab.record("approval", s, "mallory")], author="mallory")


@attack("self-approval with --author set to alice (mallory committed)", "forged")
def _committer(lab: Lab) -> bool:
    return _forged(lab, lambda s: [lab.record("approval", s, "mallory")], author="alice", committer="mallory")


@attack("self-approval: mallory wrote an earlier commit of the change", "forged")
def _earlier(lab: Lab) -> bool:
    first = lab.change(author="mallory")
    return _forged(lab, lambda s: [lab.record("approval", s, "mallory")], base=first)


@attack("the pusher approves the change they push", "forged")
def _pusher(lab: Lab) -> bool:
    return _forged(
        lab, lambda s: [lab.record("approval", s, "mallory")], pusher="ECT_PUSHER=mallory@example.com"
    )


@attack("the pusher (GitLab user name mapped by review.users) approves", "forged")
def _pusher_handle(lab: Lab) -> bool:
    return _forged(lab, lambda s: [lab.record("approval", s, "mallory")], pusher="GL_USERNAME=mallory")


@attack("the pusher (HTTP REMOTE_USER, an address in another case) approves", "forged")
def _pusher_http(lab: Lab) -> bool:
    return _forged(
        lab, lambda s: [lab.record("approval", s, "mallory")], pusher="REMOTE_USER=Mallory@Example.com"
    )


@attack("bob's signed approval with an edited message", "forged")
def _edited(lab: Lab) -> bool:
    def make(s: str) -> list[dict[str, Any]]:
        data = lab.record("approval", s, "bob", message="lgtm")
        data["message"] = "lgtm, and also the next one"
        return [data]

    return _forged(lab, make)


@attack("bob's approval of another change replayed onto this commit", "forged")
def _replayed(lab: Lab) -> bool:
    other = lab.change()
    honest = lab.record("approval", other, "bob")

    def make(s: str) -> list[dict[str, Any]]:
        return [{**honest, "commit": s}]

    return _forged(lab, make)


@attack("bob's approval note attached to another commit", "forged")
def _moved(lab: Lab) -> bool:
    other = lab.change()
    honest = lab.record("approval", other, "bob")
    sha = lab.change()
    lab.publish(lab.check(sha))
    lab.raw_note("approvals", sha, (records.dumps(honest) + "\n").encode())
    return lab.promote(sha)


@attack("bob's approval carried over a re-indent (same --stable patch-id)", "forged")
def _reindent(lab: Lab) -> bool:
    base = lab.tip("staging") or lab.policy_commit
    good = "def f(x):\n    if x:\n        return 1\n    return 0\n"
    first = lab.change({"pkg/guard.py": good}, base=base)
    lab.push(f"{first}:refs/heads/wip/guard", force=True)  # the approved commit is on the server
    lab.publish(lab.record("approval", first, "bob"))
    bad = "def f(x):\n    if x:\n        return 1\n    return 0\n".replace("        return 1", "    return 1")
    sha = lab.change({"pkg/guard.py": bad}, base=base)
    lab.publish(lab.check(sha))
    return lab.promote(sha)


@attack("a production approval used for staging", "forged")
def _stage_mix(lab: Lab) -> bool:
    return _forged(lab, lambda s: [lab.record("approval", s, "bob", stage="production")])


@attack("CODEOWNERS @carol path approved by mallory (local part games)", "forged")
def _owner(lab: Lab) -> bool:
    return _forged(lab, lambda s: [lab.record("approval", s, "mallory")], files={"secure/key.py": "K = 1\n"})


@attack("mallory's key added under bob's name on main, then used", "forged")
def _signers_on_main(lab: Lab) -> bool:
    pub = Path(f"{lab.sc.keys['mallory']}.pub").read_text().split()
    lab.run("fetch", "-q", "origin", "main")
    lab.run("checkout", "-q", "--detach", "origin/main")
    with (lab.work / "allowed_signers").open("a") as fh:
        fh.write(f"bob@example.com {pub[0]} {pub[1]}\n")
    lab.run("commit", "-qam", "signers")
    lab.push("HEAD:refs/heads/main", force=True)
    return _forged(lab, lambda s: [lab.record("approval", s, "bob", key="mallory")])


@attack("unsigned check in carol's name", "forged")
def _check_unsigned(lab: Lab) -> bool:
    sha = lab.change()
    lab.publish(lab.check(sha, key=None), lab.record("approval", sha, "bob"))
    return lab.promote(sha)


@attack("check signed by mallory (an allowed signer, not a checker)", "forged")
def _check_mallory(lab: Lab) -> bool:
    sha = lab.change()
    lab.publish(lab.check(sha, "mallory"), lab.record("approval", sha, "bob"))
    return lab.promote(sha)


@attack("check in carol's name signed with mallory's key", "forged")
def _check_wrong_key(lab: Lab) -> bool:
    sha = lab.change()
    lab.publish(lab.check(sha, key="mallory"), lab.record("approval", sha, "bob"))
    return lab.promote(sha)


@attack("carol's check over an empty range (HEAD..HEAD)", "forged")
def _check_empty(lab: Lab) -> bool:
    sha = lab.change({"tests/test_core.py": "def test_broken():\n    assert False\n"})
    lab.publish(lab.check(sha, base=sha), lab.record("approval", sha, "bob"))
    return lab.promote(sha)


@attack("carol's check over the last commit only of a two-commit change", "forged")
def _check_partial(lab: Lab) -> bool:
    sha = lab.change(commits=2)
    lab.publish(lab.check(sha, base=lab.git.rev(f"{sha}~1")), lab.record("approval", sha, "bob"))
    return lab.promote(sha)


@attack("carol's failing verdict plus mallory's unsigned resolve of the finding", "forged")
def _resolve(lab: Lab) -> bool:
    sha = lab.change()
    lab.publish(
        lab.check(sha, outcome="fail", blocking=1),
        lab.record("resolve", sha, "mallory", key=None, fp="x" * 16),
        lab.record("approval", sha, "bob"),
    )
    return lab.promote(sha)


@attack("mallory dismisses bob's rejection (not a maintainer)", "forged")
def _dismiss(lab: Lab) -> bool:
    sha = lab.change()
    lab.publish(lab.record("rejection", sha, "bob", message="no"))
    lab.publish(lab.record("dismissal", sha, "mallory", target="bob@example.com"))
    lab.publish(lab.check(sha), lab.record("approval", sha, "carol"))
    return lab.promote(sha)


@attack("bob's rejection withdrawn in his name with mallory's key", "forged")
def _withdraw(lab: Lab) -> bool:
    sha = lab.change()
    lab.publish(lab.record("rejection", sha, "bob", message="no"))
    lab.publish(lab.record("withdrawal", sha, "bob", key="mallory"))
    lab.publish(lab.check(sha), lab.record("approval", sha, "carol"))
    return lab.promote(sha)


# ---- other bypasses ------------------------------------------------------------------------


@attack("a rejection dropped by adding a new commit", "bypass")
def _rejection_new_commit(lab: Lab) -> bool:
    first = lab.change()
    lab.publish(lab.record("rejection", first, "bob", message="no"))
    sha = lab.change(base=first)
    lab.publish(lab.check(sha), lab.record("approval", sha, "carol"))
    return lab.promote(sha)


@attack("notes fast-forward that deletes bob's rejection line", "bypass")
def _notes_drop_line(lab: Lab) -> bool:
    sha = lab.change()
    lab.publish(lab.record("rejection", sha, "bob", message="no"))
    git = lab.git
    git.run("notes", "--ref=refs/notes/ect/approvals", "remove", sha)
    return lab.push("refs/notes/ect/approvals:refs/notes/ect/approvals").ok


@attack("notes fast-forward that edits bob's rejection into an approval", "bypass")
def _notes_edit(lab: Lab) -> bool:
    sha = lab.change()
    lab.publish(lab.record("rejection", sha, "bob", message="no"))
    git = lab.git
    text = git.out("notes", "--ref=refs/notes/ect/approvals", "show", sha).replace(
        '"rejection"', '"approval"'
    )
    blob = git.out("hash-object", "-w", "--stdin", input=text.encode()).strip()
    git.run("notes", "--ref=refs/notes/ect/approvals", "add", "-f", "-C", blob, sha)
    return lab.push("refs/notes/ect/approvals:refs/notes/ect/approvals").ok


@attack("notes force-push to an older notes commit", "bypass")
def _notes_force(lab: Lab) -> bool:
    sha = lab.change()
    lab.publish(lab.record("rejection", sha, "bob", message="no"))
    return lab.push("+refs/notes/ect/approvals~1:refs/notes/ect/approvals", force=True).ok


@attack("notes ref deleted", "bypass")
def _notes_delete(lab: Lab) -> bool:
    return lab.push(":refs/notes/ect/approvals").ok


@attack("a 2 MiB note pushed", "bypass")
def _notes_big(lab: Lab) -> bool:
    sha = lab.change()
    line = records.dumps(
        records.make(
            "comment",
            sha,
            time.time(),
            fp="f",
            rule="r",
            severity="advisory",
            message="x" * 1000,
            by="mallory",
        )
    )
    return lab.raw_note("comments", sha, ((line + "\n") * 2100).encode()).ok


@attack("stage branch force-pushed back to an older commit", "bypass")
def _rewind(lab: Lab) -> bool:
    tip = lab.tip("staging")
    if tip is None:
        return False
    old = lab.central.rev(f"{tip}~1")
    return lab.push(f"+{old}:refs/heads/staging", force=True).ok


@attack("stage branch moved sideways onto an unreviewed commit", "bypass")
def _sideways(lab: Lab) -> bool:
    tip = lab.tip("staging") or lab.policy_commit
    sha = lab.change(base=lab.central.rev(f"{tip}~1"))
    return lab.push(f"+{sha}:refs/heads/staging", force=True).ok


@attack("stage branch deleted", "bypass")
def _delete(lab: Lab) -> bool:
    return lab.push(":refs/heads/staging").ok


@attack("tag named like a stage (refs/tags/staging)", "bypass")
def _tag(lab: Lab) -> bool:
    return lab.push(f"{lab.change()}:refs/tags/staging").ok


@attack("branch named like a stage whose branch differs (refs/heads/production)", "bypass")
def _stage_name_branch(lab: Lab) -> bool:
    return lab.push(f"{lab.change()}:refs/heads/production").ok


@attack("top-level ref named like a stage (refs/live)", "bypass")
def _toplevel(lab: Lab) -> bool:
    return lab.push(f"{lab.change()}:refs/live").ok


@attack("forged server receive log (refs/notes/ect-server/log)", "bypass")
def _server_log(lab: Lab) -> bool:
    sha = lab.tip("staging") or lab.change()
    git = lab.git
    data = records.make("received", sha, time.time() - 86400, stage="staging", ref="refs/heads/staging")
    blob = git.out("hash-object", "-w", "--stdin", input=(records.dumps(data) + "\n").encode()).strip()
    git.run("notes", f"--ref={records.SERVER_LOG}", "add", "-f", "-C", blob, sha)
    return lab.push(f"+{records.SERVER_LOG}:{records.SERVER_LOG}", force=True).ok


@attack("production before the bake time, with back-dated client promotion records", "bypass")
def _bake(lab: Lab) -> bool:
    sha = lab.change()
    lab.reviewed(sha)
    if not lab.promote(sha):
        return False
    old = time.time() - 86400
    lab.publish(
        {**records.make("promotion", sha, old, stage="staging", by="mallory@example.com")},
        lab.record("approval", sha, "bob", stage="production"),
    )
    return lab.promote(sha, "production")


@attack("production without staging holding the commit", "bypass")
def _skip(lab: Lab) -> bool:
    sha = lab.change()
    lab.reviewed(sha)
    lab.publish(lab.record("approval", sha, "bob", stage="production"))
    return lab.promote(sha, "production")


@attack("stages renamed and signing turned off on main (ungated branch)", "bypass")
def _policy_on_main(lab: Lab) -> bool:
    lab.run("fetch", "-q", "origin", "main")
    lab.run("checkout", "-q", "--detach", "origin/main")
    py = lab.work / "pyproject.toml"
    py.write_text(
        py.read_text()
        .replace("require_signed = true", "require_signed = false")
        .replace("[tool.ect.stages.staging]", "[tool.ect.stages.nothing]")
    )
    lab.run("commit", "-qam", "relax")
    lab.push("HEAD:refs/heads/main", force=True)
    sha = lab.change()
    lab.publish(lab.check(sha, key=None), lab.record("approval", sha, "bob", key=None))
    return lab.promote(sha)


@attack("policy ref fast-forwarded without maintainers' approval", "bypass")
def _policy_push(lab: Lab) -> bool:
    lab.run("fetch", "-q", "origin", "+refs/ect/policy:refs/ect/policy")
    lab.run("checkout", "-q", "--detach", "refs/ect/policy")
    py = lab.work / "pyproject.toml"
    py.write_text(py.read_text().replace("require_signed = true", "require_signed = false"))
    lab.run("commit", "-qam", "relax", env={"GIT_AUTHOR_EMAIL": email("mallory")})
    new = lab.git.rev("HEAD")
    lab.publish(lab.record("approval", new, "mallory", stage="policy"))
    return lab.push("HEAD:refs/ect/policy").ok


@attack("policy ref change approved by mallory only (not a maintainer)", "bypass")
def _policy_push_bob(lab: Lab) -> bool:
    lab.run("fetch", "-q", "origin", "+refs/ect/policy:refs/ect/policy")
    lab.run("checkout", "-q", "--detach", "refs/ect/policy")
    (lab.work / "CODEOWNERS").write_text("* @mallory\n")
    env = {"GIT_AUTHOR_EMAIL": email("alice"), "GIT_COMMITTER_EMAIL": email("alice")}
    lab.run("commit", "-qam", "owners", env=env)
    new = lab.git.rev("HEAD")
    lab.publish(lab.record("approval", new, "mallory", stage="policy"))
    return lab.push("HEAD:refs/ect/policy").ok


@attack("another ref under refs/ect/", "bypass")
def _ect_ref(lab: Lab) -> bool:
    return lab.push(f"{lab.change()}:refs/ect/override").ok


# ---- malformed records (denial of service): the gate must skip them, not crash -----------

MALFORMED = {
    "huge float ts": b'{"v":1,"type":"approval","commit":"%s","ts":1e400,"by":"bob@example.com"}',
    "huge int ts": b'{"v":1,"type":"approval","commit":"%s","ts":' + b"9" * 5000 + b',"by":"b"}',
    "deep nesting": b'{"v":1,"type":"approval","commit":"%s","ts":1,"by":"b","x":'
    + b"[" * 5000
    + b"]" * 5000
    + b"}",
    "ts as string": b'{"v":1,"type":"approval","commit":"%s","ts":"now","by":"bob@example.com"}',
    "by as list": b'{"v":1,"type":"approval","commit":"%s","ts":1,"by":["bob@example.com"],"sig":7}',
    "not utf-8": b'{"v":1,"type":"approval","commit":"%s","ts":1,"by":"\xff\xfe"}',
    "NaN ts": b'{"v":1,"type":"approval","commit":"%s","ts":NaN,"by":"bob@example.com"}',
    "check tree as object": b'{"v":1,"type":"check","commit":"%s","ts":1,"tree":{},"outcome":"pass"}',
}


def _malformed(name: str, payload: bytes) -> Attack:
    def run(lab: Lab) -> bool:
        sha = lab.change()
        ref = "reviews" if b'"check"' in payload else "approvals"
        lab.raw_note(ref, sha, payload.replace(b"%s", sha.encode()) + b"\n")
        lab.reviewed(sha)
        # the honest review must still pass: a crash or a refusal here is the attack succeeding
        return not lab.promote(sha)

    return run


for _name, _payload in MALFORMED.items():
    CATALOGUE.append((f"malformed record ({_name}) blocks the gate", "crash", _malformed(_name, _payload)))


# ---- controls after the attacks --------------------------------------------------------------


@attack("honest: production after the bake time (server receive log)", "control")
def _honest_prod(lab: Lab) -> bool:
    sha = lab.change()
    lab.reviewed(sha)
    if not lab.promote(sha):
        return False
    # the server's own post-receive record, as if staging had received it an hour ago
    central = lab.central
    lab.run("fetch", "-q", "origin")  # nothing to do with trust: keeps the work clone current
    notes = f"{records.SERVER_LOG}"
    central.run("notes", f"--ref={notes}", "remove", "--ignore-missing", sha, check=False)
    record_received(central, [("0" * 40, sha, "refs/heads/staging")], now=time.time() - 3700)
    lab.publish(lab.record("approval", sha, "bob", stage="production"))
    return lab.promote(sha, "production")


@attack("honest: bob withdraws his rejection, then approves", "control")
def _honest_withdraw(lab: Lab) -> bool:
    sha = lab.change()
    lab.publish(lab.record("rejection", sha, "bob", message="fix it"))
    lab.publish(lab.record("withdrawal", sha, "bob"))
    lab.reviewed(sha)
    return lab.promote(sha)


@attack("honest: carol (maintainer) dismisses bob's rejection", "control")
def _honest_dismiss(lab: Lab) -> bool:
    sha = lab.change()
    lab.publish(lab.record("rejection", sha, "bob", message="no"))
    lab.publish(lab.record("dismissal", sha, "carol", target="bob@example.com", message="obsolete"))
    lab.publish(lab.check(sha), lab.record("approval", sha, "carol"))
    return lab.promote(sha)


@attack("honest: identical diff rebased keeps bob's approval", "control")
def _honest_carry(lab: Lab) -> bool:
    base = lab.tip("staging") or lab.policy_commit
    first = lab.change({"pkg/same.py": "SAME = 1\n"}, base=base)
    lab.push(f"{first}:refs/heads/wip/same", force=True)  # the approved commit is on the server
    lab.publish(lab.record("approval", first, "bob"))
    lab.run("checkout", "-q", "--detach", first)
    lab.run("commit", "-q", "--amend", "-m", "reworded")  # same diff, new commit
    sha = lab.git.rev("HEAD")
    lab.publish(lab.check(sha))
    return lab.promote(sha)


@dataclass
class Outcome:
    name: str
    kind: str
    accepted: bool
    seconds: float
    error: str = ""


def run_catalogue(lab: Lab, only: Callable[[str], bool] | None = None) -> list[Outcome]:
    """Run the attacks in order (the first two before any stage branch exists)."""
    out: list[Outcome] = []
    for name, kind, fn in CATALOGUE:
        if only is not None and not only(name):
            continue
        t0 = time.perf_counter()
        crashes = len(lab.crashes)
        error = ""
        try:
            accepted = fn(lab)
        except Exception as exc:  # a harness failure is reported, never counted as a refusal
            accepted, error = True, f"{type(exc).__name__}: {exc}"
        if len(lab.crashes) > crashes:
            error = error or lab.crashes[-1]
        lab.resync()
        out.append(Outcome(name, kind, accepted, time.perf_counter() - t0, error))
    return out


def summary(outcomes: list[Outcome]) -> dict[str, int]:
    attacks = [o for o in outcomes if o.kind != "control"]
    return {
        "attacks": len(attacks),
        "forged_accepted": sum(o.accepted for o in attacks if o.kind == "forged"),
        "bypasses_accepted": sum(o.accepted for o in attacks if o.kind == "bypass"),
        "crashes": sum(1 for o in outcomes if (o.kind == "crash" and o.accepted) or "gate error" in o.error),
        "controls": sum(o.kind == "control" for o in outcomes),
        "controls_failed": sum(o.kind == "control" and not o.accepted for o in outcomes),
    }
