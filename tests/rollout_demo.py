"""A real rollout playground, shared by tests/test_rollout_e2e.py and scripts/bench_rollout.py.

- a tiny demo service (prometheus_client) committed in a git repository; a "bad" revision answers
  every fifth request with a 500 (20%);
- `deploy.py REV TARGET...`: stops the target's process and starts REV's service.py (taken from
  git) on the target's 127.0.0.1 port; an empty REV only stops it (rollback to nothing);
- a real Prometheus (Debian package) on a free 127.0.0.1 port scraping every target each second;
- a bounded load loop over the running targets that counts which version answered.
`Demo.close()` stops every process it or the deploy script started.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

TARGETS = ("box-1", "box-2", "box-3", "box-4", "box-5")
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Ann Author",
    "GIT_AUTHOR_EMAIL": "ann@example.com",
    "GIT_COMMITTER_NAME": "Ann Author",
    "GIT_COMMITTER_EMAIL": "ann@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
}

SERVICE = '''
"""Demo service: GET / answers its version; /metrics for Prometheus."""
import os, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest

ERROR_EVERY = {error_every}  # 0: never fail; 5: every fifth request fails (20%)
VERSION, TARGET, PORT, FIRST_ERROR = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
REQUESTS = Counter("demo_requests", "Requests served", ["version"])
ERRORS = Counter("demo_errors", "Requests failed", ["version"])
REQUESTS.labels(VERSION)
ERRORS.labels(VERSION)
lock = threading.Lock()
count = [0]


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/metrics":
            body, ctype, code = generate_latest(), CONTENT_TYPE_LATEST, 200
        else:
            with lock:
                count[0] += 1
                failed = ERROR_EVERY and count[0] % ERROR_EVERY == 1
            REQUESTS.labels(VERSION).inc()
            if failed:
                ERRORS.labels(VERSION).inc()
                if not os.path.exists(FIRST_ERROR):
                    with open(FIRST_ERROR, "a") as fh:
                        fh.write(f"{{time.time()}} {{TARGET}} {{VERSION}}\\n")
            body, ctype, code = VERSION.encode(), "text/plain", 500 if failed else 200
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


threading.Timer(float(os.environ.get("DEMO_MAX_LIFETIME", "900")), os._exit, (0,)).start()
ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
'''

DEPLOY = '''
"""deploy.py REV TARGET...: run REV's service.py on each target (an empty REV stops them)."""
import json, os, signal, subprocess, sys, time, urllib.request
from pathlib import Path

demo = Path(os.environ["DEMO_DIR"])
rev, targets = sys.argv[1], sys.argv[2:]
ports = json.loads((demo / "ports.json").read_text())


def stop(target):
    pidfile = demo / "run" / f"{target}.pid"
    if not pidfile.exists():
        return
    pid = int(pidfile.read_text())
    try:
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            os.kill(pid, 0)
            time.sleep(0.03)
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    pidfile.unlink()


started = {}
for target in targets:
    stop(target)
    if not rev:
        print(f"{target}: stopped")
        continue
    release = demo / "releases" / rev
    release.mkdir(parents=True, exist_ok=True)
    code = subprocess.run(["git", "show", f"{rev}:service.py"], capture_output=True, check=True).stdout
    (release / "service.py").write_bytes(code)
    log = open(demo / "run" / f"{target}.log", "ab")
    proc = subprocess.Popen(
        [sys.executable, str(release / "service.py"), rev[:12], target, str(ports[target]),
         str(demo / "first_error")],
        stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True,
    )
    (demo / "run" / f"{target}.pid").write_text(str(proc.pid))
    started[target] = proc
deadline = time.time() + 15
for target, proc in started.items():  # started together, waited for together
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{ports[target]}/metrics", timeout=1).read()
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                sys.exit(f"{target}: service did not start")
            time.sleep(0.05)
    with open(demo / "deploys.log", "a") as fh:
        fh.write(f"{time.time()} {target} {rev[:12]}\\n")
    print(f"{target}: {rev[:12]} on port {ports[target]}")
'''

CANARY = '''
"""canary.py TARGET...: each deployed target answers /metrics (a synthetic request)."""
import json, os, sys, urllib.request
ports = json.loads(open(os.path.join(os.environ["DEMO_DIR"], "ports.json")).read())
for target in sys.argv[1:]:
    urllib.request.urlopen(f"http://127.0.0.1:{ports[target]}/metrics", timeout=2).read()
'''


def plan_toml(prom_port: int, bake: float, poll: float) -> str:
    return textwrap.dedent(
        f"""
        [tool.ect.stages.staging]
        [tool.ect.stages.production]
        [tool.ect.stages.production.rollout]
        deploy = "{sys.executable} deploy.py {{revision}} {{targets}}"
        rollback = "{sys.executable} deploy.py '{{previous}}' {{targets}}"
        prometheus = "http://127.0.0.1:{prom_port}"
        poll_seconds = {poll}
        command_timeout_seconds = 60
        hold_timeout_seconds = 30
        [[tool.ect.stages.production.rollout.waves]]
        name = "one-box"
        targets = ["box-1"]
        bake_seconds = {bake}
        [[tool.ect.stages.production.rollout.waves]]
        name = "zone"
        targets = ["box-2", "box-3"]
        bake_seconds = {bake}
        [[tool.ect.stages.production.rollout.waves]]
        name = "rest"
        targets = ["box-4", "box-5"]
        bake_seconds = {bake}
        [[tool.ect.stages.production.rollout.alarms]]
        name = "error-ratio"
        # the new revision's error ratio since its deploy (each deploy starts fresh processes):
        # one scrape suffices, where rate() would wait for two
        query = '''sum(demo_errors_total{{version="{{short}}"}})
                 / sum(demo_requests_total{{version="{{short}}"}})'''
        above = 0.05
        [[tool.ect.stages.production.rollout.alarms]]
        name = "canary"
        command = "{sys.executable} canary.py {{deployed}}"
        """
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def git(repo: Path, *args: str) -> str:
    proc = subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, env={**os.environ, **GIT_ENV}, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout.strip()


@dataclass
class Load:
    """A bounded load loop: round-robin GETs over the targets, counting which version answered."""

    ports: dict[str, int]
    rate: float = 60.0
    max_seconds: float = 300.0
    seen: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    answers: list[tuple[float, str]] = field(default_factory=list)  # (time, version) of each request
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Load:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        end = time.monotonic() + self.max_seconds
        i = 0
        while not self._stop.is_set() and time.monotonic() < end:
            port = list(self.ports.values())[i % len(self.ports)]
            i += 1
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as resp:
                    version = resp.read().decode()
            except urllib.error.HTTPError as exc:
                version = exc.read().decode()
                self.errors[version] += 1
            except OSError:
                version = "down"
            self.seen[version] += 1
            self.answers.append((time.time(), version))
            self._stop.wait(1.0 / self.rate)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


class Demo:
    """Prometheus + a demo repository; `close()` ends every process."""

    def __init__(self, base: Path, bake: float = 2.0, poll: float = 1.0) -> None:
        self.base = base
        self.dir = base / "demo"
        (self.dir / "run").mkdir(parents=True)
        self.ports = {t: free_port() for t in TARGETS}
        (self.dir / "ports.json").write_text(json.dumps(self.ports))
        self.prom_port = free_port()
        self.prom: subprocess.Popen[bytes] | None = None
        self.repo = base / "repo"
        self.env = {**os.environ, **GIT_ENV, "DEMO_DIR": str(self.dir), "DEMO_MAX_LIFETIME": "900"}
        self._make_repo(bake, poll)

    # ---- Prometheus --------------------------------------------------------------------------
    def start_prometheus(self) -> None:
        conf = self.base / "prometheus.yml"
        targets = ", ".join(f'"127.0.0.1:{p}"' for p in self.ports.values())
        conf.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: demo\n    scrape_timeout: 900ms\n"
            f"    static_configs:\n      - targets: [{targets}]\n"
        )
        log = (self.base / "prometheus.log").open("wb")
        self.prom = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={conf}",
                f"--storage.tsdb.path={self.base / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.prom_port}",
                "--storage.tsdb.retention.time=1h",
            ],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.time() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.prom_port}/-/ready", timeout=1).read()
                return
            except OSError:
                if self.prom.poll() is not None or time.time() > deadline:
                    tail = (self.base / "prometheus.log").read_text()[-500:]
                    raise RuntimeError(f"prometheus did not start: {tail}") from None
                time.sleep(0.1)

    def stop_prometheus(self) -> None:
        if self.prom is not None and self.prom.poll() is None:
            os.killpg(self.prom.pid, signal.SIGTERM)
            try:
                self.prom.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.prom.pid, signal.SIGKILL)
                self.prom.wait(timeout=5)

    # ---- the repository ----------------------------------------------------------------------
    def _make_repo(self, bake: float, poll: float) -> None:
        self.repo.mkdir()
        git(self.repo, "init", "-q", "-b", "main")
        (self.repo / "pyproject.toml").write_text(plan_toml(self.prom_port, bake, poll))
        (self.repo / "deploy.py").write_text(DEPLOY)
        (self.repo / "canary.py").write_text(CANARY)
        (self.repo / ".gitignore").write_text(".ect/\n")
        self.good = self.commit(0, "v1: the demo service")

    def commit(self, error_every: int, message: str) -> str:
        (self.repo / "service.py").write_text(SERVICE.format(error_every=error_every))
        git(self.repo, "add", "-A")
        git(self.repo, "commit", "-q", "--allow-empty", "-m", message)
        return git(self.repo, "rev-parse", "HEAD")

    def pass_gate(self, rev: str) -> None:
        """Production's gate: staging holds the revision (bake time and approvals are 0 here)."""
        git(self.repo, "branch", "-f", "staging", rev)

    def ect(self, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ect", *args],
            cwd=self.repo,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def versions(self) -> dict[str, str]:
        """What each target answers now (`down` when nothing listens)."""
        out = {}
        for target, port in self.ports.items():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as resp:
                    out[target] = resp.read().decode()
            except urllib.error.HTTPError as exc:
                out[target] = exc.read().decode()
            except OSError:
                out[target] = "down"
        return out

    def close(self) -> None:
        for pidfile in (self.dir / "run").glob("*.pid"):
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pidfile.read_text()), signal.SIGKILL)
            pidfile.unlink()
        self.stop_prometheus()
