"""Turning the client's Python arguments into :mod:`hearth.wire` request models.

Checks that need no server (both payload forms given, a malformed digest, a job id that
could escape its URL path) fail here with :class:`hearth.errors.ValidationError`, before
any request is sent; pydantic's errors are translated into one sentence. It never
restates a JSON shape: every body is a wire model.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any, TypeVar
from urllib.parse import quote

import pydantic

from hearth.domain.validation import check_digest
from hearth.errors import ValidationError
from hearth.wire import BlobOut, BlobRefIn, JobSubmit

BlobArg = str | tuple[str, str] | BlobRefIn | BlobOut


M = TypeVar("M", bound=pydantic.BaseModel)


def _invalid(exc: pydantic.ValidationError, what: str) -> ValidationError:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or what
    message = str(first["msg"])
    return ValidationError(f"{where} is not valid: {message[:1].lower()}{message[1:]}")


def build_model(cls: type[M], **fields: Any) -> M:
    """Validate fields into a wire model, as a :class:`hearth.errors.ValidationError`."""
    try:
        return cls(**fields)
    except pydantic.ValidationError as exc:
        raise _invalid(exc, cls.__name__) from None


def blob_ref(blob: BlobArg) -> BlobRefIn:
    if isinstance(blob, BlobRefIn):
        return blob
    if isinstance(blob, BlobOut):
        return BlobRefIn(digest=blob.digest)
    if isinstance(blob, tuple):
        name, digest = blob
        return BlobRefIn(digest=check_digest(digest), name=name)
    return BlobRefIn(digest=check_digest(blob))


def job_submit(item: JobSubmit | Mapping[str, Any]) -> JobSubmit:
    if isinstance(item, JobSubmit):
        return item
    if not isinstance(item, Mapping):
        raise ValidationError(
            f"submit_many takes JobSubmit models or dicts, not {type(item).__name__}")
    try:
        return JobSubmit.model_validate(item)
    except pydantic.ValidationError as exc:
        raise _invalid(exc, "job") from None


def b64(data: bytes) -> str:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ValidationError(f"data must be bytes, not {type(data).__name__}")
    return base64.b64encode(bytes(data)).decode()


def job_path(job_id: str) -> str:
    if not isinstance(job_id, str) or not job_id or len(job_id) > 200:
        raise ValidationError(f"{job_id!r} is not a job id")
    return quote(job_id, safe="")


__all__ = ["BlobArg", "b64", "blob_ref", "build_model", "job_path", "job_submit"]
