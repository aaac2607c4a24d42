"""``hearth submit``, ``hearth cancel`` and ``hearth retry``: commands that change jobs.

They translate options into one client call each and print the answer; every rule
(valid kind, limits, legal transitions) is the coordinator's, so its error sentence
is what the user sees.
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any

import click

from hearth.cli.common import (
    CliError,
    Conn,
    client_options,
    closing_client,
    error_message,
    output_option,
    stderr_console,
    stdout_console,
)
from hearth.cli.follow import TERMINAL, wait_with_progress
from hearth.cli.render import blobs_table, emit_json, state_text
from hearth.cli.types import BACKOFF, DURATION, LABEL, labels_of
from hearth.errors import HearthError
from hearth.wire import BackoffIn, BlobRefIn, JobOut


def _payload(payload_text: str | None, json_text: str | None) -> dict[str, Any]:
    if payload_text is not None and json_text is not None:
        raise click.UsageError("give --payload (bytes) or --json (a JSON value), not both")
    if json_text is not None:
        try:
            return {"payload": json.loads(json_text)}
        except ValueError as exc:
            raise click.BadParameter(f"is not valid JSON ({exc}); quote it for your shell, "
                                     """e.g. --json '{"seconds": 3}'""",
                                     param_hint="'--json'") from None
    if payload_text is not None:
        return {"data": payload_text.encode("utf-8")}
    return {}


def _backoff(spec: tuple[float, float | None] | None) -> dict[str, float] | None:
    if spec is None:
        return None
    initial, maximum = spec
    if maximum is None:
        maximum = max(initial, float(BackoffIn.model_fields["max"].default))
    return {"initial": initial, "max": maximum}


def print_result(job: JobOut) -> None:
    """The result for people: bytes raw on stdout, JSON as JSON, output blobs listed.

    Output blobs go to stdout when there is no payload to keep apart from them,
    otherwise to stderr, so ``hearth submit ... --wait > out.bin`` stays exact.
    """
    result = job.result
    if result is None:
        return
    has_payload = result.payload_type == "json" or bool(result.payload_b64)
    if result.payload_type == "json":
        sys.stdout.write(json.dumps(result.payload, ensure_ascii=False) + "\n")
    elif result.payload_b64:
        sys.stdout.buffer.write(base64.b64decode(result.payload_b64))
    sys.stdout.flush()
    if result.blobs:
        console = stderr_console() if has_payload else stdout_console()
        console.print(blobs_table(result.blobs))


def ended_badly(job: JobOut) -> str:
    """The one line explaining why a waited-for job did not succeed."""
    attempts = f"after {job.attempt} attempt{'s' if job.attempt != 1 else ''}"
    why = f": {job.last_error.message}" if job.last_error is not None else ""
    return f"job {job.id} ended {job.state} {attempts}{why}"


@click.command()
@click.option("--kind", required=True, help="Handler kind to run, e.g. echo.")
@click.option("--payload", "payload_text", metavar="TEXT",
              help="Payload as bytes (the text, UTF-8 encoded).")
@click.option("--json", "json_text", metavar="JSON", help="Payload as a JSON value.")
@click.option("--blob", "blob_paths", multiple=True, metavar="PATH",
              type=click.Path(exists=True, dir_okay=False, readable=True),
              help="Upload a file and attach it as an input blob named after the file "
                   "(repeatable).")
@click.option("--namespace", default="default", show_default=True)
@click.option("--priority", type=int, default=0, show_default=True,
              help="Higher runs first; equal priorities run in submit order.")
@click.option("--delay", type=DURATION, default=0.0, metavar="DURATION",
              help="Wait this long before the job is due, e.g. 30s or 5m.")
@click.option("--max-attempts", type=click.IntRange(min=0), default=3, show_default=True,
              help="Attempts before the job is dead; 0 means unlimited.")
@click.option("--backoff", "backoff_spec", type=BACKOFF, default=None,
              help="Retry delay: initial and optional maximum, e.g. 1s or 500ms,30s "
                   "[default 1s,5m, doubling].")
@click.option("--timeout", type=DURATION, default=None, metavar="DURATION",
              help="Execution timeout of one attempt, e.g. 10m.")
@click.option("--lease-ttl", type=DURATION, default="30s", metavar="DURATION",
              show_default=True, help="How long a lease lasts without a heartbeat.")
@click.option("--idempotency-key", default=None,
              help="Submitting the same key again returns the existing job.")
@click.option("--label", "labels", multiple=True, type=LABEL,
              help="A label key=value (repeatable).")
@click.option("--wait", is_flag=True, help="Wait for the job, show its progress, print "
                                           "its result.")
@click.option("--timeout-wait", type=DURATION, default=None, metavar="DURATION",
              help="With --wait: give up waiting after this long (the job keeps running).")
@output_option
@client_options
def submit(conn: Conn, kind: str, payload_text: str | None, json_text: str | None,
           blob_paths: tuple[str, ...], namespace: str, priority: int, delay: float,
           max_attempts: int, backoff_spec: tuple[float, float | None] | None,
           timeout: float | None, lease_ttl: float, idempotency_key: str | None,
           labels: tuple[tuple[str, str], ...], wait: bool, timeout_wait: float | None,
           output: str) -> None:
    """Submit a job and print its id; with --wait, follow it and print its result.

    \b
    Examples:
      hearth submit --kind echo --payload hi --wait      # prints: hi
      hearth submit --kind sleep --json '{"seconds": 5}' --wait
      hearth submit --kind img2pdf --blob a.png --blob b.jpg --wait
    """
    if timeout_wait is not None and not wait:
        raise click.UsageError("--timeout-wait only makes sense with --wait")
    payload = _payload(payload_text, json_text)
    with closing_client(conn) as client:
        blobs = []
        for path in blob_paths:
            stored = client.put_blob(path)
            blobs.append(BlobRefIn(digest=stored.digest, name=Path(path).name))
        job: JobOut = client.submit(
            kind, **payload, namespace=namespace, blobs=blobs, priority=priority,
            delay=delay, max_attempts=max_attempts, backoff=_backoff(backoff_spec),
            lease_ttl=lease_ttl, timeout=timeout, idempotency_key=idempotency_key,
            labels=labels_of(labels))
        if not wait:
            if output == "json":
                emit_json(job)
            else:
                click.echo(job.id)
            return
        try:
            job = wait_with_progress(client, job, timeout_wait, stderr_console())
        except KeyboardInterrupt:
            raise CliError(f"stopped waiting for job {job.id}, which keeps going; follow it "
                           f"with `hearth status --job {job.id} --watch`",
                           exit_code=130) from None
        unserved = job.state == "queued" and not any(kind in n.kinds for n in client.nodes())
    if output == "json":
        emit_json(job)
    elif job.state == "succeeded":
        print_result(job)
    if unserved:
        raise CliError(f"job {job.id} is still queued: no worker has registered kind "
                       f"{kind!r}; start one with `hearth worker --import MODULE`")
    if job.state not in TERMINAL:
        raise CliError(f"job {job.id} is still {job.state} after waiting; follow it with "
                       f"`hearth status --job {job.id} --watch`")
    if job.state != "succeeded":
        raise CliError(ended_badly(job))


def _act(conn: Conn, ids: tuple[str, ...], output: str, action: str) -> None:
    """Apply cancel/retry to each id; report each; exit 1 if any failed."""
    results: list[JobOut] = []
    failed = False
    console = stdout_console()
    with closing_client(conn) as client:
        for job_id in ids:
            try:
                job = getattr(client, action)(job_id)
            except HearthError as exc:
                failed = True
                click.echo(f"error: {' '.join(error_message(exc).split())}", err=True)
                continue
            results.append(job)
            if output != "json":
                note = " (cancel requested; the worker stops it)" if (
                    job.cancel_requested and job.state == "leased") else ""
                console.print(job.id, state_text(job.state), note, sep="  ")
    if output == "json":
        emit_json(results)
    if failed:
        raise SystemExit(1)


@click.command()
@click.argument("ids", nargs=-1, required=True, metavar="ID...")
@output_option
@client_options
def cancel(conn: Conn, ids: tuple[str, ...], output: str) -> None:
    """Cancel jobs: queued ones at once, running ones when their worker next checks in.

    \b
    Example:
      hearth cancel j_019ab5f3c2e1a8f0d4b7c6e5a4f3b2c1
    """
    _act(conn, ids, output, "cancel")


@click.command()
@click.argument("ids", nargs=-1, required=True, metavar="ID...")
@output_option
@client_options
def retry(conn: Conn, ids: tuple[str, ...], output: str) -> None:
    """Send dead (or failed) jobs back to the queue with a fresh attempt budget.

    \b
    Example:
      hearth retry j_019ab5f3c2e1a8f0d4b7c6e5a4f3b2c1
    """
    _act(conn, ids, output, "retry")


__all__ = ["cancel", "ended_badly", "print_result", "retry", "submit"]
