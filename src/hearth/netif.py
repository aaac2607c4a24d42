"""This host's network interfaces and their addresses, as the kernel reports them.

Why it exists: two features must agree on "the addresses a peer on the LAN can dial":
the coordinator's server certificate names them (:mod:`hearth.security.tls`) and the
mDNS advert publishes them (:mod:`hearth.discovery.mdns`). Listing them in one place
keeps the certificate and the advert in step.

IPv4 addresses come from ``SIOCGIFADDR`` on each interface (one primary address per
interface), IPv6 addresses from ``/proc/net/if_inet6``. Both are Linux-only; elsewhere
the lists are empty and callers fall back to what they were given explicitly.

What it must never do:

- raise: a host with no interfaces, no IPv6 or an unreadable ``/proc`` gets fewer
  addresses, never an exception (failures are logged at debug);
- send a packet or ask DNS: it reads local kernel state only, so it is cheap and safe
  to call at start-up and on every certificate check;
- offer a link-local address as dialable: without a scope id it cannot be used from
  another host (loopback only on request).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import struct
import sys
from collections.abc import Iterable

log = logging.getLogger("hearth.netif")

_SIOCGIFADDR = 0x8915  # Linux: an interface's (primary) IPv4 address
_IF_INET6 = "/proc/net/if_inet6"


def ipv4_by_interface() -> dict[str, str]:
    """Each interface's primary IPv4 address, by interface name, in kernel order.

    Loopback (``lo``) included; interfaces that are down or have no IPv4 address are not.
    """
    if not sys.platform.startswith("linux"):
        return {}
    found: dict[str, str] = {}
    try:
        import fcntl

        names = [name for _, name in socket.if_nameindex()]
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    except (ImportError, OSError) as exc:
        log.debug("cannot list IPv4 interfaces: %s", exc)
        return found
    with sock:
        for name in names:
            request = struct.pack("256s", name.encode()[:15])
            try:
                reply = fcntl.ioctl(sock.fileno(), _SIOCGIFADDR, request)
            except OSError:  # EADDRNOTAVAIL: down, or no IPv4 address
                continue
            found[name] = str(ipaddress.IPv4Address(reply[20:24]))
    return found


def ipv6_addresses() -> list[str]:
    """Every IPv6 address of every interface (link-local and loopback included)."""
    try:
        with open(_IF_INET6, encoding="ascii") as lines:
            rows = [line.split() for line in lines]
    except (OSError, UnicodeError) as exc:  # not Linux, or IPv6 disabled
        log.debug("cannot list IPv6 addresses: %s", exc)
        return []
    found = []
    for fields in rows:
        try:
            found.append(str(ipaddress.IPv6Address(bytes.fromhex(fields[0]))))
        except (IndexError, ValueError):
            continue
    return found


def dialable(addrs: Iterable[str], *, include_loopback: bool = False) -> list[str]:
    """``addrs`` without link-local, multicast and unspecified addresses (nor loopback
    unless asked), normalised, without repeats, in their order. Pure."""
    found = []
    for addr in addrs:
        ip = ipaddress.ip_address(addr)
        if ip.is_link_local or ip.is_multicast or ip.is_unspecified:
            continue
        if ip.is_loopback and not include_loopback:
            continue
        found.append(str(ip))
    return list(dict.fromkeys(found))


def local_addresses(*, include_loopback: bool = False) -> list[str]:
    """This host's IPv4 then IPv6 addresses that another host could dial.

    IPv4 in interface order, one (primary) address per interface; never link-local;
    loopback only with ``include_loopback``. Never raises.
    """
    return dialable([*ipv4_by_interface().values(), *ipv6_addresses()],
                    include_loopback=include_loopback)


__all__ = ["dialable", "ipv4_by_interface", "ipv6_addresses", "local_addresses"]


def host_port(addr: str, port: int) -> str:
    """``addr:port`` ready to dial, IPv6 in brackets."""
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"
