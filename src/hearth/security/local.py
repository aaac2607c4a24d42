"""The coordinator host's own PKI files, TLS context, admin bundle and mDNS advert.

On every start the coordinator makes sure that ``<data>/ca/`` holds its CA (created
on first start; the key never leaves this directory except inside a bundle), that a
TLS coordinator has a server certificate covering this host's names and addresses
(renewed 30 days before it expires, checked hourly while running, and loaded into the
live TLS context so new handshakes use it), and that ``<data>/admin.hearth`` (mode
0600) holds a valid admin bundle whose addresses are where the coordinator listens.

It must never log key material or a bundle's content; it logs fingerprints and serials.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hearth.errors import HearthError, Unavailable
from hearth.netif import host_port, local_addresses
from hearth.security.bundle import Bundle, read_bundle, write_bundle
from hearth.security.pki import (
    CertificateAuthority,
    ensure_ca,
    ensure_server_cert,
    reload_server_cert,
    server_ssl_context,
)
from hearth.security.service import SecurityService
from hearth.store.port import Store, TokenRecord

log = logging.getLogger("hearth.security")

ADMIN_BUNDLE = "admin.hearth"
CA_DIR = "ca"
ADMIN_VALIDITY = 365 * 86400.0
RENEW_BEFORE = 30 * 86400.0
RENEW_CHECK = 3600.0
_WILDCARDS = {"", "0.0.0.0", "::", "[::]"}


def lan_addresses(host: str, port: int) -> tuple[str, ...]:
    """The ``host:port`` addresses a worker on the LAN can dial for this listener."""
    if not port:
        return ()
    if host in _WILDCARDS:
        v4_only = host == "0.0.0.0"
        return tuple(host_port(ip, port) for ip in local_addresses()
                     if not (v4_only and ":" in ip))
    try:
        if ipaddress.ip_address(host.strip("[]")).is_loopback:
            return ()
    except ValueError:
        if host == "localhost":
            return ()
    return (host_port(host.strip("[]"), port),)


class LateCredentials:
    """The authenticator's view of the security service, attached once the store is
    open. Until then (and after shutdown) certificate and token checks answer 503
    rather than guessing that nothing is revoked."""

    def __init__(self) -> None:
        self.service: SecurityService | None = None

    def _svc(self) -> SecurityService:
        if self.service is None:
            raise Unavailable("the coordinator is starting or stopping; try again shortly")
        return self.service

    def token(self, token_id: str) -> TokenRecord | None:
        return self._svc().token(token_id)

    def is_revoked(self, serial: str) -> bool:
        return self._svc().is_revoked(serial)


class LocalPki:
    def __init__(self, data_dir: Path, ca: CertificateAuthority, *, host: str, tls: bool,
                 mdns: bool, ssl_context: ssl.SSLContext | None,
                 ca_dir: Path | None = None) -> None:
        self.data_dir = data_dir
        self.ca_dir = ca_dir or data_dir / CA_DIR
        self.ca = ca
        self.host = host
        self.tls = tls
        self.mdns = mdns
        self.ssl = ssl_context
        #: The bound port, known once the server listens.
        self.port = 0
        self._admin: Bundle | None = None
        self._renewal: asyncio.Task[None] | None = None
        self._advertiser: Any = None

    @classmethod
    def prepare(cls, data_dir: Path, *, host: str, tls: bool, mdns: bool,
                ca_dir: Path | None = None) -> LocalPki:
        ca_dir = ca_dir or data_dir / CA_DIR
        ca, created = ensure_ca(ca_dir)
        if created:
            log.info("created this coordinator's CA in %s (fingerprint %s)", ca_dir,
                     ca.fingerprint[:16])
        # Issued even for a plain loopback coordinator, so that opening it to the LAN
        # later needs nothing but --host.
        cert, key, info, renewed = ensure_server_cert(ca_dir, ca, hosts=_extra_host(host))
        if renewed:
            log.info("issued the server certificate (serial %s, valid until %s)",
                     info.serial, _day(info.not_after))
        context = server_ssl_context(ca.cert_pem, cert, key) if tls else None
        return cls(data_dir, ca, host=host, tls=tls, mdns=mdns, ssl_context=context,
                   ca_dir=ca_dir)

    def service(self, store: Store, *, clock: Callable[[], float] = time.time
                ) -> SecurityService:
        return SecurityService(store, self.ca, addresses=self.addresses, clock=clock)

    def addresses(self) -> tuple[str, ...]:
        """Where a worker dials this coordinator (empty for a plain loopback one)."""
        if not self.tls:
            return ()
        found = lan_addresses(self.host, self.port)
        if not found and self.port:  # TLS on loopback: local use only
            host = self.host.strip("[]") if self.host not in _WILDCARDS else "127.0.0.1"
            found = (host_port(host, self.port),)
        return found

    # -- the admin bundle --------------------------------------------------------------

    async def ensure_admin_bundle(self, security: SecurityService) -> Bundle:
        path = self.data_dir / ADMIN_BUNDLE
        bundle = self._usable_admin_bundle(path, security)
        if bundle is None:
            bundle = await security.enroll("admin", role="admin", validity=ADMIN_VALIDITY,
                                           addresses=())
            write_bundle(path, bundle, overwrite=True)
            log.info("wrote the admin bundle %s (certificate serial %s)", path,
                     bundle.info().serial)
        self._admin = bundle
        return bundle

    def _usable_admin_bundle(self, path: Path, security: SecurityService) -> Bundle | None:
        if not path.exists():
            return None
        try:
            bundle = read_bundle(path, now=time.time() + RENEW_BEFORE)
        except HearthError as exc:
            log.warning("replacing the admin bundle: %s", exc.message)
            return None
        info = bundle.info()
        if (bundle.ca_fingerprint != self.ca.fingerprint or bundle.role != "admin"
                or security.is_revoked(info.serial)):
            log.warning("replacing the admin bundle %s: it is revoked or from another CA",
                        path)
            return None
        return bundle

    # -- listening, renewal, mDNS ------------------------------------------------------

    async def listening(self) -> None:
        """The port is bound: record the addresses in the admin bundle, advertise."""
        addrs = self.addresses()
        if self._admin is not None and self._admin.addresses != addrs:
            self._admin = self._admin.with_addresses(addrs)
            write_bundle(self.data_dir / ADMIN_BUNDLE, self._admin, overwrite=True)
        if self.mdns and self.port:
            await asyncio.to_thread(self._advertise)

    def _advertise(self) -> None:
        from hearth.discovery.mdns import Advertiser

        try:
            advertiser = Advertiser(self.port, properties={
                "v": "1", "ca": self.ca.fingerprint[:16], "tls": "1"})
            advertiser.start()
        except Exception as exc:  # discovery is a convenience; bundles carry addresses
            log.warning("could not advertise over mDNS (%s); workers need an address in "
                        "their bundle (hearth enroll --addr)", exc)
            return
        self._advertiser = advertiser

    async def closing(self) -> None:
        advertiser, self._advertiser = self._advertiser, None
        if advertiser is not None:
            await asyncio.to_thread(advertiser.close)

    def start_renewal(self) -> None:
        if self.tls and self._renewal is None:
            self._renewal = asyncio.create_task(self._renew_loop(), name="hearth-tls-renew")

    async def stop_renewal(self) -> None:
        task, self._renewal = self._renewal, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _renew_loop(self) -> None:
        while True:
            await asyncio.sleep(RENEW_CHECK)
            try:
                self.renew_now()
            except Exception:
                log.warning("could not renew the server certificate", exc_info=True)

    def renew_now(self, *, now: float | None = None) -> bool:
        """Re-issue the server certificate if it is due, and load it into the live TLS
        context (new handshakes use it). True if it was renewed."""
        cert, key, info, renewed = ensure_server_cert(
            self.ca_dir, self.ca, hosts=_extra_host(self.host), renew_before=RENEW_BEFORE,
            now=now)
        if renewed and self.ssl is not None:
            reload_server_cert(self.ssl, cert, key)
            log.info("renewed the server certificate (serial %s, valid until %s)",
                     info.serial, _day(info.not_after))
        return renewed


def _extra_host(host: str) -> tuple[str, ...]:
    """A listen host that is a DNS name goes into the server certificate too."""
    if host in _WILDCARDS or host == "localhost":
        return ()
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return (host,)
    return ()


def _day(ts: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ts))
