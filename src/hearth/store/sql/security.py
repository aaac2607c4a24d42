"""The SQL for mutual-TLS certificates and API tokens, mixed into :class:`SqlStore`.

Kept apart from the job queries because it is a separate concern with its own
tables (``certificates``, ``api_tokens``); it shares the store's :class:`Backend`
and its one-transaction-per-method rule. It must never see a token's secret: only
its SHA-256 reaches this module. It decides no policy (who may enroll, which role
may do what): it records and revokes, atomically.

"At most one live token per name" is enforced by the database (the partial unique
index ``uq_api_tokens_live_name``), not by a check-then-insert that two concurrent
creators could both pass; the unique violation is translated here into a
:class:`~hearth.errors.Conflict` that names what clashed.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import orjson
from sqlalchemy import ColumnElement, insert, select, update

from hearth.errors import Conflict, NotFound, ValidationError
from hearth.store.port import CertRecord, TokenRecord
from hearth.store.sql.backend import Backend
from hearth.store.sql.schema import api_tokens, certificates

_SERIAL = re.compile(r"[0-9a-f]{1,64}")
_CERT_ORDER = (certificates.c.issued_at, certificates.c.serial)
_TOKEN_ORDER = (api_tokens.c.created_at, api_tokens.c.id)


def _cert_to_row(cert: CertRecord) -> dict[str, Any]:
    row = dataclasses.asdict(cert)
    row["kinds"] = orjson.dumps(list(cert.kinds)).decode()
    return row


def _cert_from_row(row: Any) -> CertRecord:
    return CertRecord(
        serial=row["serial"], name=row["name"], role=row["role"],
        kinds=tuple(orjson.loads(row["kinds"])), fingerprint=row["fingerprint"],
        issued_at=row["issued_at"], not_after=row["not_after"], revoked_at=row["revoked_at"],
    )


def _token_to_row(token: TokenRecord) -> dict[str, Any]:
    row = dataclasses.asdict(token)
    row["namespaces"] = orjson.dumps(list(token.namespaces)).decode()
    return row


def _token_from_row(row: Any) -> TokenRecord:
    return TokenRecord(
        id=row["id"], name=row["name"], role=row["role"],
        namespaces=tuple(orjson.loads(row["namespaces"])), secret_hash=row["secret_hash"],
        created_at=row["created_at"], expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
    )


class SqlSecurity:
    """The certificate and token methods of :class:`hearth.store.port.Store`."""

    _b: Backend

    # -- certificates --------------------------------------------------------------------
    def record_certificate(self, cert: CertRecord) -> None:
        if not _SERIAL.fullmatch(cert.serial):
            raise ValidationError(f"certificate serial {cert.serial[:80]!r} is not lowercase "
                                  "hex of at most 64 digits")
        try:
            with self._b.write() as tx:
                tx.execute(insert(certificates).values(_cert_to_row(cert)))
        except Conflict as exc:  # the primary key: its only constraint
            raise Conflict(f"a certificate with serial {cert.serial} is already "
                           "recorded; issue the new one with a fresh serial") from exc

    def list_certificates(self, *, name: str | None = None) -> list[CertRecord]:
        query = select(certificates).order_by(*_CERT_ORDER)
        if name is not None:
            query = query.where(certificates.c.name == name)
        with self._b.read() as tx:
            return [_cert_from_row(r) for r in tx.mappings(query)]

    def revoke_certificates(self, *, now: float, name: str | None = None,
                            serial: str | None = None) -> list[CertRecord]:
        match: ColumnElement[bool]
        if name is not None and serial is None:
            match = certificates.c.name == name
            missing = f"no certificate was issued to {name!r}"
        elif serial is not None and name is None:
            match = certificates.c.serial == serial.lower()
            missing = f"no certificate has serial {serial!r}"
        else:
            raise ValidationError("revoke certificates either by name or by serial: "
                                  "pass exactly one of the two")
        with self._b.write() as tx:
            found = [_cert_from_row(r) for r in tx.mappings(
                select(certificates).where(match).order_by(*_CERT_ORDER).with_for_update())]
            if not found:
                raise NotFound(f"{missing}; list the certificates to see which exist")
            live = [c.serial for c in found if c.revoked_at is None]
            if live:
                tx.execute(update(certificates)
                           .where(certificates.c.serial.in_(live))
                           .values(revoked_at=now))
        return [c if c.revoked_at is not None else dataclasses.replace(c, revoked_at=now)
                for c in found]

    def revoked_serials(self) -> set[str]:
        query = select(certificates.c.serial).where(certificates.c.revoked_at.is_not(None))
        with self._b.read() as tx:
            return {row[0] for row in tx.rows(query)}

    # -- API tokens ----------------------------------------------------------------------
    def create_token(self, token: TokenRecord) -> None:
        # No check before the insert: the unique indexes decide, also between
        # concurrent creators; the loser's violation is explained afterwards.
        try:
            with self._b.write() as tx:
                tx.execute(insert(api_tokens).values(_token_to_row(token)))
        except Conflict as exc:  # rolled back by now: explain which index refused it
            raise self._token_clash(token) from exc

    def _token_clash(self, token: TokenRecord) -> Conflict:
        with self._b.read() as tx:
            same_id = tx.first(select(api_tokens.c.id).where(api_tokens.c.id == token.id))
        if same_id is not None:
            return Conflict(f"an API token with id {token.id} already exists; "
                            "create it again with a fresh id")
        return Conflict(f"an API token named {token.name!r} already exists and is not "
                        "revoked; revoke it first or choose another name")

    def get_token(self, token_id: str) -> TokenRecord:
        with self._b.read() as tx:
            rows = tx.mappings(select(api_tokens).where(api_tokens.c.id == token_id))
        if not rows:
            raise NotFound(f"API token {token_id!r} does not exist")
        return _token_from_row(rows[0])

    def list_tokens(self) -> list[TokenRecord]:
        with self._b.read() as tx:
            return [_token_from_row(r)
                    for r in tx.mappings(select(api_tokens).order_by(*_TOKEN_ORDER))]

    def revoke_token(self, id_or_name: str, *, now: float) -> TokenRecord:
        by_id = api_tokens.c.id == id_or_name
        by_live_name = (api_tokens.c.name == id_or_name) & api_tokens.c.revoked_at.is_(None)
        with self._b.write() as tx:
            row = None
            for match in (by_id, by_live_name):
                found = tx.mappings(select(api_tokens).where(match).with_for_update())
                if found:
                    row = found[0]
                    break
            if row is None:
                raise NotFound(f"no API token has the id {id_or_name!r}, and no live token "
                               "has that name; list the tokens to see which exist")
            token = _token_from_row(row)
            if token.revoked_at is not None:
                return token
            tx.execute(update(api_tokens).where(api_tokens.c.id == token.id)
                       .values(revoked_at=now))
        return dataclasses.replace(token, revoked_at=now)
