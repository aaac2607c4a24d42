"""Identifiers and fencing tokens. Injected at the composition root (tests pass their own).

Job ids are ``j_`` plus 26 Crockford base32 characters: 48 bits of milliseconds then
80 random bits, so ids sort roughly by creation time and never collide in practice.
"""

from __future__ import annotations

import os
import secrets
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def _b32(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_job_id() -> str:
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    return "j_" + _b32((ms << 80) | rand, 26)


def new_token() -> str:
    """A fencing token: opaque, unguessable, unique per lease."""
    return secrets.token_hex(12)
