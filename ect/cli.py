"""The `ect` command line.

Sub-commands are registered by dotted path and imported only when invoked, so that
`ect check` (the hook path) never pays for the model, LSP, review or report code.
"""

from __future__ import annotations

import importlib
import os
import sys

import click

from ect import __version__
from ect.errors import EctError

# name -> "module:attribute" of a click command; imported lazily.
COMMANDS: dict[str, str] = {
    "check": "ect.check_cmd:check",
    "demo": "ect.demo:demo",
    "watch": "ect.watch:watch",
    "graph": "ect.graph_cmd:graph",
    "hooks": "ect.hooks_cmd:hooks",
    "verify": "ect.verify:verify",
    "model": "ect.models.cli:model",
    "fix": "ect.fix.cli:fix",
    "lsp": "ect.lsp.server:lsp",
    "review": "ect.review.cli:review",
    "promote": "ect.review.cli:promote",
    "report": "ect.metrics.cli:report",
    "metrics": "ect.metrics.cli:metrics",
    "rollout": "ect.rollout.cli:rollout",
}

HELP: dict[str, str] = {
    "check": "Compile changed files and run only the tests they can affect.",
    "demo": "A one-minute tour on a throw-away repository.",
    "watch": "Re-run the loop for each saved file.",
    "graph": "Show the import graph: who depends on what.",
    "hooks": "Install or remove ect's git hooks.",
    "verify": "Check selection safety with random mutants.",
    "model": "Train, evaluate and query the code model.",
    "fix": "Find verified fixes for compile errors and failing tests.",
    "lsp": "Run the language server over stdio.",
    "review": "Review bot, comments and approvals stored in git.",
    "promote": "Promote a revision to the next stage through its gate.",
    "report": "Productivity report from the event log.",
    "metrics": "Manage the event store (sync, prune).",
    "rollout": "Roll a gated revision out wave by wave under alarms.",
}


class LazyGroup(click.Group):
    """A click group whose commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        if ctx.resilient_parsing or "--help" in sys.argv[1:2]:
            # `ect --help` lists commands without importing them.
            return click.Command(cmd_name, help=HELP.get(cmd_name, ""))
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            missing = exc.name or module_name
            if missing == "ect" or missing.startswith("ect."):
                raise click.UsageError(f"'ect {cmd_name}' is not available in this build") from None
            extra = _EXTRA_FOR.get(cmd_name, "")
            hint = f" (pip install 'ect-loop[{extra}]')" if extra else ""
            raise click.UsageError(f"'ect {cmd_name}' needs the '{missing}' package{hint}") from None
        command: click.Command = getattr(module, attr)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, HELP.get(name, "")) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


_EXTRA_FOR = {"model": "model", "lsp": "lsp", "fix": "model", "metrics": "team"}
_EXTRA_OF_PACKAGE = {
    "torch": "model",
    "transformers": "model",
    "tokenizers": "model",
    "safetensors": "model",
    "peft": "model",
    "pygls": "lsp",
    "lsprotocol": "lsp",
    "psycopg": "team",
    "matplotlib": "report",
}


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ect")
def cli() -> None:
    """ect: edit, compile, test: fast, selective and measured."""


def main(argv: list[str] | None = None) -> None:
    """Console entry point: one-line errors, meaningful exit codes."""
    from ect.errors import Terminated, exit_on_signals

    exit_on_signals()  # SIGTERM/SIGHUP unwind like Ctrl-C: children end, temporary files go
    try:
        rv = cli.main(args=argv, standalone_mode=False)
        sys.exit(rv if isinstance(rv, int) else 0)
    except EctError as exc:
        click.echo(f"ect: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort as exc:  # click turns Ctrl-C (and our SIGTERM/SIGHUP) into Abort
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, Terminated):
            click.echo(f"ect: stopped by signal {cause.signum}", err=True)
            sys.exit(128 + cause.signum)
        click.echo("ect: interrupted", err=True)
        sys.exit(130)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.UsageError as exc:  # one line, with where to read more
        ctx = exc.ctx
        where = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        click.echo(f"ect: error: {exc.format_message()}{where}", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except Terminated as exc:
        click.echo(f"ect: stopped by signal {exc.signum}", err=True)
        sys.exit(128 + exc.signum)
    except KeyboardInterrupt:
        click.echo("ect: interrupted", err=True)
        sys.exit(130)
    except ModuleNotFoundError as exc:  # an optional dependency imported lazily by a command
        if os.environ.get("ECT_DEBUG") or not exc.name or exc.name.split(".")[0] == "ect":
            raise
        package = exc.name.split(".")[0]
        extra = _EXTRA_OF_PACKAGE.get(package)
        hint = f": pip install 'ect-loop[{extra}]'" if extra else f": pip install {package}"
        click.echo(
            f"ect: error: this command needs the '{package}' package, which is not installed{hint}", err=True
        )
        sys.exit(2)
    except BrokenPipeError:
        sys.exit(1)
    except Exception as exc:  # a bug in ect: one line, the traceback only on request
        if os.environ.get("ECT_DEBUG"):
            raise
        click.echo(
            f"ect: internal error: {type(exc).__name__}: {exc} (set ECT_DEBUG=1 for details)", err=True
        )
        sys.exit(2)
