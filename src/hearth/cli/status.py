"""``hearth status`` and ``hearth nodes``: read-only views of jobs and workers.

A list, one job with its history, or a live view fed by the coordinator's watch
feed. ``-o json`` prints the same data for scripts (with ``--watch``, one event per
line as it happens). Watching runs on the async client under ``asyncio.run`` so that
Ctrl-C, the normal way to end a watch, closes the stream cleanly and exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Awaitable, Callable
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
Render = Callable[[], Awaitable[tuple[RenderableType, bool]]]


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
@click.option("--watch", is_flag=True,
              help="Keep the view live until Ctrl-C; with -o json, print each new event as "
                   "a JSON line (with --job: its whole history first).")
@output_option
@client_options
def status(conn: Conn, job_id: str | None, namespace: str | None, kinds: tuple[str, ...],
           states: tuple[str, ...], labels: tuple[tuple[str, str], ...], limit: int,
           watch: bool, output: str) -> None:
    """List jobs (newest first), or show one job and its history with --job.

    \b
    Examples:
      hearth status --state dead --kind img2pdf
      hearth status --job j_019ab5f3c2e1a8f0d4b7c6e5a4f3b2c1 -o json
      hearth status --watch
    """
    filters: dict[str, Any] = {"namespace": namespace, "kinds": kinds, "states": states,
                               "labels": labels_of(labels), "limit": limit}
    if watch:
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how a watch ends
            asyncio.run(_watch(conn, job_id, filters, output))
        return
    with closing_client(conn) as client:
        if job_id is not None:
            job, events = client.get(job_id), client.events(job_id)
            if output == "json":
                emit_json({"job": job, "events": events})
            else:
                stdout_console().print(job_with_history(job, events, time.time()))
            return
        jobs = client.list_jobs(**filters).jobs
    if output == "json":
        emit_json(jobs)
    else:
        stdout_console().print(jobs_table(jobs, time.time()))


async def _watch(conn: Conn, job_id: str | None, filters: dict[str, Any], output: str) -> None:
    from hearth.client import AsyncClient

    kinds = filters["kinds"]
    feed_filters: dict[str, Any] = (
        {"job_id": job_id} if job_id is not None else
        {"namespace": filters["namespace"], "kind": kinds[0] if len(kinds) == 1 else None})
    async with AsyncClient(conn.url, token=conn.token, data=conn.data) as client:
        if output == "json":
            async for event in client.watch(**feed_filters):
                sys.stdout.write(json.dumps(to_jsonable(event), ensure_ascii=False) + "\n")
                sys.stdout.flush()
            return
        render: Render
        if job_id is not None:
            async def render() -> tuple[RenderableType, bool]:
                job = await client.get(job_id)
                history = job_with_history(job, await client.events(job_id), time.time())
                return history, job.state in TERMINAL
        else:
            async def render() -> tuple[RenderableType, bool]:
                page = await client.list_jobs(**filters)
                return jobs_table(page.jobs, time.time()), False

        await live(stdout_console(), render, client.watch(**feed_filters))


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
