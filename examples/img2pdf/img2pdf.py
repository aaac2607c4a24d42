"""The ``img2pdf`` handler: input blobs (PNG/JPEG) in, one PDF output blob out.

Run it with ``hearth worker --import examples.img2pdf.img2pdf`` from the repository
root (see README.md). The conversion itself is :mod:`examples.img2pdf.convert`; this
module only fetches the inputs, runs the conversion off the event loop, and names the
output. Unreadable input fails the job at once: retrying would not make it an image.
"""

from __future__ import annotations

import asyncio
from typing import Any

from hearth.worker import JobContext, NonRetryable, Output, Worker

from .convert import NotAnImage, images_to_pdf

KIND = "img2pdf"


def _output_name(payload: Any) -> str:
    name = payload.get("name") if isinstance(payload, dict) else None
    if name is None:
        return "images.pdf"
    if not isinstance(name, str) or not name or "/" in name or len(name) > 200:
        raise NonRetryable(f"output name {name!r} is not a file name: give e.g. "
                           '{"name": "scan.pdf"}')
    return name if name.lower().endswith(".pdf") else name + ".pdf"


async def img2pdf(ctx: JobContext) -> Output:
    """Convert the job's input blobs, in order, into one PDF named by ``payload.name``."""
    name = _output_name(ctx.payload)
    refs = ctx.input_blobs
    if not refs:
        raise NonRetryable("img2pdf needs images: attach them with "
                           "`hearth submit --kind img2pdf --blob a.png --blob b.jpg`")
    images = []
    for index, ref in enumerate(refs):
        ctx.raise_if_cancelled()
        images.append((ref.name or ref.digest, await ctx.read_blob(ref.digest)))
        ctx.report_progress(50.0 * (index + 1) / len(refs), f"fetched {ref.name or ref.digest}")
    try:
        pdf = await asyncio.to_thread(images_to_pdf, images)
    except NotAnImage as exc:
        raise NonRetryable(str(exc)) from None
    ctx.report_progress(100.0, f"wrote {name}")
    return Output(payload={"pages": len(images), "name": name}, blobs={name: pdf})


def register(worker: Worker) -> None:
    """Add the img2pdf handler to ``worker`` (used by ``hearth worker --import``)."""
    worker.handler(KIND)(img2pdf)


__all__ = ["KIND", "img2pdf", "register"]
