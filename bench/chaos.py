"""Chaos: crash and cut Hearth's processes while jobs flow, then prove nothing went wrong.

A submitter feeds a steady stream of quick jobs (default 20,000 at 400 jobs/s) to a
real ``hearth coordinator``; real ``hearth worker`` processes run them. Meanwhile:

- random workers are killed with ``kill -9`` and restarted about 1 s later;
- the coordinator is killed with ``kill -9`` twice and restarted on its port and data dir;
- PostgreSQL is restarted once (``pg_ctlcluster ... restart``; PostgreSQL store only);
- one worker's network is cut for longer than the lease TTL (3 s), then restored.

The hosts are network namespaces (``tests/lan/netns.py``): the coordinator runs on
``coord`` with ``--host 0.0.0.0`` (mutual TLS), each worker on its own host ``w1``..
``wN`` with a bundle from ``hearth enroll``, and the submitter on ``coord`` with the
admin bundle. Such a coordinator reaches a local PostgreSQL through its Unix socket.
Every handler appends ``<job_id> <worker> <attempt>`` to a side log (one ``O_APPEND``
write per line) and returns ``{"worker", "attempt"}`` as its result.

At the end, from the store (``hearth.store.open_store``, read only) and the side log:

1. every job whose submit was acknowledged has succeeded;
2. no job has two ``succeeded`` events;
3. no completion was accepted from a stale lease. Events carry the attempt and the
   worker but not the fencing token (a new token is drawn for each attempt, so the
   attempt number names the lease). For each ``succeeded`` event: the job's last
   ``leased`` event before it has the same attempt and worker; no event in between
   ended that lease (expired, timed_out, failed, released, cancelled, dead); the stored
   result, which the handler wrote, names that same worker and attempt (the event
   copies them from the job row, so only the result shows whose outcome was taken);
   and the side log holds that line (the handler really ran that attempt there);
4. after each coordinator kill and PostgreSQL restart, completions per second (from the
   ``succeeded`` events' timestamps) reach 90 % of the pre-fault level (median of the
   1 s bins in the 5 s before the fault) within 10 s: the recovery time runs from the
   kill (or from the moment PostgreSQL stopped answering) to the end of the first 1 s
   window at that level that starts once the coordinator listens again (or PostgreSQL
   answers again). The submitter catches up on what it could not submit meanwhile.

It prints the figures (faults with their times, recovery times, handler runs beyond the
first, stale outcomes the coordinator refused), appends one JSON line to
``bench/results/chaos.jsonl`` and exits 1 if an invariant failed.

Usage (root, for the namespaces and ``pg_ctlcluster``):

    python bench/chaos.py                       # both stores, 20,000 jobs each
    python bench/chaos.py --store postgres --jobs 50000 --rate 500
    python bench/chaos.py --quick               # 1,500 jobs, one fault of each kind
    python bench/chaos.py --no-netns            # loopback only, no network cut

This file is the command line; the run itself is in ``bench/chaoskit/`` (one module per
concept, see its ``__init__``). Never part of the test suite:
``tests/acceptance/test_chaos.py`` calls :func:`run` with :data:`QUICK`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import shutil
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for _path in (ROOT, ROOT / "tests"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from bench.chaoskit.plan import QUICK, Plan  # noqa: E402
from bench.chaoskit.postgres import pg_cluster, pg_socket_url  # noqa: E402
from bench.chaoskit.report import Fault, Report, record, show  # noqa: E402
from bench.chaoskit.run import run  # noqa: E402
from bench.chaoskit.submit import submit_main  # noqa: E402
from bench.common import PG_DSN, fresh_store  # noqa: E402
from lan.netns import available  # noqa: E402

__all__ = ["QUICK", "Fault", "Plan", "Report", "main", "pg_cluster", "pg_socket_url",
           "record", "run", "show"]


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python bench/chaos.py", formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.dedent("""\
            Crash, restart and cut Hearth's processes while jobs flow, then check that
            nothing went wrong. A submitter offers a steady load of quick jobs (a few ms
            each) to a real coordinator; real worker processes run them, each on its own
            network namespace, and write "<job_id> <worker> <attempt>" to a side log.

            faults, at fixed fractions of the flow time (jobs / rate):
              - kill -9 of random workers, each restarted 1 s later (--quick: one)
              - kill -9 of the coordinator, restarted on its port and data dir (two;
                --quick: one)
              - one PostgreSQL restart with pg_ctlcluster (PostgreSQL store only)
              - the last worker's network cut for 7 s (lease TTL 3 s), then restored

            invariants, checked from the store and the side log at the end:
              1. every job whose submit was acknowledged succeeded
              2. no job has two "succeeded" events
              3. no completion came from a stale lease: each success's attempt and
                 worker match the last lease granted before it, no expiry or failure
                 ended that lease first, the stored result was written by that very
                 attempt, and the side log shows that handler run
              4. completions/s back to 90 % of the pre-fault level within 10 s of each
                 coordinator kill and PostgreSQL restart

            It prints progress, then per store: the jobs and events, the faults with
            their times (from the first acknowledged submit), how long each restart
            took and how long throughput took to recover, leases that expired, handler
            runs beyond the first (allowed: delivery is at-least-once) and late outcomes
            the coordinator refused as stale. About a minute per store at the defaults.
            Needs root (namespaces, pg_ctlcluster) unless told otherwise below."""),
        epilog=textwrap.dedent("""\
            examples:
              python bench/chaos.py                      # make chaos: both stores
              python bench/chaos.py --quick --store sqlite
              python bench/chaos.py --store postgres --jobs 50000 --rate 500
              python bench/chaos.py --no-netns --no-pg-restart   # no root needed

            Exit status 1 if an invariant failed; the work dir (data dir, every
            process's log, the side log, acknowledged ids) is kept then and named.
            Each store's run appends one JSON line to bench/results/chaos.jsonl.
            PostgreSQL comes from $HEARTH_TEST_PG_DSN: a fresh database is made and
            dropped; the coordinator reaches it through its Unix socket."""))
    parser.add_argument("--store", choices=["sqlite", "postgres", "both"], default="both",
                        help="which store to run on (default: both, one after the other)")
    parser.add_argument("--quick", action="store_true",
                        help="the short variant CI runs: 1,500 jobs at 100/s, one fault "
                             "of each kind")
    parser.add_argument("--jobs", type=int, help="jobs per store (default 20,000)")
    parser.add_argument("--rate", type=float, help="offered load in jobs/s (default 400)")
    parser.add_argument("--workers", type=int,
                        help="worker processes, at least 2 (default 4; --quick 3)")
    parser.add_argument("--no-netns", action="store_true",
                        help="run every process on loopback; skips the network cut")
    parser.add_argument("--no-pg-restart", action="store_true",
                        help="do not restart PostgreSQL")
    parser.add_argument("--seed", type=int, help="seed for the choice of workers to kill")
    parser.add_argument("--keep", action="store_true",
                        help="keep the work dir of a passing run too")
    return parser.parse_args(argv)


def plan_from(args: argparse.Namespace) -> Plan:
    plan = QUICK if args.quick else Plan()
    changes: dict[str, Any] = {k: v for k, v in (("jobs", args.jobs), ("rate", args.rate),
                                                 ("workers", args.workers)) if v is not None}
    if args.no_netns:
        changes["netns"] = False
        changes["cut_at"] = None
    if args.no_pg_restart:
        changes["pg_restart_at"] = None
    plan = dataclasses.replace(plan, **changes)
    if plan.workers < 2 or plan.jobs < 1 or plan.rate <= 0:
        raise SystemExit("need at least 2 workers, 1 job and a positive rate")
    return plan


@contextlib.contextmanager
def _store(kind: str, path: Path) -> Iterator[str]:
    """A SQLite file in the work dir (kept with it), or a fresh PostgreSQL database."""
    if kind == "sqlite":
        yield f"sqlite:///{path / 'hearth.db'}"
        return
    with fresh_store(kind) as (url, _):
        yield url


def main(argv: list[str]) -> int:
    if argv[:1] == ["_submit"]:
        return submit_main(argv[1:])
    args = parse(argv)
    plan = plan_from(args)
    if plan.netns and (reason := available()) is not None:
        raise SystemExit(f"{reason} Run as root, or pass --no-netns.")
    stores = ["sqlite", "postgres"] if args.store == "both" else [args.store]
    if "postgres" in stores and plan.netns and pg_socket_url(PG_DSN) is None:
        raise SystemExit(f"PostgreSQL at {PG_DSN} has no local Unix socket, so the "
                         "coordinator's namespace cannot reach it; pass --no-netns.")
    failed = False
    for store in stores:
        path = Path(tempfile.mkdtemp(prefix="hearth-chaos-"))
        with _store(store, path) as url:
            report = run(url, path, plan, store=store, seed=args.seed)
            show(report)
            record(report)
            if report.ok and not args.keep:  # else the logs and side log stay
                shutil.rmtree(path, ignore_errors=True)
            failed = failed or not report.ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
