"""mDNS discovery over real multicast, between two Linux network namespaces.

Multicast on the host's loopback is unreliable, so each test LAN is two fresh
namespaces (``hthmd-<tag>-a`` / ``-b``) joined by a veth pair, 10.77.1.1 and
10.77.1.2, with a multicast route on each side. The advertiser runs as a child
Python in ``-a``, discovery as a child Python in ``-b`` (printing JSON): nothing is
mocked. Namespaces are deleted even when a test fails (the veth pair dies with them).

Needs root (or CAP_SYS_ADMIN) for ``ip netns add``; without it the tests skip with
the reason, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from hearth.discovery import Advertiser
from hearth.errors import ValidationError

ADV_IP, DISC_IP = "10.77.1.1", "10.77.1.2"
CA_ALPHA, CA_BETA, CA_OTHER = "0123456789abcdef", "fedcba9876543210", "00000000deadbeef"
TXT_ALPHA = {"v": "1", "ca": CA_ALPHA, "tls": "1"}
TXT_BETA = {"v": "1", "ca": CA_BETA, "tls": "1"}

# Child: start the Advertisers described in argv[1], print one JSON line (final names,
# whether each advertises, the log lines), close them all when stdin reaches EOF.
ADVERTISE = """
import json, logging, sys
from hearth.discovery import Advertiser
records = []
class Keep(logging.Handler):
    def emit(self, record): records.append(record.getMessage())
log = logging.getLogger("hearth.discovery")
log.setLevel(logging.INFO)
log.addHandler(Keep())
ads = [Advertiser(**spec) for spec in json.loads(sys.argv[1])]
for ad in ads:
    ad.start()
print(json.dumps({"instances": [ad.instance for ad in ads],
                  "advertising": [ad.advertising for ad in ads], "log": records}), flush=True)
sys.stdin.read()
for ad in ads:
    ad.close()
print(json.dumps({"closed": True}), flush=True)
"""

# Child: run discover() once per keyword set in argv[1], print the results as JSON.
DISCOVER = """
import dataclasses, json, sys
from hearth.discovery import discover
print(json.dumps([[dataclasses.asdict(f) for f in discover(**kw)]
                  for kw in json.loads(sys.argv[1])]))
"""

# Child: a plain zeroconf browser printing every state change as a JSON line.
WATCH = """
import json, sys
from zeroconf import ServiceBrowser, Zeroconf
def changed(zeroconf, service_type, name, state_change):
    print(json.dumps([state_change.name, name]), flush=True)
zc = Zeroconf()
browser = ServiceBrowser(zc, "_hearth._tcp.local.", handlers=[changed])
sys.stdin.read()
browser.cancel()
zc.close()
"""


def _cannot(message: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(message + " (CI=true: the mDNS tests must run)")
    pytest.skip(message)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=10)


def _add_namespace(name: str) -> None:
    try:
        _ip("netns", "add", name)
    except FileNotFoundError:
        _cannot("the `ip` command (iproute2) is not installed: cannot build a test LAN")
    except subprocess.CalledProcessError as exc:
        if "permi" in exc.stderr.lower():  # "Operation not permitted" / "Permission denied"
            _cannot(f"`ip netns add` is not permitted here ({exc.stderr.strip()}); "
                    "the mDNS tests need root or CAP_SYS_ADMIN")
        raise


@contextlib.contextmanager
def namespaces(*suffixes: str) -> Iterator[list[str]]:
    """Fresh, empty ``hthmd-`` namespaces, deleted on exit whatever happened."""
    tag = uuid.uuid4().hex[:8]
    created: list[str] = []
    try:
        for suffix in suffixes:
            name = f"hthmd-{tag}-{suffix}"
            _add_namespace(name)
            created.append(name)
        yield created
    finally:
        for name in reversed(created):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)


@dataclass(frozen=True)
class Lan:
    adv: str  # namespace of the advertiser, at ADV_IP
    disc: str  # namespace of the browser, at DISC_IP


@contextlib.contextmanager
def lan() -> Iterator[Lan]:
    with namespaces("a", "b") as (a, b):
        _ip("link", "add", "hthmd-va", "netns", a, "type", "veth",
            "peer", "name", "hthmd-vb", "netns", b)
        for ns, dev, addr in ((a, "hthmd-va", ADV_IP), (b, "hthmd-vb", DISC_IP)):
            _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "link", "set", dev, "up")
            _ip("-n", ns, "route", "add", "224.0.0.0/4", "dev", dev)
        yield Lan(adv=a, disc=b)


class Child:
    """A Python child inside a namespace; stdout lines are read on a thread."""

    def __init__(self, ns: str, code: str, arg: Any = None) -> None:
        argv = ["ip", "netns", "exec", ns, sys.executable, "-c", code, json.dumps(arg)]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def read(self, timeout: float) -> Any:
        """The next stdout line, parsed as JSON."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            line = None
        if line is None:
            self.kill()
            raise AssertionError(f"no output from the child; stderr: {self.stderr()}")
        return json.loads(line)

    def finish(self, timeout: float = 10) -> int:
        assert self.proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.close()
        return self.proc.wait(timeout=timeout)

    def stderr(self) -> str:
        if self.proc.poll() is None:
            return "(still running)"
        assert self.proc.stderr is not None
        return self.proc.stderr.read()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def discover_in(ns: str, *calls: dict[str, Any]) -> list[list[dict[str, Any]]]:
    with Child(ns, DISCOVER, list(calls)) as child:
        results: list[list[dict[str, Any]]] = child.read(timeout=30)
        assert child.finish() == 0, child.stderr()
        return results


@pytest.fixture(scope="module")
def adverts() -> Iterator[tuple[Lan, dict[str, Any]]]:
    """alpha (default addresses) and beta (explicit v4 + v6) in the advertiser's
    namespace, then a second "alpha" in the browser's namespace, which must be renamed.

    The clash is staged across namespaces, as between two hosts: zeroconf's probes
    get unicast answers, unreliable between processes sharing port 5353 on one host.
    """
    specs = [
        {"port": 8765, "instance": "alpha", "properties": TXT_ALPHA},
        {"port": 8766, "instance": "beta", "properties": TXT_BETA,
         "addresses": [ADV_IP, "fd77::1"]},
    ]
    dup = [{"port": 8767, "instance": "alpha", "properties": {"v": "1", "ca": CA_OTHER}}]
    with lan() as net, Child(net.adv, ADVERTISE, specs) as first:
        ready = first.read(timeout=30)
        assert ready["advertising"] == [True, True], first.stderr()
        with Child(net.disc, ADVERTISE, dup) as second:
            ready_dup = second.read(timeout=30)
            assert ready_dup["advertising"] == [True], second.stderr()
            ready["instances"] += ready_dup["instances"]
            yield net, ready
            assert second.finish() == 0, second.stderr()
        assert first.finish() == 0, first.stderr()


def test_discover_finds_the_advertised_address_port_and_txt(adverts: Any) -> None:
    net, ready = adverts
    [found] = discover_in(net.disc, {"ca": CA_ALPHA})
    assert found == [{"instance": "alpha", "addresses": [f"{ADV_IP}:8765"],
                      "properties": TXT_ALPHA}]
    assert f"advertising _hearth._tcp.local. as alpha on {ADV_IP}:8765" in ready["log"]


def test_ipv6_addresses_are_bracketed_and_ca_filters_out_other_adverts(adverts: Any) -> None:
    net, ready = adverts
    _, beta_name, renamed = ready["instances"]
    beta, other, nobody = discover_in(
        net.disc, {"ca": CA_BETA.upper()}, {"ca": CA_OTHER},
        {"ca": "1111222233334444", "timeout": 1.0})
    assert beta == [{"instance": beta_name, "addresses": [f"{ADV_IP}:8766", "[fd77::1]:8766"],
                     "properties": TXT_BETA}]
    assert [f["instance"] for f in other] == [renamed]
    assert nobody == []


def test_a_name_taken_on_the_lan_gets_a_random_suffix(adverts: Any) -> None:
    _, ready = adverts
    alpha, _, renamed = ready["instances"]
    assert alpha == "alpha"
    assert re.fullmatch(r"alpha-[0-9a-f]{4}", renamed), renamed


def test_close_sends_goodbye_and_the_coordinator_is_no_longer_found() -> None:
    with lan() as net, Child(net.adv, ADVERTISE, [{"port": 9000, "instance": "gamma"}]) as adv:
        assert adv.read(timeout=30)["advertising"] == [True], adv.stderr()
        with Child(net.disc, WATCH) as watch:
            assert watch.read(timeout=10) == ["Added", "gamma._hearth._tcp.local."]
            assert discover_in(net.disc, {})[0][0]["instance"] == "gamma"
            assert adv.finish() == 0, adv.stderr()
            # Removed within seconds can only come from goodbye packets: the PTR
            # record's TTL is over an hour.
            events = [watch.read(timeout=5)]
            while events[-1][0] != "Removed":
                events.append(watch.read(timeout=5))
            assert events[-1] == ["Removed", "gamma._hearth._tcp.local."]
        assert discover_in(net.disc, {"timeout": 1.0}) == [[]]


def test_no_multicast_means_a_warning_and_an_empty_result_not_a_crash() -> None:
    # A namespace with no interface up at all: zeroconf has nothing to bind.
    with namespaces("x") as (ns,), Child(ns, ADVERTISE, [{"port": 9001,
                                                           "addresses": ["10.9.9.9"]}]) as adv:
        ready = adv.read(timeout=30)
        assert ready["advertising"] == [False]
        assert any("multicast is unavailable" in line for line in ready["log"]), ready
        assert adv.finish() == 0, adv.stderr()
        assert discover_in(ns, {"timeout": 1.0}) == [[]]


# --- no network needed ---------------------------------------------------------------

@pytest.mark.parametrize("properties", [
    {"token": "abc"}, {"admin_password": "x"}, {"apiKey": "k"}, {"client-secret": "s"},
])
def test_credentials_are_refused_in_txt_records(properties: dict[str, str]) -> None:
    with pytest.raises(ValidationError, match="credential"):
        Advertiser(8765, properties=properties)


@pytest.mark.parametrize("kwargs", [
    {"port": 0}, {"port": 70000}, {"port": 8765, "addresses": ["not-an-ip"]},
    {"port": 8765, "instance": ""}, {"port": 8765, "instance": "x" * 64},
    {"port": 8765, "properties": {"a=b": "c"}}, {"port": 8765, "properties": {"v": "x" * 300}},
])
def test_bad_advertiser_arguments_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Advertiser(**kwargs)
