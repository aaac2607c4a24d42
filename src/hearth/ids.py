"""Identifiers and fencing tokens. Injected at the composition root (tests pass their own).

Job ids are ``j_`` plus 32 hex characters: 48 bits of milliseconds then 80 random
bits, so ids sort roughly by creation time and never collide in practice.
"""

from __future__ import annotations

import os
import secrets
import time


def new_job_id() -> str:
    return f"j_{time.time_ns() // 1_000_000:012x}{int.from_bytes(os.urandom(10), 'big'):020x}"


def new_token() -> str:
    """A fencing token: opaque, unguessable, unique per lease."""
    return secrets.token_hex(12)
