"""The ``hearth`` command: the root group, ``hearth version`` and the entry point.

Each command group lives in its own module (jobs, status, blobs, serve); this one
only wires them together, so ``hearth --help`` reads as the table of contents. A
command's module is imported when that command runs (or ``--help`` lists it): a
``hearth worker`` starting up does not pay for rich tables, blob transfers or the
certificate tools it never uses.
"""

from __future__ import annotations

import difflib
import importlib
import platform
import sys

import click

from hearth import __version__
from hearth.cli.common import HearthGroup, output_option

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

#: Command name -> the module that defines it (under the same name).
LAZY = {
    "up": "serve", "coordinator": "serve", "worker": "serve",
    "submit": "jobs", "cancel": "jobs", "retry": "jobs",
    "status": "status", "nodes": "status",
    "blob": "blobs",
    "enroll": "security", "ca": "security", "token": "security", "whoami": "security",
}


class LazyGroup(HearthGroup):
    """The root group: knows its commands by name, imports each one when asked."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *LAZY})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in LAZY:
            module = importlib.import_module(f"hearth.cli.{LAZY[cmd_name]}")
            self.add_command(getattr(module, cmd_name), cmd_name)
        return self.commands.get(cmd_name)

    def resolve_command(self, ctx: click.Context, args: list[str]
                        ) -> tuple[str | None, click.Command | None, list[str]]:
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as exc:
            close = difflib.get_close_matches(args[0], self.list_commands(ctx), n=1)
            if not (close and exc.message.startswith("No such command")):
                raise
            raise click.UsageError(f"{exc.message} Did you mean {close[0]!r}? "
                                   "(hearth --help lists them all)", exc.ctx) from None


@click.group(cls=LazyGroup, context_settings=CONTEXT)
def cli() -> None:
    """Hearth runs background jobs durably: a coordinator keeps the queue, workers
    pull jobs by kind, retry with backoff, and report progress.

    \b
    Start everything locally, then run a job:
      hearth up
      hearth submit --kind echo --payload hi --wait

    Across machines: `hearth coordinator --host 0.0.0.0` listens with mutual TLS,
    `hearth enroll NAME` writes NAME.hearth, and `hearth worker NAME.hearth --import
    mymodule` joins from another machine (the coordinator is found from the bundle,
    or over mDNS).

    Client commands find the coordinator through --url, the bundle (--bundle,
    $HEARTH_BUNDLE, <data>/admin.hearth, ~/.hearth/admin.hearth) or a token (--token,
    $HEARTH_TOKEN), and the data dir (--data, $HEARTH_DATA, default ./.hearth).
    """


@cli.command()
@output_option
def version(output: str) -> None:
    """Print the version of this Hearth installation.

    \b
    Example:
      hearth version -o json
    """
    if output == "json":
        from hearth.cli.render import emit_json

        emit_json({"version": __version__, "python": platform.python_version()})
    else:
        click.echo(f"hearth {__version__} (Python {platform.python_version()})")


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point (``hearth``); also ``python -m hearth.cli``."""
    try:
        cli.main(args=argv, prog_name="hearth")
    except KeyboardInterrupt:  # pragma: no cover - interactive only
        sys.exit(130)


__all__ = ["cli", "main"]
