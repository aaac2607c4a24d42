"""A real LAN of network namespaces, for tests whose traffic must cross a network.

:class:`Lan` builds one Ethernet segment: every host is a network namespace with one
interface, ``eth0``, cabled by a veth pair to a port of a Linux bridge (the "switch")
that lives in a namespace of its own. Commands run on a host through
``ip netns exec``. Nothing is ever created in the root namespace, so cleaning up is
deleting namespaces, and concurrent runs cannot collide on interface names (``eth0``
and ``p0``, ``p1``... exist only inside their namespaces).

Why a switch even for two hosts: :meth:`Lan.cut` must behave like a cable pulled
beyond a switch: the host's link stays up, its sends "succeed" and silently vanish,
nothing comes back, and the peers' kernels do not know either. Cutting disables the
host's switch port (bridge port state ``disabled``), which drops every frame both
ways *outside* both hosts' network stacks. The alternatives were worse here:
``sch_netem`` is often not built (it is not on the kernel this was written on),
``nft``/``iptables`` are often not installed, and a dropping qdisc on the host's own
interface is seen by its TCP as local congestion, which has its own retry and give-up
rules (500 ms resource probes), not those of a lost packet. Every host has permanent
neighbour entries for the others, so ARP never runs: a cut host gives a timeout,
never ``EHOSTUNREACH`` once an ARP entry would have expired.

Names: everything of one :class:`Lan` is tagged ``<prefix><pid>x<4 hex>`` (the switch
namespace is the tag itself, a host's is ``<tag>-<host>``), so :func:`cleanup_stale`
can find what a crashed run left behind and tell from the pid whether its owner is
gone. It must never touch namespaces whose owner is alive: concurrent runs share the
machine.

Needs Linux, root, the bridge module and iproute2 (``ip`` and ``bridge``);
:func:`available` says why not, if not.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any

#: The one interface of every host.
INTERFACE = "eth0"
_HOST_NAME = re.compile(r"[a-z0-9][a-z0-9_]{0,31}")
_COMMAND_TIMEOUT = 30.0
_BRIDGE = "br0"
_PORT_STATES = {"disabled": "0", "forwarding": "3"}


class NetnsError(RuntimeError):
    """A command building or tearing down a :class:`Lan` failed."""

    def __init__(self, command: Sequence[str], detail: str) -> None:
        self.command = list(command)
        super().__init__(f"`{shlex.join(self.command)}` failed: {detail}")


@functools.cache
def _tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")
    if path is None:
        raise NetnsError([name], f"the `{name}` command (iproute2) is not installed")
    return path


def _ip() -> str:
    return _tool("ip")


def _run(*args: str, tool: str = "ip") -> str:
    """Run ``ip ARGS`` (or another iproute2 ``tool``); return its stdout, raise
    :class:`NetnsError` on failure."""
    command = [_tool(tool), *args]
    try:
        done = subprocess.run(command, capture_output=True, text=True,
                              timeout=_COMMAND_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NetnsError(command, str(exc)) from exc
    if done.returncode != 0:
        raise NetnsError(command, f"exit status {done.returncode}: "
                                  f"{done.stderr.strip() or '(no stderr)'}")
    return done.stdout


def list_namespaces() -> list[str]:
    """The names of all named network namespaces (``ip netns list``)."""
    # `ip netns list` prints "name" or "name (id: 3)", one per line.
    return [line.split()[0] for line in _run("netns", "list").splitlines() if line.strip()]


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie is dead: it holds no namespace)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _kill_all(namespace: str, timeout: float = 10.0) -> None:
    """SIGKILL every process in ``namespace`` until none is left (they may fork)."""
    deadline = time.monotonic() + timeout
    while True:
        pids = [int(p) for p in _run("netns", "pids", namespace).split()]
        if not pids:
            return
        if time.monotonic() > deadline:
            raise NetnsError(["ip", "netns", "pids", namespace],
                             f"processes {pids} survived SIGKILL for {timeout:g} s")
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)


def _delete_namespace(namespace: str) -> None:
    _kill_all(namespace)
    _run("netns", "delete", namespace)


class Lan:
    """Hosts (network namespaces) on one switched Ethernet segment.

    ``with Lan(hosts=("coord", "w1")) as lan:`` creates the namespaces; leaving the
    block, even by an exception, kills every process still in them and deletes them
    with their links. Each host gets ``10.<a>.<b>.<n>/24`` on ``eth0`` (``n`` is its
    position + 1, the /24 random in 10.200-250.x.x), ``lo`` up, the MULTICAST flag and
    a ``224.0.0.0/4`` route on ``eth0``, and permanent ARP entries for the others.
    Host names are lowercase letters, digits and ``_``.
    """

    interface = INTERFACE

    def __init__(self, hosts: Sequence[str] = ("a", "b"), *, prefix: str = "hth") -> None:
        hosts = tuple(hosts)
        if len(hosts) < 2:
            raise ValueError(f"a LAN needs at least two hosts, not {hosts!r}")
        if len(set(hosts)) != len(hosts):
            raise ValueError(f"host names must be unique: {hosts!r}")
        for host in hosts:
            if not _HOST_NAME.fullmatch(host):
                raise ValueError(f"bad host name {host!r}: use [a-z0-9_], at most 32")
        if not re.fullmatch(r"[a-z]{1,8}", prefix):
            raise ValueError(f"bad prefix {prefix!r}: use 1 to 8 lowercase letters")
        self.hosts = hosts
        self.tag = f"{prefix}{os.getpid()}x{secrets.token_hex(2)}"
        net = ipaddress.IPv4Network(
            f"10.{secrets.choice(range(200, 251))}.{secrets.randbelow(256)}.0/24")
        self._addresses = {h: net[i + 1] for i, h in enumerate(hosts)}
        self._cut: set[str] = set()
        self._created: list[str] = []  # namespaces, in creation order
        self._links: list[str] = []  # in the switch: the bridge, the cables' ends
        self._procs: list[subprocess.Popen[Any]] = []

    def __repr__(self) -> str:
        return f"Lan({self.tag}, hosts={self.hosts!r})"

    # -- lifecycle -------------------------------------------------------------------

    def __enter__(self) -> Lan:
        try:
            self._create()
        except BaseException as exc:
            try:
                self._destroy()
            except NetnsError as cleanup:
                exc.add_note(f"and cleaning up failed too: {cleanup}")
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._destroy()

    def _create(self) -> None:
        switch = self.tag
        _run("netns", "add", switch)
        self._created.append(switch)
        _run("-n", switch, "link", "add", _BRIDGE, "type", "bridge", "mcast_snooping", "0")
        self._links.append(_BRIDGE)
        _run("-n", switch, "link", "set", _BRIDGE, "up")
        for host in self.hosts:
            ns = self.namespace(host)
            _run("netns", "add", ns)
            self._created.append(ns)
            port = self._port(host)
            _run("-n", switch, "link", "add", port, "type", "veth", "peer", "name",
                 INTERFACE, "address", self._mac(host), "netns", ns)
            self._links.append(port)
            _run("-n", switch, "link", "set", port, "master", _BRIDGE, "up")
            _run("-n", ns, "link", "set", "lo", "up")
            _run("-n", ns, "addr", "add", f"{self.address(host)}/24", "dev", INTERFACE)
            _run("-n", ns, "link", "set", INTERFACE, "multicast", "on", "up")
            _run("-n", ns, "route", "add", "224.0.0.0/4", "dev", INTERFACE)
            for other in self.hosts:
                if other != host:
                    _run("-n", ns, "neigh", "replace", self.address(other), "lladdr",
                         self._mac(other), "dev", INTERFACE, "nud", "permanent")

    def _destroy(self) -> None:
        errors: list[BaseException] = []
        for ns in reversed(self._created):
            try:
                _kill_all(ns)
            except NetnsError as exc:
                errors.append(exc)
        procs, self._procs = self._procs, []
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired as exc:
                errors.append(exc)
        # Deleting the switch's ends of the cables removes the veth pairs and the bridge
        # synchronously; deleting a namespace alone leaves that to a kernel worker.
        links, self._links = self._links, []
        for link in reversed(links):
            try:
                _run("-n", self.tag, "link", "delete", link)
            except NetnsError as exc:
                errors.append(exc)
        created, self._created = self._created, []
        for ns in reversed(created):
            try:
                _delete_namespace(ns)
            except NetnsError as exc:
                errors.append(exc)
        self._cut.clear()
        if errors:
            raise errors[0]

    # -- addressing ------------------------------------------------------------------

    def address(self, host: str) -> str:
        """The host's IPv4 address on the LAN."""
        return str(self._addresses[self._known(host)])

    def namespace(self, host: str) -> str:
        """The name of the host's network namespace (for ``ip netns exec``)."""
        return f"{self.tag}-{self._known(host)}"

    @property
    def namespaces(self) -> list[str]:
        """Every namespace of this LAN: the switch's, then the hosts'."""
        return [self.tag, *(self.namespace(h) for h in self.hosts)]

    def _port(self, host: str) -> str:
        return f"p{self.hosts.index(host)}"

    def _mac(self, host: str) -> str:
        # Locally administered, derived from the address: unique within the LAN.
        a, b, c, d = self._addresses[host].packed
        return f"02:00:{a:02x}:{b:02x}:{c:02x}:{d:02x}"

    def _known(self, host: str) -> str:
        if host not in self._addresses:
            raise KeyError(f"no host {host!r} on {self!r}")
        return host

    # -- running things on a host ----------------------------------------------------

    def command(self, host: str, argv: Sequence[str]) -> list[str]:
        """``argv`` prefixed to run on ``host`` (``ip netns exec <ns> ...``)."""
        return [_ip(), "netns", "exec", self.namespace(host), *argv]

    def popen(self, host: str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` on ``host``; ``kwargs`` go to :class:`subprocess.Popen`
        (``env`` is passed through to the command). Killed and reaped at exit."""
        proc = subprocess.Popen(self.command(host, argv), **kwargs)
        self._procs.append(proc)
        return proc

    def run(self, host: str, argv: Sequence[str],
            **kwargs: Any) -> subprocess.CompletedProcess[Any]:
        """Run ``argv`` on ``host`` to completion; ``kwargs`` go to :func:`subprocess.run`."""
        return subprocess.run(self.command(host, argv), **kwargs)

    # -- partitions ------------------------------------------------------------------

    def cut(self, host: str) -> None:
        """Partition ``host`` from the others: its frames are silently dropped both
        ways at the switch, while its link stays up (a cable pulled beyond a switch).
        Connections to or from it time out; nothing is refused. Idempotent."""
        self._set_port(self._known(host), "disabled")
        self._cut.add(host)

    def restore(self, host: str) -> None:
        """Undo :meth:`cut`. Idempotent."""
        self._set_port(self._known(host), "forwarding")
        self._cut.discard(host)

    def is_cut(self, host: str) -> bool:
        return self._known(host) in self._cut

    def _set_port(self, host: str, state: str) -> None:
        # `bridge link set`, not `ip link set ... type bridge_slave state N`: the latter
        # exits 0 and changes nothing with some iproute2 versions; hence the check too.
        port = self._port(host)
        _run("-n", self.tag, "link", "set", "dev", port, "state", _PORT_STATES[state],
             tool="bridge")
        shown = _run("-n", self.tag, "-j", "link", "show", "dev", port, tool="bridge")
        now = [p.get("state") for p in json.loads(shown)]
        if now != [state]:
            raise NetnsError(["bridge", "-n", self.tag, "link", "set", "dev", port],
                             f"the switch port of {host} is {now}, not {state}")


@functools.cache
def available() -> str | None:
    """``None`` if a :class:`Lan` can be built here, else why not (a sentence)."""
    if not sys.platform.startswith("linux"):
        return f"Network namespaces need Linux, not {sys.platform}."
    if os.geteuid() != 0:
        return f"Network namespaces need root; the tests run as uid {os.geteuid()}."
    try:
        with Lan(("a", "b")) as lan:
            lan.cut("a")
            lan.restore("a")
            lan.run("a", [sys.executable, "-c", ""], check=True, capture_output=True,
                    timeout=_COMMAND_TIMEOUT)
    except (NetnsError, OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", None) or exc
        return f"Network namespaces cannot be used here: {str(detail).strip()}"
    return None


def cleanup_stale(prefix: str = "hth") -> None:
    """Delete the namespaces (and with them the links) of earlier :class:`Lan`\\ s with
    this ``prefix`` whose creating process is dead: what crashed runs left behind."""
    owned = re.compile(rf"{re.escape(prefix)}(\d+)x[0-9a-f]{{4}}(-|$)")
    for ns in list_namespaces():
        match = owned.match(ns)
        if match and not pid_alive(int(match.group(1))):
            try:
                _delete_namespace(ns)
            except NetnsError:
                if ns in list_namespaces():  # else a concurrent cleanup got there first
                    raise


__all__ = ["INTERFACE", "Lan", "NetnsError", "available", "cleanup_stale", "list_namespaces",
           "pid_alive"]
