"""This host's addresses (``hearth.netif``): read from the kernel, never from the network."""

from __future__ import annotations

import ipaddress
import socket
import sys
from pathlib import Path

import pytest

from hearth import netif

IF_INET6 = """\
00000000000000000000000000000001 01 80 10 80       lo
fd000000000000000000000000000002 04 40 00 82     eth0
fe8000000000000000fc00fffe000001 04 40 20 80     eth0
20010db8000000000000000000000042 05 40 00 80     wlan0
not-hex-at-all 05 40 00 80     wlan0

"""


@pytest.mark.parametrize(("addrs", "include_loopback", "expected"), [
    ([], False, []),
    (["127.0.0.1", "10.0.0.5", "::1", "fd00::2"], False, ["10.0.0.5", "fd00::2"]),
    (["127.0.0.1", "10.0.0.5", "::1", "fd00::2"], True,
     ["127.0.0.1", "10.0.0.5", "::1", "fd00::2"]),
    (["169.254.1.2", "fe80::1", "224.0.0.251", "ff02::fb", "0.0.0.0", "::"], True, []),
    (["10.0.0.5", "10.0.0.5", "FD00:0:0::2", "fd00::2"], False, ["10.0.0.5", "fd00::2"]),
])
def test_dialable_keeps_what_another_host_can_dial(addrs: list[str], include_loopback: bool,
                                                  expected: list[str]) -> None:
    assert netif.dialable(addrs, include_loopback=include_loopback) == expected


def test_ipv6_addresses_parse_proc_and_skip_junk(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    table = tmp_path / "if_inet6"
    table.write_text(IF_INET6)
    monkeypatch.setattr(netif, "_IF_INET6", str(table))
    assert netif.ipv6_addresses() == ["::1", "fd00::2", "fe80::fc:ff:fe00:1", "2001:db8::42"]
    monkeypatch.setattr(netif, "_IF_INET6", str(tmp_path / "missing"))
    assert netif.ipv6_addresses() == []


def test_local_addresses_put_ipv4_first_and_drop_loopback_and_link_local(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    table = tmp_path / "if_inet6"
    table.write_text(IF_INET6)
    monkeypatch.setattr(netif, "_IF_INET6", str(table))
    monkeypatch.setattr(netif, "ipv4_by_interface", lambda: {
        "lo": "127.0.0.1", "eth0": "192.168.1.5", "eth1": "169.254.7.7", "br0": "192.168.1.5"})
    assert netif.local_addresses() == ["192.168.1.5", "fd00::2", "2001:db8::42"]
    assert netif.local_addresses(include_loopback=True) == [
        "127.0.0.1", "192.168.1.5", "::1", "fd00::2", "2001:db8::42"]


def test_nothing_to_list_is_an_empty_list_not_an_error(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    def no_interfaces() -> list[tuple[int, str]]:
        raise OSError(19, "No such device")

    monkeypatch.setattr(socket, "if_nameindex", no_interfaces)
    monkeypatch.setattr(netif, "_IF_INET6", str(tmp_path / "missing"))
    assert netif.ipv4_by_interface() == {}
    assert netif.local_addresses(include_loopback=True) == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SIOCGIFADDR is Linux's")
def test_this_host_has_loopback_by_name() -> None:
    by_name = netif.ipv4_by_interface()
    assert by_name.get("lo") == "127.0.0.1"
    assert list(by_name) == [n for _, n in socket.if_nameindex() if n in by_name]


def test_this_hosts_addresses_are_dialable_and_ipv4_first() -> None:
    found = netif.local_addresses()
    ips = [ipaddress.ip_address(a) for a in found]
    assert len(set(found)) == len(found)
    assert not any(ip.is_loopback or ip.is_link_local or ip.is_multicast for ip in ips)
    assert [ip.version for ip in ips] == sorted(ip.version for ip in ips)
