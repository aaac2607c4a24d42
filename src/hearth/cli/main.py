"""The ``hearth`` command: the root group, ``hearth version`` and the entry point.

Each command group lives in its own module (jobs, status, blobs, serve); this one
only wires them together, so ``hearth --help`` reads as the table of contents.
"""

from __future__ import annotations

import platform
import sys

import click

from hearth import __version__
from hearth.cli.blobs import blob
from hearth.cli.common import HearthGroup, output_option
from hearth.cli.jobs import cancel, retry, submit
from hearth.cli.render import emit_json
from hearth.cli.security import ca, enroll, token, whoami
from hearth.cli.serve import coordinator, up, worker
from hearth.cli.status import nodes, status

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(cls=HearthGroup, context_settings=CONTEXT)
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
        emit_json({"version": __version__, "python": platform.python_version()})
    else:
        click.echo(f"hearth {__version__} (Python {platform.python_version()})")


for command in (up, coordinator, worker, submit, status, cancel, retry, nodes, blob, enroll,
                ca, token, whoami):
    cli.add_command(command)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point (``hearth``); also ``python -m hearth.cli``."""
    try:
        cli.main(args=argv, prog_name="hearth")
    except KeyboardInterrupt:  # pragma: no cover - interactive only
        sys.exit(130)


__all__ = ["cli", "main"]
