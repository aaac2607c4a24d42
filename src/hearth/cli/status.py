"""``hearth status`` and ``hearth nodes``: read-only views of jobs and workers.

A list, one job with its history, or a live table fed by the coordinator's watch
feed. ``-o json`` prints the same data for scripts (with ``--watch``, one event per
line as it happens).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click
from rich.console import RenderableType

from hearth.cli.common import (
    Conn,
    client_options,
    closing_client,
    output_option,
    stdout_console,
)
from hearth.cli.follow import TERMINAL, live
from hearth.cli.render import emit_json, job_with_history, jobs_table, nodes_table, to_jsonable
from hearth.cli.types import LABEL, labels_of

STATES = ("queued", "leased", "succeeded", "failed", "dead", "cancelled")


def _print_events(client: Any, **filters: Any) -> None:
    """``--watch -o json``: the event feed as JSON lines, until Ctrl-C."""
    for event in client.watch(**filters):
        sys.stdout.write(json.dumps(to_jsonable(event), ensure_ascii=False) + "\n")
        sys.stdout.flush()


@click.command()
@click.option("--job", "job_id", metavar="ID", help="Show one job in detail, with its history.")
@click.option("--namespace", default=None, help="Only jobs of this namespace.")
@click.option("--kind", "kinds", multiple=True, help="Only jobs of this kind (repeatable).")
@click.option("--state", "states", multiple=True, type=click.Choice(STATES),
              help="Only jobs in this state (repeatable).")
@click.option("--label", "labels", multiple=True, type=LABEL,
              help="Only jobs with this label key=value (repeatable).")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True,
              help="Show at most this many jobs, newest first.")
@click.option("--watch", is_flag=True, help="Keep the view live until Ctrl-C.")
@output_option
@client_options
def status(conn: Conn, job_id: str | None, namespace: str | None, kinds: tuple[str, ...],
           states: tuple[str, ...], labels: tuple[tuple[str, str], ...], limit: int,
           watch: bool, output: str) -> None:
    """List jobs (newest first), or show one job and its history with --job.

    \b
    Examples:
      hearth status --state dead --kind img2pdf
      hearth status --job 01J9Z8K2QW3E4R5T6Y7U8I9O0P -o json
      hearth status --watch
    """
    label_filter = labels_of(labels)
    with closing_client(conn) as client:
        if job_id is not None:
            if output == "json" and watch:
                _print_events(client, job_id=job_id)
            elif output == "json":
                emit_json({"job": client.get(job_id), "events": client.events(job_id)})
            elif watch:
                _live_job(conn, client, job_id)
            else:
                stdout_console().print(job_with_history(client.get(job_id),
                                                        client.events(job_id), time.time()))
            return

        def page() -> Any:
            return client.list_jobs(namespace=namespace, kinds=kinds, states=states,
                                    labels=label_filter, limit=limit)

        watch_filters = {"namespace": namespace, "kind": kinds[0] if len(kinds) == 1 else None}
        if output == "json" and watch:
            _print_events(client, **watch_filters)
        elif output == "json":
            emit_json(page().jobs)
        elif watch:
            def render() -> tuple[RenderableType, bool]:
                return jobs_table(page().jobs, time.time()), False

            _live(conn, render, watch_filters)
        else:
            stdout_console().print(jobs_table(page().jobs, time.time()))


def _live(conn: Conn, render: Any, filters: dict[str, Any]) -> None:
    # The feed gets its own client: it blocks on a stream in another thread.
    with closing_client(conn) as feed_client:
        try:
            live(stdout_console(), render, lambda: feed_client.watch(**filters))
        except KeyboardInterrupt:
            pass


def _live_job(conn: Conn, client: Any, job_id: str) -> None:
    def render() -> tuple[RenderableType, bool]:
        job = client.get(job_id)
        return job_with_history(job, client.events(job_id), time.time()), (
            job.state in TERMINAL)

    _live(conn, render, {"job_id": job_id})


@click.command()
@output_option
@client_options
def nodes(conn: Conn, output: str) -> None:
    """List the worker nodes known to the coordinator: kinds, load and last contact.

    \b
    Example:
      hearth nodes -o json
    """
    with closing_client(conn) as client:
        found = client.nodes()
    if output == "json":
        emit_json(found)
    else:
        stdout_console().print(nodes_table(found, time.time()))


__all__ = ["nodes", "status"]
