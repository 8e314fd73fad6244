"""Test helpers shared by every test module: real git repositories and the real `ect` CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Ann Author",
    "GIT_AUTHOR_EMAIL": "ann@example.com",
    "GIT_COMMITTER_NAME": "Ann Author",
    "GIT_COMMITTER_EMAIL": "ann@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git_proc(repo: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run git in `repo` with a fixed identity; the finished process (hooks included) whatever its exit."""
    return subprocess.run(
        ["git", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        env={**os.environ, **GIT_ENV},
        check=False,
        timeout=timeout,
    )


def git(repo: Path, *args: str, check: bool = True) -> str:
    """Run git in `repo` with a fixed identity."""
    proc = git_proc(repo, *args)
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {proc.stderr}")
    return proc.stdout


def write(root: Path, files: dict[str, str]) -> None:
    """Write dedented files under `root`."""
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))


def run_ect(
    repo: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """The real CLI in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "ect", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        env={**os.environ, **GIT_ENV, **(env or {})},
        timeout=timeout,
        check=False,
    )


RAN_HELPER = """
import os
def _ran(name):
    with open(os.environ.get("RAN_LOG", os.devnull), "a") as f:
        f.write(name + "\\n")
"""

SAMPLE = {
    "pyproject.toml": """
        [project]
        name = "acme"
        version = "0.1.0"
        [tool.pytest.ini_options]
        testpaths = ["tests"]
        pythonpath = ["."]
    """,
    "acme/__init__.py": "",
    "acme/core.py": """
        def add(a, b):
            return a + b

        def scale(x, k=2):
            return x * k
    """,
    "acme/util.py": """
        from acme.core import add

        def total(xs):
            t = 0
            for x in xs:
                t = add(t, x)
            return t
    """,
    "acme/extra.py": """
        def shout(s):
            return s.upper() + "!"
    """,
    "tests/test_core.py": RAN_HELPER
    + """
from acme.core import add, scale
def test_add():
    _ran("test_core")
    assert add(2, 3) == 5
def test_scale():
    _ran("test_core")
    assert scale(3) == 6
""",
    "tests/test_util.py": RAN_HELPER
    + """
from acme.util import total
def test_total():
    _ran("test_util")
    assert total([1, 2, 3]) == 6
""",
    "tests/test_extra.py": RAN_HELPER
    + """
from acme.extra import shout
def test_shout():
    _ran("test_extra")
    assert shout("hi") == "HI!"
""",
}


# The editor tests' repository: acme.core (documented add, scale), acme.util, one test.
EDITOR_SAMPLE = {
    "pyproject.toml": """
        [project]
        name = "acme"
        version = "0.1.0"
        [tool.pytest.ini_options]
        testpaths = ["tests"]
        pythonpath = ["."]
    """,
    "acme/__init__.py": "",
    "acme/core.py": """
        def add(a, b):
            \"\"\"Sum of two numbers.\"\"\"
            return a + b


        def scale(x, k=2):
            return x * k
    """,
    "acme/util.py": """
        from acme import core
        from acme.core import add


        def total(xs):
            t = 0
            for x in xs:
                t = add(t, x)
            return t
    """,
    "tests/test_util.py": """
        from acme.util import total


        def test_total():
            assert total([1, 2, 3]) == 6
    """,
}


def make_tiny_base(out: Path, texts: list[str]) -> Path:
    """A tiny Llama-style base (~100k parameters) with its own byte-level BPE trained on `texts`, saved
    in `out` like the shipped base: `ect model train --base <out>` fine-tunes it in seconds."""
    import torch
    from ect.models.fim import EOS, PAD
    from ect.models.tokenizer import save_for_transformers, train_tokenizer
    from transformers import LlamaConfig, LlamaForCausalLM

    out.mkdir(parents=True, exist_ok=True)
    tok = train_tokenizer([*texts, "def f(x):\n    return x + 1\n" * 20], vocab_size=400)
    save_for_transformers(tok, out)
    cfg = LlamaConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        intermediate_size=128,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        eos_token_id=tok.token_to_id(EOS),
        bos_token_id=tok.token_to_id(EOS),
        pad_token_id=tok.token_to_id(PAD),
    )
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(str(out))
    return out


def processes_in(folder: Path) -> list[int]:
    """Live (not zombie) processes whose working directory is `folder` or below it (Linux /proc)."""
    target = os.path.realpath(folder)
    pids = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            cwd = os.readlink(f"/proc/{entry}/cwd")
            with open(f"/proc/{entry}/stat", encoding="utf-8") as fh:
                state = fh.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and (cwd == target or cwd.startswith(target + os.sep)):
            pids.append(int(entry))
    return pids
