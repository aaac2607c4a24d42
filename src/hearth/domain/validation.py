"""Input rules for names, digests and job specs. Pure; raises ``ValidationError``.

Every rule is checked before anything is stored, so bad input changes nothing.
"""

from __future__ import annotations

import math
import re

from hearth.domain.jobs import BlobRef, JobSpec
from hearth.errors import PayloadTooLarge, ValidationError

KIND_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
NAMESPACE_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
DIGEST_RE = re.compile(r"^[0-9a-f]{64}$")
LABEL_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$")
NODE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")

MAX_LABELS = 32
#: Attempts a job may be given (fits every store's integer column).
MAX_ATTEMPTS = 1_000_000
MAX_LABEL_VALUE = 256
MAX_IDEMPOTENCY_KEY = 200
MAX_PRIORITY = 1_000_000
#: Ten years: longer than any sane delay, lease or timeout; keeps floats finite.
MAX_SECONDS = 10 * 365 * 24 * 3600.0
DEFAULT_MAX_PAYLOAD = 1024 * 1024


def check_kind(kind: str) -> str:
    if not isinstance(kind, str) or not KIND_RE.fullmatch(kind):
        raise ValidationError(
            f"job kind {kind!r} is not valid: use 1-64 characters of a-z, 0-9, '.', '_' "
            "or '-', starting with a letter or digit"
        )
    return kind


def check_namespace(namespace: str) -> str:
    if not isinstance(namespace, str) or not NAMESPACE_RE.fullmatch(namespace):
        raise ValidationError(
            f"namespace {namespace!r} is not valid: use 1-63 characters of a-z, 0-9 or '-', "
            "starting with a letter or digit"
        )
    return namespace


def check_digest(digest: str) -> str:
    """A blob digest is exactly 64 lowercase hex characters, nothing else (no paths)."""
    if not isinstance(digest, str) or not DIGEST_RE.fullmatch(digest):
        shown = digest if isinstance(digest, str) and len(digest) <= 80 else "<value>"
        raise ValidationError(
            f"blob digest {shown!r} is not valid: a digest is the 64 lowercase hex "
            "characters of a SHA-256"
        )
    return digest


def check_node_name(name: str) -> str:
    if not isinstance(name, str) or not NODE_NAME_RE.fullmatch(name):
        raise ValidationError(
            f"node name {name!r} is not valid: use 1-63 letters, digits, '.', '_' or '-'"
        )
    return name


def _check_seconds(name: str, value: float, *, allow_zero: bool) -> None:
    if not isinstance(value, int | float) or not math.isfinite(value):
        raise ValidationError(f"{name} must be a finite number of seconds")
    if value < 0 or (value == 0 and not allow_zero):
        least = "0 or more" if allow_zero else "more than 0"
        raise ValidationError(f"{name} must be {least} seconds")
    if value > MAX_SECONDS:
        raise ValidationError(f"{name} must be at most {MAX_SECONDS:.0f} seconds (ten years)")


def check_blob_refs(refs: tuple[BlobRef, ...]) -> None:
    for ref in refs:
        check_digest(ref.digest)
        if ref.size < 0:
            raise ValidationError("blob size must not be negative")
        if len(ref.name) > 255 or "/" in ref.name or "\x00" in ref.name:
            raise ValidationError(f"blob name {ref.name[:40]!r} is not valid: at most 255 "
                                  "characters, no '/' or NUL")


def check_spec(spec: JobSpec, *, max_payload: int = DEFAULT_MAX_PAYLOAD) -> JobSpec:
    """Validate a spec completely; return it unchanged or raise."""
    check_kind(spec.kind)
    check_namespace(spec.namespace)
    if len(spec.payload) > max_payload:
        raise PayloadTooLarge(
            f"payload is {len(spec.payload)} bytes; the limit is {max_payload} bytes. "
            "Put large inputs in a blob (hearth blob put) and pass its digest instead"
        )
    if spec.payload_type not in ("json", "bytes"):
        raise ValidationError("payload_type must be 'json' or 'bytes'")
    check_blob_refs(spec.input_blobs)
    if (not isinstance(spec.priority, int) or isinstance(spec.priority, bool)
            or abs(spec.priority) > MAX_PRIORITY):
        raise ValidationError(f"priority must be a whole number between -{MAX_PRIORITY} "
                              f"and {MAX_PRIORITY}")
    _check_seconds("delay", spec.delay, allow_zero=True)
    if spec.run_at is not None and (
        not isinstance(spec.run_at, int | float) or not math.isfinite(spec.run_at)
        or spec.run_at < 0
    ):
        raise ValidationError("run_at must be a time in epoch seconds")
    if (not isinstance(spec.max_attempts, int) or isinstance(spec.max_attempts, bool)
            or not 0 <= spec.max_attempts <= MAX_ATTEMPTS):
        raise ValidationError("max_attempts must be 0 (unlimited) or a whole number from 1 "
                              f"to {MAX_ATTEMPTS:,}")
    _check_seconds("lease_ttl", spec.lease_ttl, allow_zero=False)
    if spec.lease_ttl < 1:
        raise ValidationError("lease_ttl must be at least 1 second")
    if spec.timeout is not None:
        _check_seconds("timeout", spec.timeout, allow_zero=False)
    _check_seconds("backoff initial", spec.backoff.initial, allow_zero=False)
    _check_seconds("backoff max", spec.backoff.max, allow_zero=False)
    if spec.idempotency_key is not None and not (
        0 < len(spec.idempotency_key) <= MAX_IDEMPOTENCY_KEY
    ):
        raise ValidationError(f"idempotency_key must be 1-{MAX_IDEMPOTENCY_KEY} characters")
    if len(spec.labels) > MAX_LABELS:
        raise ValidationError(f"a job has at most {MAX_LABELS} labels")
    for key, value in spec.labels.items():
        if not isinstance(key, str) or not LABEL_KEY_RE.fullmatch(key):
            raise ValidationError(f"label key {key!r} is not valid: letters, digits, '.', "
                                  "'_', '/' or '-', at most 63 characters")
        if not isinstance(value, str) or len(value) > MAX_LABEL_VALUE:
            raise ValidationError(f"label {key!r} must be a string of at most "
                                  f"{MAX_LABEL_VALUE} characters")
        if "\x00" in value:
            raise ValidationError(f"label {key!r} contains a NUL character, which no "
                                  "store keeps; remove it")
    if spec.idempotency_key is not None and "\x00" in spec.idempotency_key:
        raise ValidationError("idempotency_key contains a NUL character; remove it")
    return spec
