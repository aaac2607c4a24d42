"""The LAN itself: hosts reach each other over TCP, cut() is silent loss both ways,
and leaving the context leaves nothing behind (namespaces, links, processes)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from helpers import eventually
from lan import netns
from lan.netns import Lan, NetnsError, cleanup_stale, list_namespaces, pid_alive

PORT = 7000  # every host is a fresh namespace: any port is free
CLOSED = 7001  # and nothing ever listens on this one

# Answers every connection with "<its name> got <what it read>", forever.
SERVER = """
import socket, sys
name, address, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
server = socket.create_server((address, port))
print("ready", flush=True)
while True:
    conn, _ = server.accept()
    with conn:
        conn.sendall(f"{name} got ".encode() + conn.recv(100))
"""

# Prints one JSON list: per "address:port" target, the reply or what went wrong.
CLIENT = """
import json, socket, sys
timeout, outcomes = float(sys.argv[1]), []
for target in sys.argv[2:]:
    address, port = target.rsplit(":", 1)
    try:
        with socket.create_connection((address, int(port)), timeout=timeout) as conn:
            conn.sendall(b"hello")
            outcomes.append(conn.recv(100).decode())
    except TimeoutError:
        outcomes.append("timeout")
    except OSError as exc:
        outcomes.append(type(exc).__name__)
print(json.dumps(outcomes))
"""


@contextmanager
def servers(net: Lan, *hosts: str) -> Iterator[None]:
    procs = [net.popen(h, [sys.executable, "-c", SERVER, h, net.address(h), str(PORT)],
                       stdout=subprocess.PIPE, text=True) for h in hosts]
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline() == "ready\n"
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.communicate()


def connect(net: Lan, host: str, *targets: tuple[str, int], timeout: float = 5.0) -> list[str]:
    """From ``host``, connect to each (host, port) and return the outcomes."""
    argv = [sys.executable, "-c", CLIENT, str(timeout),
            *(f"{net.address(h)}:{port}" for h, port in targets)]
    done = net.run(host, argv, capture_output=True, text=True, timeout=60, check=True)
    outcomes: list[str] = json.loads(done.stdout)
    return outcomes


def names_in_root() -> str:
    """Every namespace and root-namespace link name, as one text to search."""
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True,
                           check=True).stdout
    return "\n".join([*list_namespaces(), links])


def test_two_hosts_talk_over_tcp(lan: Callable[..., Lan]) -> None:
    net = lan("coord", "w1")
    assert net.address("coord") != net.address("w1")
    assert net.address("coord").rsplit(".", 1)[0] == net.address("w1").rsplit(".", 1)[0]
    with servers(net, "coord"):
        assert connect(net, "w1", ("coord", PORT)) == ["coord got hello"]


def test_cut_drops_silently_both_ways_and_restore_heals(lan: Callable[..., Lan]) -> None:
    net = lan("a", "b", "c")
    with servers(net, "a", "c"):
        # Reachable: a closed port is refused, an open one answers.
        assert connect(net, "a", ("c", CLOSED), ("c", PORT)) == [
            "ConnectionRefusedError", "c got hello"]
        net.cut("c")
        net.cut("c")  # idempotent
        assert net.is_cut("c")
        # Cut: nothing refuses, nothing answers, either way; the others still talk.
        assert connect(net, "a", ("c", CLOSED), timeout=0.5) == ["timeout"]
        assert connect(net, "c", ("a", PORT), timeout=0.5) == ["timeout"]
        assert connect(net, "b", ("a", PORT)) == ["a got hello"]
        net.restore("c")
        assert not net.is_cut("c")
        assert connect(net, "a", ("c", PORT)) == ["c got hello"]
        assert connect(net, "c", ("a", PORT)) == ["a got hello"]


def test_three_hosts_all_reach_each_other(lan: Callable[..., Lan]) -> None:
    net = lan("coord", "w1", "w2")
    with servers(net, *net.hosts):
        for host in net.hosts:
            others = [h for h in net.hosts if h != host]
            assert connect(net, host, *((h, PORT) for h in others)) == [
                f"{h} got hello" for h in others]


# Joins GROUP on its own address, says "ready", prints the first datagram (or "none").
RECEIVER = """
import socket, sys
group, port, address = sys.argv[1], int(sys.argv[2]), sys.argv[3]
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("", port))
sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                socket.inet_aton(group) + socket.inet_aton(address))
sock.settimeout(10)
print("ready", flush=True)
try:
    print(sock.recvfrom(100)[0].decode())
except TimeoutError:
    print("none")
"""
SENDER = """
import socket, sys
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
sock.sendto(b"hello all", (sys.argv[1], int(sys.argv[2])))
"""


def test_multicast_reaches_every_other_host(lan: Callable[..., Lan]) -> None:
    net = lan("coord", "w1", "w2")
    group, port = "239.255.42.99", "7002"
    receivers = [net.popen(h, [sys.executable, "-c", RECEIVER, group, port, net.address(h)],
                           stdout=subprocess.PIPE, text=True) for h in ("w1", "w2")]
    for proc in receivers:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
    net.run("coord", [sys.executable, "-c", SENDER, group, port], check=True, timeout=60)
    assert [proc.communicate(timeout=30)[0] for proc in receivers] == ["hello all\n"] * 2


def test_exit_removes_namespaces_and_links_even_if_the_body_raised() -> None:
    with pytest.raises(RuntimeError, match="boom"), Lan(("a", "b", "c")) as net:
        created = net.namespaces
        assert all(ns in list_namespaces() for ns in created)
        raise RuntimeError("boom")
    assert net.tag not in names_in_root()


def test_a_failing_setup_command_raises_with_its_stderr_and_leaves_nothing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    real = netns._run

    def run(*args: str, tool: str = "ip") -> str:
        if "route" in args:  # a real failure: this route's device does not exist
            args = (*args[:-1], "nosuchdev")
        return real(*args, tool=tool)

    monkeypatch.setattr(netns, "_run", run)
    net = Lan(("a", "b"))
    with pytest.raises(NetnsError, match=r"route add 224\.0\.0\.0/4 dev nosuchdev.*: "
                                         r"exit status \d+: .*nosuchdev"), net:
        pass
    assert net.tag not in names_in_root()


def test_exit_kills_every_process_in_the_namespaces() -> None:
    # The child leaves a grandchild behind in the namespace: not ours to reap.
    spawner = ("import subprocess, sys, time\n"
               "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
               "print(child.pid, flush=True)\n"
               "time.sleep(60)\n")
    with Lan() as net:
        proc = net.popen("a", [sys.executable, "-c", spawner], stdout=subprocess.PIPE,
                         text=True)
        assert proc.stdout is not None
        grandchild = int(proc.stdout.readline())
        assert pid_alive(grandchild)
    proc.stdout.close()
    assert proc.poll() is not None  # killed and reaped at exit
    eventually(lambda: not pid_alive(grandchild), timeout=10, what="the grandchild's death")


def test_cleanup_stale_deletes_only_what_dead_owners_left() -> None:
    dead = subprocess.Popen([sys.executable, "-c", ""])
    dead.wait()
    stale = f"htq{dead.pid}x0000-a"
    subprocess.run(["ip", "netns", "add", stale], check=True)
    try:
        with Lan(prefix="htq") as live:
            cleanup_stale("htq")
            remaining = list_namespaces()
            assert stale not in remaining
            assert all(ns in remaining for ns in live.namespaces)
    finally:
        if stale in list_namespaces():
            subprocess.run(["ip", "netns", "delete", stale], check=True)
