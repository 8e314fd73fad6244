"""`ect demo`: a one-minute tour on a small throw-away repository (nothing else is touched).

It creates a tiny project with three test files in a temporary directory, records it once,
then makes three edits and shows, for each, the tests ect selects and why; finally the
pre-commit hook blocks a commit whose staged content is broken although the working tree is fine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import click

FILES = {
    "shop/__init__.py": "",
    "shop/prices.py": """
        def net(amount, tax=0.2):
            return round(amount / (1 + tax), 2)


        def discount(amount, percent):
            return round(amount * (1 - percent / 100), 2)
    """,
    "shop/cart.py": """
        from shop.prices import discount, net


        def checkout(items, percent=0):
            total = sum(items)
            return discount(total, percent) if percent else total


        def net_total(items):
            return net(sum(items))
    """,
    "shop/labels.py": """
        def label(name, price):
            return f"{name}: {price:.2f} EUR"
    """,
    "tests/test_prices.py": """
        from shop.prices import discount, net


        def test_net():
            assert net(120) == 100


        def test_discount():
            assert discount(200, 10) == 180
    """,
    "tests/test_cart.py": """
        from shop.cart import checkout, net_total


        def test_checkout():
            assert checkout([10, 20]) == 30


        def test_checkout_with_discount():
            assert checkout([100, 100], percent=50) == 100


        def test_net_total():
            assert net_total([60, 60]) == 100
    """,
    "tests/test_labels.py": """
        from shop.labels import label


        def test_label():
            assert label("tea", 3) == "tea: 3.00 EUR"
    """,
    "pyproject.toml": """
        [tool.pytest.ini_options]
        testpaths = ["tests"]
        pythonpath = ["."]
    """,
}

IDENTITY = {
    "GIT_AUTHOR_NAME": "ect demo",
    "GIT_AUTHOR_EMAIL": "demo@example.invalid",
    "GIT_COMMITTER_NAME": "ect demo",
    "GIT_COMMITTER_EMAIL": "demo@example.invalid",
}


class Demo:
    """The throw-away repository and the commands run in it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = {**os.environ, **IDENTITY, "GIT_CONFIG_NOSYSTEM": "1"}
        self.env.pop("GIT_INDEX_FILE", None)
        self.env.pop("GIT_DIR", None)

    def write(self, rel: str, text: str) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))

    def git(self, *args: str) -> None:
        subprocess.run(
            ["git", *args], cwd=self.root, env=self.env, check=True, capture_output=True, timeout=60
        )

    def show(self, title: str, *args: str, command: list[str] | None = None) -> int:
        cmd = command or [sys.executable, "-m", "ect", *args]
        shown = " ".join(command) if command else "ect " + " ".join(args)
        click.secho(f"\n── {title}", bold=True)
        click.secho(f"$ {shown}", fg="cyan")
        proc = subprocess.run(
            cmd,
            cwd=self.root,
            env=self.env,
            check=False,
            timeout=120,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        click.echo(proc.stdout.decode("utf-8", "replace").rstrip())
        return proc.returncode


def run_demo(root: Path) -> int:
    """The tour; returns 0 when every step behaved as described."""
    demo = Demo(root)
    for rel, text in FILES.items():
        demo.write(rel, text)
    demo.git("init", "-q")
    demo.git("add", "-A")
    demo.git("commit", "-q", "-m", "a small shop")
    click.echo(f"ect demo: a project with 3 test files (6 tests) in {root}")
    ok = demo.show("Record every test once (later runs select per test)", "check", "--all") == 0
    demo.write("shop/labels.py", 'def label(name, price):\n    return "%s: %.2f EUR" % (name, price)\n')
    ok &= demo.show("Edit shop/labels.py: only its test can be affected", "check", "--explain") == 0
    demo.git("commit", "-q", "-am", "labels, rewritten")
    prices = (root / "shop/prices.py").read_text()
    new_discount = "round(amount - amount * percent / 100, 2)"
    (root / "shop/prices.py").write_text(
        prices.replace("round(amount * (1 - percent / 100), 2)", new_discount)
    )
    title = "Edit discount() in shop/prices.py: only the tests that ran it (fingerprints), in two files"
    ok &= demo.show(title, "check", "--explain") == 0
    demo.git("commit", "-q", "-am", "discount, rewritten")
    demo.show("Install the git hooks", "hooks", "install")
    cart = (root / "shop/cart.py").read_text()
    (root / "shop/cart.py").write_text(cart.replace("percent=0):", "percent=0)"))
    demo.git("add", "shop/cart.py")
    (root / "shop/cart.py").write_text(cart)  # the working tree is fine; the staged content is not
    blocked = demo.show(
        "Stage a syntax error, restore the file on disk, commit: the hook checks what is committed",
        command=["git", "commit", "-m", "broken"],
    )
    ok &= blocked != 0
    click.secho(
        "\nect demo: done. Next: `ect hooks install` in your repository, then `ect check --all` once.",
        bold=True,
    )
    return 0 if ok else 1


@click.command("demo")
@click.option("--keep", is_flag=True, help="Keep the demo repository (its path is printed).")
def demo(keep: bool) -> int:
    """A one-minute tour on a throw-away repository: edits, the tests ect selects and why."""
    root = Path(tempfile.mkdtemp(prefix="ect-demo-"))
    try:
        return run_demo(root)
    finally:
        if keep:
            click.echo(f"ect demo: kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
