"""Shared pieces of the benchmark scripts (never part of the test suite).

Each script starts a real ``hearth coordinator`` process on a fresh data dir (SQLite)
or a fresh PostgreSQL database, drives it over HTTP exactly as users do, prints its
figures and appends one JSON line per measurement to ``bench/results/results.jsonl``.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PG_DSN = os.environ.get("HEARTH_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


@dataclass
class Coordinator:
    url: str
    token: str
    data: Path
    store_url: str
    proc: subprocess.Popen[bytes]


def hearth_bin() -> str:
    candidate = Path(sys.executable).parent / "hearth"
    return str(candidate) if candidate.exists() else "hearth"


@contextlib.contextmanager
def fresh_store(kind: str) -> Iterator[tuple[str, Path]]:
    """A store URL on a new SQLite file or a new PostgreSQL database, and a data dir."""
    data = Path(tempfile.mkdtemp(prefix="hearth-bench-"))
    if kind == "sqlite":
        try:
            yield f"sqlite:///{data / 'hearth.db'}", data
        finally:
            shutil.rmtree(data, ignore_errors=True)
        return
    import psycopg

    name = f"hearth_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_DSN.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}", data
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        shutil.rmtree(data, ignore_errors=True)


@contextlib.contextmanager
def coordinator(store_url: str, data: Path) -> Iterator[Coordinator]:
    """Run ``hearth coordinator`` as a real process on an ephemeral loopback port."""
    endpoint = data / "coordinator.json"
    endpoint.unlink(missing_ok=True)
    log = open(data / "coordinator.log", "ab")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [hearth_bin(), "coordinator", "--data", str(data), "--port", "0", "--store", store_url],
        stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while not endpoint.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the coordinator did not start; see {data / 'coordinator.log'}")
            time.sleep(0.05)
        url = json.loads(endpoint.read_text())["url"]
        token = (data / "admin.token").read_text().strip()
        yield Coordinator(url, token, data, store_url, proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def machine() -> str:
    return f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}"


def record(name: str, **figures: object) -> None:
    """Print a measurement and append it as one JSON line to bench/results."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    line = {"bench": name, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": machine(), **figures}
    with open(RESULTS / "results.jsonl", "a") as fh:
        fh.write(json.dumps(line) + "\n")
    shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                      for k, v in figures.items())
    print(f"{name}: {shown}", flush=True)
