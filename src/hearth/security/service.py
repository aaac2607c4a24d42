"""The security service: enrollment, revocation and API tokens over the store.

It is the coordinator's one owner of the CA key at run time. It keeps what the
authenticator needs on every request in memory (token records by id, revoked serials)
so that checking a caller costs no I/O; every change made here updates that memory
before it answers, so a revocation takes effect on the very next request. Other
coordinator replicas on the same PostgreSQL pick changes up within
:data:`REFRESH` seconds.

It must never log a token, a key or a bundle's bytes; it returns them to the caller
(the enrollment and token routes), which hands them to the admin who asked, once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from hearth.domain.validation import check_kind, check_namespace, check_node_name
from hearth.errors import ValidationError
from hearth.security import tokens
from hearth.security.bundle import Bundle, check_address, make_bundle
from hearth.security.pki import CertificateAuthority
from hearth.store.port import CertRecord, Store, TokenRecord

log = logging.getLogger("hearth.security")

#: Seconds between reloads of tokens and revocations (for other replicas' changes).
REFRESH = 5.0
MAX_VALIDITY = 10 * 365 * 86400.0
CERT_ROLES = ("worker", "admin")


@dataclass(frozen=True, slots=True)
class _Snapshot:
    tokens: dict[str, TokenRecord]
    revoked: frozenset[str]
    revoked_names: frozenset[str]


def _snapshot(token_list: Sequence[TokenRecord], certs: Sequence[CertRecord],
              now: float) -> _Snapshot:
    live: set[str] = set()
    revoked_by_name: set[str] = set()
    for cert in certs:
        if cert.revoked_at is not None:
            revoked_by_name.add(cert.name)
        elif cert.not_after > now:
            live.add(cert.name)
    return _Snapshot(tokens={t.id: t for t in token_list},
                     revoked=frozenset(c.serial for c in certs if c.revoked_at is not None),
                     revoked_names=frozenset(revoked_by_name - live))


class SecurityService:
    def __init__(self, store: Store, ca: CertificateAuthority, *,
                 addresses: Callable[[], Sequence[str]] = tuple,
                 clock: Callable[[], float] = time.time, refresh: float = REFRESH) -> None:
        self.store = store
        self.ca = ca
        self._addresses = addresses
        self._clock = clock
        self._refresh_every = refresh
        self._state = _Snapshot({}, frozenset(), frozenset())
        self._task: asyncio.Task[None] | None = None

    # -- what the authenticator asks (memory only) -------------------------------------

    def token(self, token_id: str) -> TokenRecord | None:
        return self._state.tokens.get(token_id)

    def is_revoked(self, serial: str) -> bool:
        return serial in self._state.revoked

    def revoked_names(self) -> frozenset[str]:
        """Names whose every certificate is revoked (``hearth nodes`` shows them)."""
        return self._state.revoked_names

    # -- lifecycle ---------------------------------------------------------------------

    def reload(self) -> None:
        """Read tokens and certificates from the store (blocking; call off the loop)."""
        self._state = _snapshot(self.store.list_tokens(), self.store.list_certificates(),
                                self._clock())

    async def start(self) -> None:
        await asyncio.to_thread(self.reload)
        self._task = asyncio.create_task(self._refresh_loop(), name="hearth-security")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_every)
            try:
                await asyncio.to_thread(self.reload)
            except Exception:  # the store is down: keep the last known state
                log.warning("could not reload tokens and revocations; keeping the last "
                            "known ones", exc_info=True)

    # -- enrollment and revocation -----------------------------------------------------

    async def enroll(self, name: str, *, role: str = "worker", kinds: Sequence[str] = (),
                     validity: float = 90 * 86400.0,
                     addresses: Sequence[str] | None = None) -> Bundle:
        """Issue a certificate, record it, and return the bundle (with its key)."""
        check_node_name(name)
        if role not in CERT_ROLES:
            raise ValidationError(f"role {role[:40]!r} cannot be enrolled: use worker or "
                                  "admin (people get tokens: `hearth token create`)")
        kinds = tuple(dict.fromkeys(check_kind(k) for k in kinds))
        if role == "admin" and kinds:
            raise ValidationError("--kinds limits what a worker may run; an admin bundle "
                                  "takes none")
        if not 0 < validity <= MAX_VALIDITY:
            raise ValidationError("validity must be more than 0 and at most 10 years")
        addrs = tuple(check_address(a) for a in (
            self._addresses() if addresses is None else addresses))
        now = self._clock()
        issued = self.ca.issue_client(name, role, kinds=kinds, validity=validity, now=now)
        info = issued.info
        await asyncio.to_thread(self.store.record_certificate, CertRecord(
            serial=info.serial, name=name, role=role, kinds=kinds,
            fingerprint=info.fingerprint, issued_at=now, not_after=info.not_after))
        await asyncio.to_thread(self.reload)
        log.info("enrolled %s %s (certificate serial %s, valid until %s)", role, name,
                 info.serial, time.strftime("%Y-%m-%d", time.gmtime(info.not_after)))
        return make_bundle(self.ca, issued, addresses=addrs, now=now)

    async def revoke(self, *, name: str | None = None, serial: str | None = None
                     ) -> list[CertRecord]:
        if (name is None) == (serial is None):
            raise ValidationError("revoke takes a name or a serial")
        found = await asyncio.to_thread(
            self.store.revoke_certificates, now=self._clock(), name=name,
            serial=serial.lower() if serial else None)
        await asyncio.to_thread(self.reload)
        for cert in found:
            log.warning("revoked the certificate of %s %s (serial %s)", cert.role, cert.name,
                        cert.serial)
        return found

    async def certificates(self, name: str | None = None) -> list[CertRecord]:
        return await asyncio.to_thread(self.store.list_certificates, name=name)

    # -- tokens ------------------------------------------------------------------------

    async def create_token(self, name: str, *, role: str, namespaces: Sequence[str] = (),
                           expires_in: float | None = None) -> tuple[TokenRecord, str]:
        """A new token; its value is returned here and never again."""
        check_node_name(name)
        tokens.check_role(role)
        scopes = tuple(dict.fromkeys(check_namespace(n) for n in namespaces))
        if expires_in is not None and expires_in <= 0:
            raise ValidationError("a token's lifetime must be more than 0 seconds")
        minted = tokens.mint()
        now = self._clock()
        record = TokenRecord(id=minted.id, name=name, role=role, namespaces=scopes,
                             secret_hash=minted.secret_hash, created_at=now,
                             expires_at=None if expires_in is None else now + expires_in)
        await asyncio.to_thread(self.store.create_token, record)
        await asyncio.to_thread(self.reload)
        log.info("created %s token %s (%s)", role, record.id, name)
        return record, minted.value

    async def tokens(self) -> list[TokenRecord]:
        return await asyncio.to_thread(self.store.list_tokens)

    async def revoke_token(self, id_or_name: str) -> TokenRecord:
        record = await asyncio.to_thread(self.store.revoke_token, id_or_name,
                                         now=self._clock())
        await asyncio.to_thread(self.reload)
        log.warning("revoked token %s (%s)", record.id, record.name)
        return record
