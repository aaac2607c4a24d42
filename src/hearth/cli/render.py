"""How the CLI shows things: tables, ages, sizes and JSON, all in one place.

Everything here is a pure function of wire models and ``now`` (passed in, never read
from a clock here), so the rendering is tested without a coordinator. Commands call
:func:`emit_json` for ``-o json`` and the ``*_table`` builders for people.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel
from rich.console import Group
from rich.table import Table
from rich.text import Text

from hearth.wire import BlobRefOut, EventOut, JobOut, NodeOut

STATE_STYLES = {
    "queued": "cyan",
    "leased": "yellow",
    "succeeded": "green",
    "failed": "magenta",
    "dead": "bold red",
    "cancelled": "dim",
    "active": "green",
    "stale": "yellow",
    "gone": "dim",
}


def to_jsonable(value: Any) -> Any:
    """Wire models (and lists/dicts of them) as plain JSON values."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_none=False)
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    return value


def emit_json(value: Any) -> None:
    """Print one JSON document on stdout: what ``-o json`` promises to scripts."""
    sys.stdout.write(json.dumps(to_jsonable(value), indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def format_age(seconds: float) -> str:
    """``42s``, ``5m``, ``3h``, ``2d``: coarse, like ``kubectl get``."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{int(seconds)}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m"
    if seconds < 86400:
        return f"{int(seconds // 3600)}h"
    return f"{int(seconds // 86400)}d"


def format_size(size: int) -> str:
    """``512 B``, ``1.5 KiB``, ``3.0 MiB``."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def state_text(state: str) -> Text:
    return Text(state, style=STATE_STYLES.get(state, ""))


def job_note(job: JobOut, width: int = 60) -> str:
    """The one thing worth knowing in a list: the error, the progress, or nothing."""
    if job.state in ("failed", "dead") and job.last_error is not None:
        note = job.last_error.message
    elif job.cancel_requested and job.state == "leased":
        note = "cancel requested"
    elif job.progress is not None and job.state == "leased":
        parts = []
        if job.progress.percent is not None:
            parts.append(f"{job.progress.percent:.0f}%")
        if job.progress.message:
            parts.append(job.progress.message)
        note = " ".join(parts)
    else:
        note = ""
    note = " ".join(note.split())
    return note if len(note) <= width else note[: width - 1] + "…"


def jobs_table(jobs: Sequence[JobOut], now: float) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("ID", "KIND", "STATE", "ATTEMPT", "PRIORITY", "AGE", "WORKER",
                   "PROGRESS/ERROR"):
        table.add_column(column, no_wrap=column != "PROGRESS/ERROR")
    for job in jobs:
        attempts = f"{job.attempt}/{job.max_attempts}" if job.max_attempts else str(job.attempt)
        table.add_row(job.id, job.kind, state_text(job.state), attempts, str(job.priority),
                      format_age(now - job.created_at), job.worker or "-", job_note(job))
    return table


def _when(at: float | None, now: float) -> str:
    if at is None:
        return "-"
    delta = now - at
    return f"{format_age(delta)} ago" if delta >= 0 else f"in {format_age(-delta)}"


def _payload_summary(payload: Any, payload_b64: str | None, payload_type: str) -> str:
    if payload_type == "json":
        text = json.dumps(payload, ensure_ascii=False)
        return text if len(text) <= 200 else text[:199] + "…"
    if payload_b64 is None:
        return "(empty)"
    size = len(payload_b64) * 3 // 4 - payload_b64[-2:].count("=")
    return f"({format_size(size)} of bytes)"


def blobs_table(blobs: Iterable[BlobRefOut]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("DIGEST", "NAME", "SIZE"):
        table.add_column(column, no_wrap=True)
    for blob in blobs:
        table.add_row(blob.digest, blob.name or "-", format_size(blob.size))
    return table


def job_detail(job: JobOut, now: float) -> Table:
    """A two-column description of one job, for ``hearth status --job``."""
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    attempts = f"{job.attempt} of {job.max_attempts or 'unlimited'}"
    rows: list[tuple[str, str | Text]] = [
        ("id", job.id),
        ("kind", job.kind),
        ("namespace", job.namespace),
        ("state", state_text(job.state + (" (cancel requested)" if job.cancel_requested
                                          else ""))),
        ("attempt", attempts),
        ("priority", str(job.priority)),
        ("created", _when(job.created_at, now)),
        ("run at", _when(job.run_at, now)),
        ("finished", _when(job.finished_at, now)),
        ("worker", job.worker or "-"),
        ("payload", _payload_summary(job.payload, job.payload_b64, job.payload_type)),
    ]
    if job.labels:
        rows.append(("labels", ", ".join(f"{k}={v}" for k, v in sorted(job.labels.items()))))
    if job.input_blobs:
        rows.append(("inputs", ", ".join(f"{b.name or '-'} {b.digest[:12]}"
                                         for b in job.input_blobs)))
    if job.progress is not None and job.state == "leased":
        rows.append(("progress", job_note(job, width=200)))
    if job.last_error is not None:
        rows.append(("last error", f"{job.last_error.type}: {job.last_error.message}"))
    if job.result is not None:
        rows.append(("result", _payload_summary(job.result.payload, job.result.payload_b64,
                                                job.result.payload_type)))
        rows.extend(("output", f"{b.name or '-'} {b.digest} {format_size(b.size)}")
                    for b in job.result.blobs)
    for key, value in rows:
        table.add_row(key, value)
    return table


def event_detail(event: EventOut) -> str:
    data = event.data
    if "error" in data and isinstance(data["error"], dict):
        return str(data["error"].get("message", ""))
    if "message" in data or "percent" in data:
        percent = data.get("percent")
        return " ".join(p for p in (f"{percent:.0f}%" if isinstance(percent, int | float)
                                    else "", str(data.get("message", ""))) if p)
    return ", ".join(f"{k}={v}" for k, v in data.items() if not isinstance(v, dict | list))


def events_table(events: Sequence[EventOut], now: float) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("SEQ", "WHEN", "EVENT", "STATE", "ATTEMPT", "WORKER", "DETAIL"):
        table.add_column(column, no_wrap=column != "DETAIL")
    for event in events:
        table.add_row(str(event.seq), _when(event.at, now), event.type,
                      state_text(event.state), str(event.attempt), event.worker or "-",
                      event_detail(event))
    return table


def job_with_history(job: JobOut, events: Sequence[EventOut], now: float) -> Group:
    return Group(job_detail(job, now), Text(""), Text("history", style="bold"),
                 events_table(events, now))


def nodes_table(nodes: Sequence[NodeOut], now: float) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("NAME", "KINDS", "HOST", "VERSION", "IN-FLIGHT", "LAST SEEN", "STATUS"):
        table.add_column(column, no_wrap=column != "KINDS")
    for node in nodes:
        table.add_row(node.name, ", ".join(node.kinds), node.host or "-", node.version or "-",
                      f"{node.in_flight}/{node.concurrency}", _when(node.last_seen, now),
                      state_text(node.status))
    return table


__all__ = [
    "blobs_table",
    "emit_json",
    "event_detail",
    "events_table",
    "format_age",
    "format_size",
    "job_detail",
    "job_note",
    "job_with_history",
    "jobs_table",
    "nodes_table",
    "state_text",
    "to_jsonable",
]
