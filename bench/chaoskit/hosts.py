"""Where the processes of a chaos run live: hosts on network namespaces, or loopback.

On namespaces (``tests/lan/netns.py``) the coordinator runs on ``coord`` with ``--host
0.0.0.0`` (mutual TLS) and each worker on its own host ``w1``..``wN`` with a bundle from
``hearth enroll``; a worker's network can be cut and restored. On loopback every "host" is
this machine, the coordinator answers tokens and nothing can be cut.
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path
from typing import IO

from bench.common import hearth_bin
from lan.netns import Lan

PORT = 7843  # the coordinator host is a namespace of its own: the port is free
LAN_PREFIX = "chaos"  # of the namespaces' names


def child_env(extra: dict[str, str]) -> dict[str, str]:
    """The environment of a child process: this one's, without ``HEARTH_*``, plus ``extra``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("HEARTH_")}
    return {**base, **extra}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


class LocalSite:
    """Every "host" is this machine; the coordinator listens on loopback (tokens)."""

    netns = False

    def __init__(self, data: Path, port: int) -> None:
        self.data = data
        self.url = f"http://127.0.0.1:{port}"
        self.port = port

    def spawn(self, host: str, argv: list[str], log: IO[bytes],
              env: dict[str, str]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)

    def coordinator_args(self) -> list[str]:
        return ["--port", str(self.port)]

    def enroll(self, names: list[str]) -> None:
        pass

    def worker_args(self, name: str) -> list[str]:
        return ["--data", str(self.data), "--url", self.url, "--name", name]

    def client_args(self) -> list[str]:
        return ["--url", self.url, "--token", str(self.data / "admin.token")]

    def cut(self, host: str) -> None:
        raise RuntimeError("a network cut needs network namespaces")

    restore = cut

    def close(self) -> None:
        pass


class LanSite(LocalSite):
    """Hosts ``coord`` and ``w1``..``wN`` in network namespaces on one switch."""

    netns = True

    def __init__(self, data: Path, workers: list[str]) -> None:
        self.lan = Lan(("coord", *workers), prefix=LAN_PREFIX)
        self.lan.__enter__()
        super().__init__(data, PORT)
        self.url = f"https://{self.lan.address('coord')}:{PORT}"

    def spawn(self, host: str, argv: list[str], log: IO[bytes],
              env: dict[str, str]) -> subprocess.Popen[bytes]:
        return self.lan.popen(host, argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                              start_new_session=True)

    def coordinator_args(self) -> list[str]:
        return ["--host", "0.0.0.0", "--port", str(PORT), "--no-mdns"]

    def enroll(self, names: list[str]) -> None:
        procs = [self.lan.popen("coord", [hearth_bin(), "enroll", name, "--force", "--out",
                                          str(self.bundle(name)), "--data", str(self.data)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=child_env({}))
                 for name in names]
        for name, proc in zip(names, procs, strict=True):
            out, _ = proc.communicate(timeout=90)
            if proc.returncode != 0:
                raise RuntimeError(f"hearth enroll {name} failed: {out.decode().strip()}")

    def bundle(self, name: str) -> Path:
        return self.data.parent / f"{name}.hearth"

    def worker_args(self, name: str) -> list[str]:
        return [str(self.bundle(name)), "--no-mdns"]

    def client_args(self) -> list[str]:
        return ["--url", self.url, "--bundle", str(self.data / "admin.hearth")]

    def cut(self, host: str) -> None:
        self.lan.cut(host)

    def restore(self, host: str) -> None:
        self.lan.restore(host)

    def close(self) -> None:
        self.lan.__exit__(None, None, None)
