"""Run one workload on one system, in the virtualenv that system is installed in.

``run.py`` starts this as ``<venv>/bin/python -m bench.peers.driver ...`` from the
repository root, once per system and workload, so that every part runs in a fresh
process on fresh state (a new database or a flushed Redis DB). It writes one JSON
object to ``--out``: the figures, or ``{"error": ...}`` with the reason and the tail
of the worker logs. It never leaves worker processes behind: SIGTERM unwinds through
``System.close``, which stops every process group it started.

W4 opens the system itself, once per depth (each on fresh state); the other workloads
run on the one fresh state opened here.

Usage: python -m bench.peers.driver --system NAME --workload w1|w2|w3|w4 --out FILE [...]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from bench.peers import backlog, common, crash, workloads
from bench.peers.common import WORKDIR_ENV
from bench.peers.systems import SYSTEMS
from bench.peers.systems.base import System


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(f"stopped by signal {signum}")


def server_versions(system: System) -> dict[str, str]:
    out: dict[str, str] = {}
    uses = " ".join(system.packages) + " " + system.name
    if "redis" in uses or system.name in {"rq", "celery", "dramatiq"}:
        try:
            out["redis-server"] = common.redis_version()
        except Exception as exc:
            out["redis-server"] = f"unknown ({exc})"
    if "postgres" in system.name or system.name == "procrastinate":
        out["postgresql"] = common.pg_version()
    if "sqlite" in system.name:
        out["sqlite"] = sqlite3.sqlite_version
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    entry = SYSTEMS[args.system]
    workdir = Path(tempfile.mkdtemp(prefix=f"peers-{args.system}-"))
    # Adapters whose app is built at import (Huey, DBOS) put their files here; the
    # worker processes inherit it.
    os.environ[WORKDIR_ENV] = str(workdir)
    try:
        cls = entry.load()
    except Exception as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        return {"error": f"cannot import the {args.system} adapter: "
                         f"{type(exc).__name__}: {exc}"}
    system = cls(workdir)
    out: dict[str, Any] = {"setup": cls.setup_note()}
    try:
        out["versions"] = {"python": sys.version.split()[0], **system.versions()}
        uses_pg = "postgres" in system.name or system.name == "procrastinate"
        pg_before = common.pg_started_at() if uses_pg else None
        out["versions"].update(server_versions(system))
        if args.workload == "w4":
            out.update(backlog.backlog(
                system, shallow=args.backlog_shallow, deep=args.backlog_deep,
                warmup=args.backlog_warmup, windows=args.backlog_windows,
                max_window=args.backlog_max_window, load_limit=args.load_limit,
                timeout=args.timeout))
        else:
            system.open()
            if args.workload == "w1":
                out.update(workloads.throughput(system, args.jobs, timeout=args.timeout))
            elif args.workload == "w2":
                out.update(workloads.latency(system, args.jobs, gap=args.gap))
            else:
                out.update(crash.crash(system, args.jobs, deadline=args.crash_deadline))
        if uses_pg and common.pg_started_at() != pg_before:
            out["interference"] = "PostgreSQL was restarted during this part"
    except BaseException as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
        out["traceback"] = traceback.format_exc(limit=6)
        out["worker_logs"] = {str(g.log_path.name): g.tail() for g in system.started}
    finally:
        try:
            system.close()
        except Exception as exc:
            out.setdefault("error", f"closing failed: {type(exc).__name__}: {exc}")
        if args.keep:
            out["workdir"] = str(workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--system", required=True, choices=sorted(SYSTEMS))
    parser.add_argument("--workload", required=True, choices=["w1", "w2", "w3", "w4"])
    parser.add_argument("--jobs", type=int, required=True, help="W1, W2, W3: jobs")
    parser.add_argument("--gap", type=float, default=0.02)
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--crash-deadline", type=float, default=120.0)
    parser.add_argument("--backlog-shallow", type=int, default=1_000)
    parser.add_argument("--backlog-deep", type=int, default=1_000_000)
    parser.add_argument("--backlog-warmup", type=int, default=1_000)
    parser.add_argument("--backlog-windows", type=int, default=5)
    parser.add_argument("--backlog-max-window", type=int, default=5_000)
    parser.add_argument("--load-limit", type=float, default=300.0)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--keep", action="store_true", help="keep the work dir and logs")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _terminate)
    started = time.perf_counter()
    result = run(args)
    result["wall_s"] = time.perf_counter() - started
    args.out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
