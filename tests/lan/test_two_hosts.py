"""Hearth across real network hops: a coordinator on one host, workers on others.

Hosts are network namespaces on one bridge (:mod:`netns`); every Hearth part is the
real CLI as a process on its host. The worker's bundle comes from `hearth enroll`
on the coordinator host; jobs are submitted there too.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest

from hearth.security.bundle import read_bundle
from helpers import HEARTH, cli_env, eventually
from lan.netns import Lan

PORT = 7843

HANDLERS = '''
import os
import pathlib
import time

SIDE = pathlib.Path(os.environ["LAN_SIDE_LOG"])
WHO = os.environ["LAN_WORKER"]


def note(text):
    with SIDE.open("a") as fh:
        fh.write(text + "\\n")


def register(worker):
    @worker.handler("where")
    def where(ctx):
        note(f"ran {ctx.id} {WHO}")
        return {"worker": WHO}

    @worker.handler("finish-late")
    def finish_late(ctx):
        note(f"start {ctx.id} {WHO}")
        if WHO == "w1":  # finish inside the partition: the outcome cannot get out
            while not (SIDE.parent / "cut").exists():
                time.sleep(0.05)
            time.sleep(0.5)
        note(f"done {ctx.id} {WHO}")
        return {"worker": WHO}

    @worker.handler("hold")
    def hold(ctx):
        note(f"start {ctx.id} {WHO}")
        if WHO == "w1" and ctx.cancelled.wait(120):
            note(f"cancelled {ctx.id} {WHO} {ctx.reason}")
            return None
        note(f"done {ctx.id} {WHO}")
        return {"worker": WHO}
'''


@dataclass
class Site:
    """A coordinator running on host ``coord`` of ``net``, and what the test made."""

    net: Lan
    tmp: Path
    data: Path
    logs: list[IO[bytes]]
    coordinator: subprocess.Popen[bytes] | None = None

    def start_coordinator(self) -> None:
        """``hearth coordinator --host 0.0.0.0`` on host ``coord`` (mDNS on)."""
        log = open(self.tmp / "coordinator.log", "ab")  # noqa: SIM115 - closed at the end
        self.logs.append(log)
        (self.data / "coordinator.json").unlink(missing_ok=True)
        self.coordinator = self.net.popen(
            "coord", [HEARTH, "coordinator", "--host", "0.0.0.0", "--port", str(PORT),
                      "--data", str(self.data), "--log-level", "debug"],
            stdout=log, stderr=subprocess.STDOUT, env=cli_env())
        eventually(lambda: (self.data / "coordinator.json").exists()
                   and (self.data / "admin.hearth").exists(), timeout=60,
                   what="the coordinator start")

    def stop_coordinator(self) -> None:
        proc, self.coordinator = self.coordinator, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            proc.wait(30)

    @property
    def side(self) -> Path:
        return self.tmp / "side.log"

    def hearth(self, *args: str) -> subprocess.CompletedProcess[str]:
        """A CLI command on the coordinator host, as its admin (the data dir's bundle)."""
        return self.net.run("coord", [HEARTH, *args, "--data", str(self.data)],
                            capture_output=True, text=True, timeout=90, env=cli_env())

    def enroll(self, name: str, *args: str) -> Path:
        out = self.tmp / f"{name}.hearth"
        done = self.hearth("enroll", name, "--out", str(out), *args)
        assert done.returncode == 0, done.stderr
        return out

    def worker(self, host: str, bundle: Path, *args: str) -> Path:
        log_path = self.tmp / f"{host}.log"
        log = open(log_path, "ab")  # noqa: SIM115 - closed by the fixture
        self.logs.append(log)
        env = cli_env({"PYTHONPATH": str(self.tmp), "LAN_SIDE_LOG": str(self.side),
                       "LAN_WORKER": host})
        self.net.popen(host, [HEARTH, "worker", str(bundle), "--import", "lanjobs",
                              "--log-level", "debug", *args],
                       stdout=log, stderr=subprocess.STDOUT, env=env)
        return log_path

    def submit(self, kind: str, *args: str) -> str:
        done = self.hearth("submit", "--kind", kind, "-o", "json", *args)
        assert done.returncode == 0, done.stderr
        return str(json.loads(done.stdout)["id"])

    def job(self, job_id: str) -> dict[str, Any]:
        done = self.hearth("status", "--job", job_id, "-o", "json")
        assert done.returncode == 0, done.stderr
        found: dict[str, Any] = json.loads(done.stdout)
        return found

    def side_lines(self) -> list[str]:
        try:
            return self.side.read_text().splitlines()
        except FileNotFoundError:
            return []


@pytest.fixture
def site(lan: Callable[..., Lan], tmp_path: Path, request: pytest.FixtureRequest
         ) -> Iterator[Site]:
    hosts = getattr(request, "param", ("coord", "w1"))
    net = lan(*hosts)
    (tmp_path / "lanjobs.py").write_text(HANDLERS)
    found = Site(net, tmp_path, tmp_path / "data", [])
    found.start_coordinator()
    try:
        yield found
    finally:
        found.stop_coordinator()
        for handle in found.logs:
            handle.close()
        # Shown by pytest when the test failed (captured output).
        print((tmp_path / "coordinator.log").read_text(errors="replace")[-4000:])


def test_a_job_runs_on_a_worker_that_found_the_coordinator_over_mdns(site: Site) -> None:
    bundle = site.enroll("w1", "--no-addr")
    assert read_bundle(bundle).addresses == ()
    log = site.worker("w1", bundle)
    job_id = site.submit("where", "--wait")
    job = site.job(job_id)["job"]
    assert job["state"] == "succeeded", job
    assert job["worker"] == "w1"
    assert job["result"]["payload"] == {"worker": "w1"}
    coord = site.net.address("coord")
    text = log.read_text()
    assert f"found the coordinator at {coord}:{PORT} (over mDNS)" in text, text
    assert site.side_lines() == [f"ran {job_id} w1"]
    nodes = site.hearth("nodes", "-o", "json")
    [node] = json.loads(nodes.stdout)
    assert (node["name"], node["status"]) == ("w1", "active")
    # Nothing secret in any log line of the run (both hosts, debug level).
    secrets = [(site.data / "admin.token").read_text().strip()]
    for path in (bundle, site.data / "admin.hearth"):
        key = read_bundle(path).key_pem.decode()
        secrets += [line for line in key.splitlines() if not line.startswith("-----")]
    logs = (site.tmp / "coordinator.log").read_text() + text
    assert "PRIVATE KEY" not in logs
    for secret in secrets:
        assert secret not in logs


def test_the_bundle_carries_the_coordinators_lan_address(site: Site) -> None:
    bundle = site.enroll("w1")
    coord = site.net.address("coord")
    assert read_bundle(bundle).addresses == (f"{coord}:{PORT}",)
    log = site.worker("w1", bundle, "--no-mdns")
    job = site.job(site.submit("where", "--wait"))["job"]
    assert (job["state"], job["worker"]) == ("succeeded", "w1")
    assert f"registered for finish-late, hold, where at https://{coord}:{PORT}" in (
        log.read_text())


def test_a_worker_follows_its_coordinator_to_a_new_address(site: Site) -> None:
    """DHCP gave the coordinator's host another address: the worker finds it again
    over mDNS, and the new server certificate covers the new address."""
    bundle = site.enroll("w1", "--no-addr")
    log = site.worker("w1", bundle)
    assert site.job(site.submit("where", "--wait"))["job"]["worker"] == "w1"
    old = site.net.address("coord")
    new = old.rsplit(".", 1)[0] + ".77"
    site.stop_coordinator()
    site.net.run("coord", ["ip", "addr", "del", f"{old}/24", "dev", "eth0"], check=True)
    site.net.run("coord", ["ip", "addr", "add", f"{new}/24", "dev", "eth0"], check=True)
    site.start_coordinator()
    job = site.job(site.submit("where", "--wait"))["job"]
    assert (job["state"], job["worker"]) == ("succeeded", "w1")
    text = log.read_text()
    assert f"the coordinator moved: https://{new}:{PORT} answers now" in text, text


@pytest.mark.parametrize("site", [("coord", "w1", "w2")], indirect=True)
def test_a_partitioned_workers_jobs_move_to_another_worker(site: Site) -> None:
    """Cut w1 off mid-job: its leases expire, w2 runs the jobs, and when the link
    returns w1's late completion is refused and its other handler was cancelled."""
    w1_log = site.worker("w1", site.enroll("w1"))
    late = site.submit("finish-late", "--lease-ttl", "3s")
    held = site.submit("hold", "--lease-ttl", "3s")
    eventually(lambda: {f"start {late} w1", f"start {held} w1"} <= set(site.side_lines()),
               timeout=30, what="both jobs starting on w1")
    site.net.cut("w1")
    (site.tmp / "cut").touch()
    cut_at = time.monotonic()
    site.worker("w2", site.enroll("w2"))

    def both_done() -> bool:
        return all(site.job(j)["job"]["state"] == "succeeded" for j in (late, held))

    eventually(both_done, timeout=60, what="both jobs succeeding on w2")
    for job_id in (late, held):
        found = site.job(job_id)
        assert found["job"]["worker"] == "w2"
        kinds = [e["type"] for e in found["events"]]
        assert kinds.count("succeeded") == 1, kinds
        assert "expired" in kinds, kinds
    # w1 noticed on its own that its lease ran out, and stopped the handler.
    eventually(lambda: f"cancelled {held} w1 stale" in site.side_lines(), timeout=30,
               what="w1 cancelling the held job's handler")
    assert f"done {late} w1" in site.side_lines()  # finished inside the partition
    assert time.monotonic() - cut_at < 60
    site.net.restore("w1")
    # The late outcome reaches the coordinator now, and is refused as stale.
    eventually(lambda: f"the outcome of job {late} was not needed any more"
               in w1_log.read_text(), timeout=90, what="w1's late outcome being refused")
    found = site.job(late)
    assert [e["type"] for e in found["events"]].count("succeeded") == 1
    assert found["job"]["worker"] == "w2"
    assert f"done {held} w1" not in site.side_lines()
    # w1 is back and re-registered.
    eventually(lambda: "the coordinator at" in w1_log.read_text()
               and "answers again" in w1_log.read_text(), timeout=30,
               what="w1 reconnecting")


