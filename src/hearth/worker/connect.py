"""Finding the coordinator for a worker that runs from a bundle.

In order: an address given explicitly (``--addr``), the addresses written in the
bundle (the first that accepts a TCP connection wins), then mDNS (services of type
``_hearth._tcp.local.`` whose advertised CA fingerprint is the bundle's). Discovery is
only a hint: the TLS handshake against the bundle's CA decides whom the worker trusts,
so a spoofed advert or a stale address cannot impersonate the coordinator.

It keeps looking (with backoff, logging once) until it finds one or is told to stop;
it never logs the bundle's content.
"""

from __future__ import annotations

import logging
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only a bundled worker comes here, and it has loaded the bundle
    from hearth.security.bundle import Bundle

log = logging.getLogger("hearth.worker")

PROBE_TIMEOUT = 1.0
DISCOVER_TIMEOUT = 3.0


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def reachable(address: str, timeout: float = PROBE_TIMEOUT,
              context: ssl.SSLContext | None = None) -> bool:
    """True if ``address`` accepts a connection and, with ``context``, proves in a TLS
    handshake that it holds a certificate of the bundle's CA for that address (so a
    spoofed advert or a stranger at an old address is passed over, not dialled)."""
    host, port = _split(address)
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            if context is not None:
                raw.settimeout(timeout)
                with context.wrap_socket(raw, server_hostname=host):
                    pass
            return True
    except ssl.SSLCertVerificationError:
        log.warning("%s is not this bundle's coordinator (its certificate is not from "
                    "the bundle's CA); passing over it", address)
        return False
    except (OSError, ssl.SSLError):
        return False


def first_reachable(addresses: Sequence[str], timeout: float = PROBE_TIMEOUT,
                    context: ssl.SSLContext | None = None) -> str | None:
    for address in addresses:
        if reachable(address, timeout, context):
            return address
    return None


def discover_address(bundle: Bundle, timeout: float = DISCOVER_TIMEOUT) -> str | None:
    from hearth.discovery.mdns import discover

    context = bundle.ssl_context()
    for found in discover(timeout=timeout, ca=bundle.ca_fingerprint[:16]):
        address = first_reachable(found.addresses, context=context)
        if address is not None:
            return address
    return None


def rediscover(bundle: Bundle, current: str, *, mdns: bool = True) -> str | None:
    """One round of looking for the coordinator elsewhere than ``current`` (its address
    changed): another address of the bundle that answers, else mDNS. None if nothing
    new answers."""
    here = current.removeprefix("https://")
    others = [a for a in bundle.addresses if a != here]
    address = first_reachable(others, context=bundle.ssl_context()) if others else None
    if address is None and mdns:
        address = discover_address(bundle)
    if address is None or address == here:
        return None
    return f"https://{address}"


def coordinator_url(bundle: Bundle, *, addr: str | None = None, mdns: bool = True,
                    stopped: Callable[[], bool] = lambda: False,
                    sleep: Callable[[float], None] = time.sleep) -> str | None:
    """The https URL to dial, or None if ``stopped()`` turned true while looking."""
    if addr:
        from hearth.security.bundle import check_address

        return f"https://{check_address(addr)}"
    if len(bundle.addresses) == 1 and not mdns:
        return f"https://{bundle.addresses[0]}"
    delay = 0.5
    announced = False
    while not stopped():
        how = "from the bundle"
        address = (first_reachable(bundle.addresses, context=bundle.ssl_context())
                   if bundle.addresses else None)
        if address is None and mdns:
            how = "over mDNS"
            address = discover_address(bundle)
        if address is not None:
            log.info("found the coordinator at %s (%s)", address, how)
            return f"https://{address}"
        if not announced:
            where = ", ".join(bundle.addresses) or "no address in the bundle"
            log.warning("looking for the coordinator (%s%s); retrying until it answers",
                        where, ", then mDNS" if mdns else "")
            announced = True
        sleep(delay)
        delay = min(delay * 2, 5.0)
    return None
