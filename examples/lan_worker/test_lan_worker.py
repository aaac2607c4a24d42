"""The LAN worker example, run for real: a mutual-TLS coordinator, `hearth enroll`,
then ``python examples/lan_worker/worker.py my-laptop.hearth`` as its own process.

The coordinator listens on 0.0.0.0 (so TLS with required client certificates); the
worker finds it at the address written into its bundle and authenticates with the
bundle's certificate; jobs are submitted with the admin bundle of the data dir.
"""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from hearth.client import Client
from hearth.security.bundle import read_bundle

pytestmark = pytest.mark.slow

WORKER = Path(__file__).with_name("worker.py")


def test_the_example_worker_runs_jobs_from_its_bundle(tmp_path: Path) -> None:
    from helpers import CliCoordinator, cli_env, hearth

    data = tmp_path / "data"
    bundle = tmp_path / "my-laptop.hearth"
    with CliCoordinator(data, extra=("--host", "0.0.0.0", "--no-mdns")) as coordinator:
        assert coordinator.url.startswith("https://")
        done = hearth("enroll", "--addr", f"127.0.0.1:{coordinator.port}", "--out",
                      str(bundle), "my-laptop", data=data)
        assert done.returncode == 0, done.stderr
        assert read_bundle(bundle).addresses == (f"127.0.0.1:{coordinator.port}",)
        assert bundle.stat().st_mode & 0o777 == 0o600

        log_path = tmp_path / "worker.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen([sys.executable, str(WORKER), str(bundle)], stdout=log,
                                    stderr=subprocess.STDOUT, env=cli_env(), cwd=tmp_path)
            try:
                with Client(coordinator.url, bundle=data / "admin.hearth") as client:
                    shout = client.submit("shout", "hello from the lan")
                    summed = client.submit("checksum", data=b"some bytes")
                    shouted = client.wait(shout.id, timeout=60)
                    checked = client.wait(summed.id, timeout=60)
                    nodes = {n.name for n in client.nodes()}
                # The README's commands, on the coordinator host (the data dir's bundle).
                cli = hearth("submit", "--kind", "shout", "--payload", "hello", "--wait",
                             data=data)
                cli_sum = hearth("submit", "--kind", "checksum", "--payload", "some bytes",
                                 "--wait", data=data)
                proc.send_signal(signal.SIGTERM)
                code = proc.wait(30)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        text = log_path.read_text(errors="replace")
        assert (shouted.state, shouted.worker) == ("succeeded", "my-laptop"), text
        assert shouted.result is not None and shouted.result.payload == "HELLO FROM THE LAN"
        assert (checked.state, checked.worker) == ("succeeded", "my-laptop"), text
        assert checked.result is not None
        assert checked.result.payload == hashlib.sha256(b"some bytes").hexdigest()
        assert "my-laptop" in nodes
        assert (cli.returncode, cli.stdout.strip()) == (0, '"HELLO"'), cli.stderr
        assert cli_sum.stdout.strip() == f'"{hashlib.sha256(b"some bytes").hexdigest()}"'
        assert code == 0, text
