"""API tokens for people and scripts: format, hashing and the roles they carry.

A token reads ``hth_<id>_<secret>``: the id (12 lowercase letters and digits) names
the stored record and may be shown; the secret (32 random URL-safe bytes) is shown
once, at creation, and only its SHA-256 is stored. A 256-bit random secret needs no
slow hash (there is nothing to brute-force), and a constant-time comparison of the
digests keeps timing from leaking it.

Never log, store or echo a secret; :func:`redact` makes a token safe to print.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from dataclasses import dataclass

from hearth.errors import ValidationError

PREFIX = "hth_"
ID_LENGTH = 12
_ID_ALPHABET = string.ascii_lowercase + string.digits
_TOKEN = re.compile(r"hth_([a-z0-9]{12})_([A-Za-z0-9_-]{43})")

#: Roles of tokens, most to least powerful.
TOKEN_ROLES = ("admin", "operator", "approver", "viewer")


@dataclass(frozen=True, slots=True)
class NewToken:
    """A freshly minted token: ``value`` goes to the user once, the rest is stored."""

    id: str
    value: str
    secret_hash: str

    def __repr__(self) -> str:
        return f"NewToken(id={self.id!r})"


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def mint() -> NewToken:
    token_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(ID_LENGTH))
    secret = secrets.token_urlsafe(32)
    return NewToken(id=token_id, value=f"{PREFIX}{token_id}_{secret}",
                    secret_hash=hash_secret(secret))


def parse(value: str) -> tuple[str, str] | None:
    """``(id, secret)`` of a well-formed API token, else None."""
    match = _TOKEN.fullmatch(value.strip())
    return (match.group(1), match.group(2)) if match else None


def matches(secret: str, secret_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), secret_hash)


def redact(value: str) -> str:
    """What may be printed of a token: its public id, never the secret."""
    parsed = parse(value)
    return f"{PREFIX}{parsed[0]}_…" if parsed else "hth_…"


def check_role(role: str) -> str:
    if role not in TOKEN_ROLES:
        raise ValidationError(f"role {role[:40]!r} is not a token role: use one of "
                              + ", ".join(TOKEN_ROLES))
    return role
