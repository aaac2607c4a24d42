"""API tokens (``hearth.security.tokens``): the format, the hash, redaction, roles.

``parse`` is what stands between an ``Authorization`` header and a store lookup, so it
is pinned against near misses on every side of the format ``hth_<12 id>_<43 secret>``.
"""

from __future__ import annotations

import hashlib
import re

import pytest

from hearth.errors import ValidationError
from hearth.security import tokens

ID = "abc123def456"
SECRET = "A" * 20 + "-_" + "z9" * 10 + "Q"  # 43 URL-safe characters, '-' and '_' too
VALUE = f"hth_{ID}_{SECRET}"


def test_the_sample_token_is_well_formed() -> None:
    assert len(ID) == tokens.ID_LENGTH == 12
    assert len(SECRET) == 43
    assert tokens.parse(VALUE) == (ID, SECRET)


def test_mint_makes_a_parseable_token_whose_hash_matches_its_secret() -> None:
    minted = tokens.mint()
    parsed = tokens.parse(minted.value)
    assert parsed is not None
    token_id, secret = parsed
    assert token_id == minted.id
    assert re.fullmatch(r"[a-z0-9]{12}", token_id)
    assert minted.value == f"hth_{token_id}_{secret}"
    assert minted.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert tokens.matches(secret, minted.secret_hash)
    assert secret not in minted.secret_hash


def test_mint_never_repeats_and_never_shows_the_value_in_its_repr() -> None:
    minted = [tokens.mint() for _ in range(50)]
    assert len({m.id for m in minted}) == 50
    assert len({m.value for m in minted}) == 50
    for m in minted:
        assert repr(m) == f"NewToken(id={m.id!r})"
        assert m.value not in repr(m)
        assert m.secret_hash not in repr(m)


@pytest.mark.parametrize("value", [
    f" {VALUE}",
    f"{VALUE}\n",
    f"\t{VALUE}  ",
])
def test_parse_ignores_surrounding_whitespace(value: str) -> None:
    assert tokens.parse(value) == (ID, SECRET)


@pytest.mark.parametrize("value", [
    "",
    "hth_",
    "hth__",
    f"{ID}_{SECRET}",                       # no prefix
    f"HTH_{ID}_{SECRET}",                   # prefix in capitals
    f"hth-{ID}_{SECRET}",                   # wrong separator after the prefix
    f"hth_{ID}-{SECRET}",                   # wrong separator after the id
    f"hth_{ID}{SECRET}",                    # no separator after the id
    f"hth_{ID[:-1]}_{SECRET}",              # id one short
    f"hth_{ID}x_{SECRET}",                  # id one long
    f"hth_{ID.upper()}_{SECRET}",           # id in capitals
    f"hth_abc123def45-_{SECRET}",           # '-' in the id
    f"hth_abc123déf45_{SECRET}",            # non-ASCII letter in the id
    f"hth_{ID}_{SECRET[:-1]}",              # secret one short
    f"hth_{ID}_{SECRET}x",                  # secret one long
    f"hth_{ID}_{SECRET[:-1]}=",             # padding is not URL-safe base64 here
    f"hth_{ID}_{SECRET[:-1]}+",             # standard base64 alphabet
    f"hth_{ID}_{SECRET[:-1]}/",
    f"hth_{ID}_{SECRET[:20]} {SECRET[21:]}",  # space inside
    f"hth_{ID}_{SECRET[:-1]}é",             # non-ASCII in the secret
    f"{VALUE}{VALUE}",                      # two tokens glued
    f"Bearer {VALUE}",                      # the whole header, not the token
    "hth_" + "a" * 43,                      # the admin token's shape (no id)
    "hth_" + "a" * 56,                      # right length, no id separator
])
def test_parse_refuses_near_misses(value: str) -> None:
    assert tokens.parse(value) is None


def test_an_admin_token_never_parses_as_an_api_token() -> None:
    # The admin token is "hth_" + token_urlsafe(32): same prefix, but no id.
    import secrets

    for _ in range(100):
        assert tokens.parse("hth_" + secrets.token_urlsafe(32)) is None


def test_matches_compares_the_digest_of_the_secret() -> None:
    digest = tokens.hash_secret(SECRET)
    assert digest == hashlib.sha256(SECRET.encode()).hexdigest()
    assert tokens.matches(SECRET, digest)
    assert not tokens.matches(SECRET + "x", digest)
    assert not tokens.matches(SECRET[:-1], digest)
    assert not tokens.matches("", digest)
    assert not tokens.matches(SECRET, digest.upper())  # the stored form is lowercase hex
    assert not tokens.matches(SECRET, "")
    assert not tokens.matches(digest, digest)  # the hash is not a secret that matches


@pytest.mark.parametrize(("value", "shown"), [
    (VALUE, f"hth_{ID}_…"),
    (f"  {VALUE}\n", f"hth_{ID}_…"),
    ("hth_" + "a" * 43, "hth_…"),
    ("not a token at all", "hth_…"),
    ("", "hth_…"),
    (f"hth_{ID}_{SECRET[:-1]}", "hth_…"),
])
def test_redact_shows_at_most_the_public_id(value: str, shown: str) -> None:
    out = tokens.redact(value)
    assert out == shown
    assert SECRET not in out
    assert SECRET[:10] not in out
    if value.strip():
        assert value.strip() not in out


@pytest.mark.parametrize("role", ["admin", "operator", "approver", "viewer"])
def test_check_role_accepts_the_token_roles(role: str) -> None:
    assert tokens.check_role(role) == role


def test_the_token_roles_are_ordered_most_powerful_first() -> None:
    assert tokens.TOKEN_ROLES == ("admin", "operator", "approver", "viewer")


@pytest.mark.parametrize("role", ["worker", "Admin", "ADMIN", " admin", "admin ", "",
                                  "root", "operators", "x" * 500])
def test_check_role_refuses_anything_else_with_a_sentence(role: str) -> None:
    with pytest.raises(ValidationError) as info:
        tokens.check_role(role)
    message = info.value.message
    assert "is not a token role" in message
    assert "admin, operator, approver, viewer" in message
    assert len(message) < 200  # a long role is cut, not echoed whole
