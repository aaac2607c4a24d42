"""Zero-config LAN discovery of the Hearth coordinator over mDNS / DNS-SD.

Why it exists: on a LAN a worker or CLI should find "the coordinator" without anyone
typing an address. The coordinator publishes one ``_hearth._tcp.local.`` service
(:class:`Advertiser`); clients browse for it (:func:`discover`) and get addresses
ready to dial.

What it must never do:

* **Never put secrets in TXT records.** Every host on the segment can read them. The
  TXT record carries only a version, a TLS flag and a *prefix of the CA's
  fingerprint* (public data) so that a client can pick the coordinator of its own
  bundle among several. :class:`Advertiser` refuses property names that look like
  credentials as a guard against a careless caller.
* **Never be a source of trust.** Anyone on the LAN can publish a
  ``_hearth._tcp.local.`` advert with any name, addresses and TXT, ``ca`` included.
  Discovery is a hint only: the client still dials with TLS and verifies the server
  against the CA in its bundle, so a spoofed advert can waste a connection attempt
  but cannot impersonate a coordinator. Nothing here may skip or weaken that check.
* **Never crash the caller over the network.** Missing multicast (containers, VPNs,
  hosts with no LAN) is logged (a warning when advertising, debug when browsing)
  and the coordinator keeps serving; ``discover()`` then returns ``[]``.

The zeroconf library's sync API runs its own event-loop thread, so this module needs
no asyncio of its own. The addresses advertised by default are
:func:`hearth.netif.local_addresses`, the same ones the server certificate names.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import re
import secrets
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from zeroconf import (
    DNSQuestionType,
    InterfaceChoice,
    NonUniqueNameException,
    ServiceBrowser,
    ServiceInfo,
    ServiceStateChange,
    Zeroconf,
)
from zeroconf import (
    Error as ZeroconfError,
)

from hearth.errors import ValidationError
from hearth.netif import host_port, ipv4_by_interface, local_addresses

__all__ = ["SERVICE_TYPE", "Advertiser", "Found", "discover", "local_addresses"]

log = logging.getLogger("hearth.discovery")

SERVICE_TYPE = "_hearth._tcp.local."
#: How long ``discover()`` keeps listening once a first matching service resolved, so
#: that several coordinators answering the same query are all seen.
SETTLE_SECONDS = 0.3
#: Longest single resolve attempt (SRV/TXT/A queries) inside ``discover()``.
_RESOLVE_MS = 1000.0
#: Property names refused in TXT: they would publish a credential to the whole LAN.
_SECRET_WORDS = ("secret", "token", "password", "passwd", "key", "private", "cred")
_NETWORK_ERRORS = (OSError, RuntimeError, ZeroconfError)
#: Discovery asks "QM" questions so that answers come back by multicast. The library
#: default ("QU" first) gets unicast answers sent to port 5353, and when several
#: processes on one host share that port (a worker next to its coordinator) the
#: kernel hands each unicast answer to just one of them, often not the one asking.
_QM = DNSQuestionType.QM


# --- interfaces --------------------------------------------------------------------

def _zeroconf_interfaces(interfaces: Sequence[str] | None) -> InterfaceChoice | list[str]:
    """Map IP literals and interface names to what zeroconf binds (IPv4 addresses).

    A name with no IPv4 address is dropped (and logged); an empty result makes
    zeroconf fail to start, which callers report as "multicast unavailable".
    """
    if interfaces is None:
        return InterfaceChoice.All
    by_name: dict[str, str] | None = None
    chosen: list[str] = []
    for item in interfaces:
        try:
            chosen.append(str(ipaddress.ip_address(item)))
            continue
        except ValueError:
            pass
        if by_name is None:
            by_name = ipv4_by_interface()
        if item in by_name:
            chosen.append(by_name[item])
        else:
            log.debug("mDNS: interface %r has no IPv4 address; not using it", item)
    return chosen


_dial = host_port


# --- advertising -------------------------------------------------------------------

def _label(text: str) -> str:
    """A DNS label made of letters, digits and dashes (for host and default names)."""
    label = re.sub(r"[^A-Za-z0-9-]+", "-", text).strip("-")[:40].strip("-")
    return label or "hearth"


def _check_instance(instance: str) -> str:
    if not instance or len(instance.encode()) > 63 or not instance.isprintable():
        raise ValidationError(
            f"mDNS instance name {instance!r} must be 1 to 63 bytes of printable text."
        )
    return instance


def _check_properties(properties: Mapping[str, str]) -> dict[str, str]:
    checked: dict[str, str] = {}
    for key, value in properties.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ValidationError("mDNS TXT properties must map strings to strings.")
        if not key or "=" in key or not key.isascii() or not key.isprintable():
            raise ValidationError(f"mDNS TXT property name {key!r} is not valid.")
        if any(word in key.lower() for word in _SECRET_WORDS):
            raise ValidationError(
                f"mDNS TXT property {key!r} looks like a credential; TXT records are "
                "readable by every host on the LAN, so secrets must never go there."
            )
        if len(key.encode()) + 1 + len(value.encode()) > 255:
            raise ValidationError(f"mDNS TXT property {key!r} is over 255 bytes.")
        checked[key] = value
    return checked


class Advertiser:
    """Publishes one coordinator as ``<instance>._hearth._tcp.local.``.

    ``start()`` blocks for about two seconds (probing, then announcing); a name
    already taken by another host on the LAN gets a short random suffix. (A clash with
    a second responder on *this* host may go unnoticed: the library's probes get
    unicast answers on the shared port 5353, which the kernel may hand to the wrong
    process.) ``close()`` sends goodbye packets so browsers forget the service at
    once. Both are thread-safe and idempotent; the object is also a context manager.
    Without multicast, ``start()`` logs a warning and the advertiser stays idle: it
    never raises for the network.
    """

    def __init__(
        self,
        port: int,
        *,
        instance: str | None = None,
        addresses: Sequence[str] | None = None,
        properties: Mapping[str, str] | None = None,
        interfaces: Sequence[str] | None = None,
    ) -> None:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ValidationError(f"mDNS port {port!r} must be an integer from 1 to 65535.")
        if addresses is not None:
            try:
                addresses = [str(ipaddress.ip_address(a)) for a in addresses]
            except ValueError as exc:
                raise ValidationError(f"mDNS addresses must be IP addresses: {exc}.") from exc
        self.port = port
        self._instance = _check_instance(instance) if instance is not None else _label(
            socket.gethostname().split(".")[0]
        )
        self._addresses = addresses
        self._properties = _check_properties(properties or {})
        self._interfaces = list(interfaces) if interfaces is not None else None
        self._lock = threading.Lock()
        self._zc: Zeroconf | None = None
        self._info: ServiceInfo | None = None

    @property
    def instance(self) -> str:
        """The instance name in use (with its suffix if the first choice was taken)."""
        return self._instance

    @property
    def advertising(self) -> bool:
        return self._info is not None

    def start(self) -> None:
        with self._lock:
            if self._zc is not None:
                return
            addresses = self._addresses if self._addresses is not None else local_addresses()
            if not addresses:
                log.warning("not advertising %s: this host has no non-loopback address",
                            SERVICE_TYPE)
                return
            try:
                zc = Zeroconf(interfaces=_zeroconf_interfaces(self._interfaces))
            except _NETWORK_ERRORS as exc:
                log.warning("not advertising %s: multicast is unavailable (%s)",
                            SERVICE_TYPE, exc)
                return
            try:
                self._info = self._register(zc, addresses)
            except _NETWORK_ERRORS as exc:
                log.warning("not advertising %s: registration failed (%s)", SERVICE_TYPE, exc)
                _close_quietly(zc)
                return
            self._zc = zc
            log.info("advertising %s as %s on %s", SERVICE_TYPE, self._instance,
                     ", ".join(_dial(a, self.port) for a in addresses))

    def _register(self, zc: Zeroconf, addresses: Sequence[str]) -> ServiceInfo:
        base = self._instance
        for attempt in range(4):
            stem = base.encode()[:58].decode(errors="ignore")  # the suffix stays in 63 bytes
            instance = base if attempt == 0 else f"{stem}-{secrets.token_hex(2)}"
            info = ServiceInfo(
                SERVICE_TYPE,
                f"{instance}.{SERVICE_TYPE}",
                port=self.port,
                properties=dict(self._properties),
                server=f"{_label(instance)}.local.",
                parsed_addresses=list(addresses),
            )
            try:
                zc.register_service(info)
            except NonUniqueNameException:
                log.info("mDNS name %r is taken on this network; trying another", instance)
                continue
            self._instance = instance
            return info
        raise NonUniqueNameException(f"no free mDNS name found starting from {base!r}")

    def close(self) -> None:
        with self._lock:
            zc, info = self._zc, self._info
            self._zc = self._info = None
            if zc is None:
                return
            if info is not None:
                try:
                    zc.unregister_service(info)
                except _NETWORK_ERRORS as exc:
                    log.debug("mDNS goodbye for %s failed: %s", self._instance, exc)
            _close_quietly(zc)
            log.info("stopped advertising %s as %s", SERVICE_TYPE, self._instance)

    def __enter__(self) -> Advertiser:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _close_quietly(zc: Zeroconf) -> None:
    try:
        zc.close()
    except _NETWORK_ERRORS as exc:
        log.debug("closing zeroconf failed: %s", exc)


# --- discovery ---------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Found:
    """One resolved coordinator advert: a hint to dial, never proof of identity."""

    instance: str
    addresses: tuple[str, ...]  # "host:port", IPv6 as "[addr]:port"
    properties: dict[str, str]


class _Names:
    """Service names the browser reported, handed to the resolving thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: set[str] = set()
        self._removed: set[str] = set()
        self.changed = threading.Event()

    def on_change(self, zeroconf: Zeroconf, service_type: str, name: str,
                  state_change: ServiceStateChange, **_: Any) -> None:
        with self._lock:
            if state_change is ServiceStateChange.Removed:
                self._pending.discard(name)
                self._removed.add(name)
            else:
                self._pending.add(name)
                self._removed.discard(name)
        self.changed.set()

    def take(self) -> tuple[set[str], set[str]]:
        with self._lock:
            self.changed.clear()
            pending, removed = self._pending, self._removed
            self._pending, self._removed = set(), set()
            return pending, removed

    def retry(self, name: str) -> None:
        with self._lock:
            if name not in self._removed:
                self._pending.add(name)
                self.changed.set()


def _resolve(zc: Zeroconf, name: str, wait_ms: float) -> Found | None:
    info = ServiceInfo(SERVICE_TYPE, name)
    if not info.load_from_cache(zc) and not info.request(zc, wait_ms, question_type=_QM):
        return None
    if info.port is None:
        return None
    addresses = tuple(
        _dial(a, info.port) for a in info.parsed_addresses()
        if not ipaddress.ip_address(a).is_link_local  # unusable without a scope id
    )
    if not addresses:
        return None
    instance = name[: -len(SERVICE_TYPE) - 1] if name.endswith("." + SERVICE_TYPE) else name
    props = {k: v or "" for k, v in info.decoded_properties.items()}
    return Found(instance=instance, addresses=addresses, properties=props)


def _browse(zc: Zeroconf, names: _Names, timeout: float, ca: str | None,
            found: dict[str, Found]) -> None:
    deadline = time.monotonic() + timeout
    while True:
        now = time.monotonic()
        if now >= deadline:
            return
        pending, removed = names.take()
        for name in removed:
            found.pop(name, None)
        for name in sorted(pending):
            wait_ms = max(1.0, min(_RESOLVE_MS, (deadline - time.monotonic()) * 1000))
            result = _resolve(zc, name, wait_ms)
            if result is None:
                found.pop(name, None)
                if time.monotonic() < deadline:
                    names.retry(name)
                continue
            found[name] = result
            if _matches(result, ca):
                deadline = min(deadline, time.monotonic() + SETTLE_SECONDS)
        names.changed.wait(max(0.0, deadline - time.monotonic()))


def _matches(found: Found, ca: str | None) -> bool:
    return ca is None or found.properties.get("ca", "").lower() == ca.lower()


def discover(
    *,
    timeout: float = 3.0,
    ca: str | None = None,
    interfaces: Sequence[str] | None = None,
) -> list[Found]:
    """Browse for coordinators for up to ``timeout`` seconds.

    Returns early, ``SETTLE_SECONDS`` after the first matching service resolved. With
    ``ca``, keeps only adverts whose TXT ``ca`` equals it (hex, case-insensitive).
    Never raises for network trouble: logs at debug and returns what was found,
    sorted by instance name. The result is a hint; verify the server with TLS.
    """
    if not timeout >= 0:
        raise ValidationError(f"discovery timeout {timeout!r} must be zero or more seconds.")
    found: dict[str, Found] = {}
    try:
        zc = Zeroconf(interfaces=_zeroconf_interfaces(interfaces))
    except _NETWORK_ERRORS as exc:
        log.debug("mDNS discovery unavailable: %s", exc)
        return []
    names = _Names()
    browser: ServiceBrowser | None = None
    try:
        browser = ServiceBrowser(zc, SERVICE_TYPE, handlers=[names.on_change], question_type=_QM)
        _browse(zc, names, timeout, ca, found)
    except _NETWORK_ERRORS as exc:
        log.debug("mDNS discovery stopped early: %s", exc)
    finally:
        if browser is not None:
            with contextlib.suppress(*_NETWORK_ERRORS):
                browser.cancel()
        _close_quietly(zc)
    return sorted((f for f in found.values() if _matches(f, ca)), key=lambda f: f.instance)
