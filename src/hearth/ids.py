"""Identifiers and fencing tokens. Injected at the composition root (tests pass their own).

Job ids are ``j_`` plus 32 hex characters: 48 bits of milliseconds then 80 random
bits, so ids sort roughly by creation time and never collide in practice.
"""

from __future__ import annotations

import os
import random
import secrets
import time

_random = random.Random(int.from_bytes(os.urandom(16), "big"))


def new_job_id() -> str:
    """Unique, not secret (fencing tokens are the secrets): a fast seeded generator
    instead of a system call per id."""
    return f"j_{time.time_ns() // 1_000_000:012x}{_random.getrandbits(80):020x}"


def new_token() -> str:
    """A fencing token: opaque, unguessable, unique per lease."""
    return secrets.token_hex(12)
