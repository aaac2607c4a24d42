"""``hearth blob put`` / ``hearth blob get``: move files in and out of the blob store.

Blobs are content-addressed (SHA-256), so ``put`` prints the digest that jobs and
``get`` refer to. Downloads stream to a file or to stdout.
"""

from __future__ import annotations

import sys

import click

from hearth.cli.common import Conn, HearthGroup, client_options, closing_client, output_option
from hearth.cli.render import emit_json


@click.group(cls=HearthGroup)
def blob() -> None:
    """Upload and download content-addressed blobs (job inputs and outputs).

    \b
    Examples:
      hearth blob put photo.jpg            # prints the SHA-256 digest
      hearth blob get <digest> -o out.pdf
    """


@blob.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, readable=True))
@output_option
@client_options
def put(conn: Conn, path: str, output: str) -> None:
    """Upload a file and print its digest (SHA-256), to pass to jobs.

    \b
    Example:
      hearth blob put scan.png
    """
    with closing_client(conn) as client:
        stored = client.put_blob(path)
    if output == "json":
        emit_json(stored)
    else:
        click.echo(stored.digest)


@blob.command()
@click.argument("digest")
@click.option("-o", "--output", "target", default="-", show_default=True, metavar="FILE|-",
              help="Write to FILE, or to stdout with -.")
@client_options
def get(conn: Conn, digest: str, target: str) -> None:
    """Download a blob by digest to a file or stdout.

    \b
    Example:
      hearth blob get 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 -o out.pdf
    """
    with closing_client(conn) as client:
        if target == "-":
            for block in client.stream_blob(digest):
                sys.stdout.buffer.write(block)
            sys.stdout.flush()
        else:
            client.download_blob(digest, target)


__all__ = ["blob"]
