"""What a handler gives back, and how it becomes an outcome on the wire.

Pure functions: a handler's return value is split into a JSON payload, raw bytes and
output blobs to upload (:func:`split_return`); an exception becomes an
:class:`hearth.wire.ErrorIn` (:func:`error_in`). Results are JSON or bytes, never a
pickle: a value that is not JSON is reported as a non-retryable failure, not guessed at.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from hearth.wire import ErrorIn

#: The wire limit of ``ErrorIn.message``.
MAX_MESSAGE = 16_384

BlobContent = bytes | bytearray | memoryview | str | os.PathLike[str]


class NonRetryable(Exception):
    """Raise from a handler to fail the job at once, with no further attempts."""


Fatal = NonRetryable


class JobCancelled(Exception):
    """Raised by :meth:`JobContext.raise_if_cancelled` once the job must stop."""


@dataclass(frozen=True, slots=True)
class Output:
    """A result with output blobs: ``payload`` (JSON) or ``data`` (bytes), plus
    ``blobs`` mapping a name to bytes or a file path; each blob is uploaded
    (content-addressed) and referenced by name in the job's result."""

    payload: Any = None
    data: bytes | None = None
    blobs: Mapping[str, BlobContent] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Split:
    """A return value taken apart: the ``ResultIn`` fields and the blobs to upload."""

    fields: dict[str, Any]
    blobs: dict[str, BlobContent]


class NotJSONError(TypeError):
    """The handler returned something that is neither JSON, bytes nor an Output."""


def _json_fields(value: Any) -> dict[str, Any]:
    try:
        orjson.dumps(value)
    except TypeError as exc:
        raise NotJSONError(
            f"the handler returned a {type(value).__name__}, which is not JSON ({exc}); "
            "return JSON values, bytes or hearth.worker.Output"
        ) from None
    return {"payload": value}


def _bytes_fields(data: bytes | bytearray | memoryview) -> dict[str, Any]:
    return {"payload_b64": base64.b64encode(bytes(data)).decode()} if data else {}


def split_return(value: Any) -> Split:
    """The result fields for a handler's return value. Raises :class:`NotJSONError`."""
    if isinstance(value, Output):
        if value.payload is not None and value.data is not None:
            raise NotJSONError("an Output has either payload (JSON) or data (bytes), not both")
        if value.data is not None:
            fields = _bytes_fields(value.data)
        elif value.payload is not None:
            fields = _json_fields(value.payload)
        else:
            fields = {}
        blobs = dict(value.blobs)
        for name, content in blobs.items():
            if not isinstance(content, bytes | bytearray | memoryview | str | os.PathLike):
                raise NotJSONError(
                    f"output blob {name!r} is a {type(content).__name__}; give bytes or a "
                    "file path")
            if not name or "/" in name or "\x00" in name or len(name) > 255:
                raise NotJSONError(f"output blob name {name[:40]!r} is not valid: 1-255 "
                                   "characters, no '/' or NUL")
        return Split(fields, blobs)
    if isinstance(value, bytes | bytearray | memoryview):
        return Split(_bytes_fields(value), {})
    return Split(_json_fields(value), {})


def blob_source(content: BlobContent) -> bytes | Path:
    """Bytes stay bytes; a str or PathLike is a file to upload."""
    if isinstance(content, bytes | bytearray | memoryview):
        return bytes(content)
    return Path(content)


def error_in(exc: BaseException) -> ErrorIn:
    """The failure an exception reports: its message and class name; retryable unless
    it is a :class:`NonRetryable` or the handler returned an unusable value."""
    kind = type(exc).__name__
    message = str(exc) or f"the handler raised {kind} without a message"
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 20] + " ... (truncated)"
    retryable = not isinstance(exc, NonRetryable | NotJSONError)
    return ErrorIn(message=message, type=kind[:200], retryable=retryable)


def timed_out(seconds: float) -> ErrorIn:
    return ErrorIn(
        message=f"the handler timed out: it ran longer than its {seconds:g} s timeout",
        type="Timeout", retryable=True)


__all__ = [
    "Fatal",
    "JobCancelled",
    "NonRetryable",
    "NotJSONError",
    "Output",
    "Split",
    "blob_source",
    "error_in",
    "split_return",
    "timed_out",
]
