"""Hearth side by side with its peers: one harness, one workload definition, many systems.

Systems: Hearth on SQLite and on PostgreSQL (real ``hearth coordinator`` and ``hearth
worker`` processes, from the project's .venv), Celery (Redis broker and results,
acks_late, prefetch 1), RQ, Huey on SQLite and on Redis, Dramatiq (Redis),
Procrastinate (PostgreSQL) and DBOS queues on SQLite and on PostgreSQL. The peers
are pinned in bench/peers/requirements.txt and installed into their own virtualenv,
bench/.peers-venv, on first use (and again whenever that file changes).

Workloads (bench/peers/workloads.py has the exact definitions):
  w1  throughput: enqueue --jobs no-op jobs with the workers stopped (one client call
      per job, and separately the system's bulk API), then start the workers and time
      until the system's own API reports every job complete -> drain jobs/s.
  w2  latency: idle, warmed workers; --latency-jobs jobs submitted one at a time with
      a --gap pause; latency = handler start - submit call start -> p50/p95/p99.
  w3  crash: --crash-jobs 5 ms jobs on two worker instances; kill -9 of one instance's
      process group at 25 % complete, restarted 1 s later -> lost jobs (by
      --crash-deadline), duplicate executions, time from the kill until all are done.
  w4  backlog: handler-start rate with --backlog-deep jobs queued vs --backlog-shallow,
      each queue held at its depth by refilling -> rate at both depths and their ratio.
      A system that would need more than --load-limit seconds to load the deep backlog
      is recorded as skipped.

Every system x workload runs in a fresh process on fresh state (a new database, a
flushed Redis DB of its own: 10 Celery, 11 RQ, 12 Huey, 13 Dramatiq). Services used:
Redis on 127.0.0.1:6379 and PostgreSQL on 127.0.0.1:5432 ($HEARTH_TEST_PG_DSN).

Output: one JSON line per system and workload appended to bench/results/peers.jsonl,
summary tables with Hearth's ratio to each peer and the issue's targets (also written
as Markdown to bench/results/peers-summary.md), and charts peers-throughput.png (W1),
peers-latency.png (W2), peers-crash.png (W3) and peers-backlog.png (W4) under
bench/results/. A system that fails to install or run is recorded as {"error": ...}
and the run goes on.

Examples:
  python bench/peers/run.py                        # everything, full size (~1 h)
  python bench/peers/run.py --quick                # a smoke run of every system
  python bench/peers/run.py --systems hearth-sqlite,celery --workloads w2
  python bench/peers/run.py --jobs 2000 --latency-jobs 100
  python bench/peers/run.py --systems hearth-sqlite --workloads w4 --backlog-deep 100000
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))

from bench.peers.report import summary  # noqa: E402
from bench.peers.systems import SYSTEMS  # noqa: E402

PEERS_VENV = ROOT / "bench" / ".peers-venv"
PROJECT_VENV = ROOT / ".venv"
REQUIREMENTS = HERE / "requirements.txt"
RESULTS = ROOT / "bench" / "results"
WORKLOADS = ("w1", "w2", "w3", "w4")


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def ensure_peers_venv() -> str | None:
    """Create bench/.peers-venv and install the pinned peers if requirements.txt changed.
    Answers None, or why the install failed (then the peers' parts record it)."""
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    stamp = PEERS_VENV / ".requirements.sha256"
    python = venv_python(PEERS_VENV)
    if python.exists() and stamp.exists() and stamp.read_text().strip() == digest:
        return None
    print(f"installing the peers into {PEERS_VENV.relative_to(ROOT)} ...", flush=True)
    if not python.exists():
        made = subprocess.run([sys.executable, "-m", "venv", str(PEERS_VENV)],
                              capture_output=True, text=True)
        if made.returncode:
            return f"python -m venv failed: {made.stderr.strip()[-500:]}"
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    done = subprocess.run([*pip, "-r", str(REQUIREMENTS)], capture_output=True, text=True)
    if done.returncode == 0:
        stamp.write_text(digest)
        return None
    # Install what can be installed, one pin at a time, so that one peer that cannot be
    # had here does not stop the others; its adapter then fails to import, and says so.
    failed = []
    for line in REQUIREMENTS.read_text().splitlines():
        pin = line.split("#", 1)[0].strip()
        if pin and subprocess.run([*pip, pin], capture_output=True).returncode:
            failed.append(pin)
    return f"pip could not install: {', '.join(failed) or 'see pip'}: {done.stderr[-800:]}"


def machine() -> dict[str, str]:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"machine": f"{platform.machine()} {os.cpu_count()} cores, "
                       f"Python {platform.python_version()}", "cpu": cpu}


def run_part(system: str, workload: str, args: argparse.Namespace,
             install_error: str | None) -> dict[str, Any]:
    entry = SYSTEMS[system]
    venv = PROJECT_VENV if entry.venv == "project" else PEERS_VENV
    python = venv_python(venv)
    if not python.exists():
        where = ("run `make bench-peers`, which installs the project into .venv first"
                 if entry.venv == "project" else f"the install failed: {install_error}")
        return {"error": f"{python} is missing: {where}"}
    result = _drive(python, system, workload, args)
    if "error" in result and entry.venv == "peers" and install_error:
        result["error"] += f" (the peers' install was incomplete: {install_error})"
    return result


def _drive(python: Path, system: str, workload: str, args: argparse.Namespace
           ) -> dict[str, Any]:
    jobs = {"w1": args.jobs, "w2": args.latency_jobs, "w3": args.crash_jobs}.get(workload, 0)
    # How long the driver may take: W4 loads and measures twice (each depth may take
    # --timeout to measure and twice --load-limit to load).
    allowed = {"w3": args.crash_deadline + 300,
               "w4": 2 * (args.timeout + 2 * args.load_limit) + 300}.get(
                   workload, args.timeout + 180)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.json"
        command = [str(python), "-m", "bench.peers.driver", "--system", system,
                   "--workload", workload, "--jobs", str(jobs), "--gap", str(args.gap),
                   "--timeout", str(args.timeout), "--out", str(out),
                   "--crash-deadline", str(args.crash_deadline),
                   "--backlog-shallow", str(args.backlog_shallow),
                   "--backlog-deep", str(args.backlog_deep),
                   "--backlog-warmup", str(args.backlog_warmup),
                   "--backlog-windows", str(args.backlog_windows),
                   "--backlog-max-window", str(args.backlog_max_window),
                   "--load-limit", str(args.load_limit)]
        if args.keep:
            command.append("--keep")
        log = Path(tmp) / "driver.log"
        with open(log, "wb") as fh:
            proc = subprocess.Popen(command, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT)
            try:
                proc.wait(timeout=allowed)
            except subprocess.TimeoutExpired:
                proc.terminate()  # the driver stops its workers on SIGTERM
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if out.exists():
            result: dict[str, Any] = json.loads(out.read_text())
            return result
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        return {"error": f"the driver exited {proc.returncode} without a result: {tail}"}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/peers/run.py", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--systems", default=",".join(SYSTEMS), metavar="A,B,...",
                        help="comma-separated systems to run, from: "
                             f"{', '.join(SYSTEMS)} [default: all]")
    parser.add_argument("--workloads", default=",".join(WORKLOADS), metavar="w1,w2,...",
                        help="comma-separated workloads: w1 (throughput), w2 (latency), "
                             "w3 (crash), w4 (backlog) [default: all four]")
    parser.add_argument("--jobs", type=int, default=None,
                        help="W1: no-op jobs enqueued, then drained [default 10000; "
                             "--quick: 500]")
    parser.add_argument("--latency-jobs", type=int, default=None,
                        help="W2: jobs submitted one at a time [default 200; --quick: 30]")
    parser.add_argument("--gap", type=float, default=0.02,
                        help="W2: seconds between one job's handler start and the next "
                             "submit [default 0.02]")
    parser.add_argument("--crash-jobs", type=int, default=None,
                        help="W3: 5 ms jobs on two instances [default 2000; --quick: 400]")
    parser.add_argument("--crash-deadline", type=float, default=None,
                        help="W3: seconds after the kill by which a job not reported "
                             "complete counts as lost [default 120; --quick: 30]")
    parser.add_argument("--backlog-deep", type=int, default=None,
                        help="W4: the deep backlog [default 1000000; --quick: 20000]")
    parser.add_argument("--backlog-shallow", type=int, default=None,
                        help="W4: the shallow backlog [default 1000; --quick: 1000]")
    parser.add_argument("--backlog-warmup", type=int, default=None,
                        help="W4: handler starts before the windows [default 1000; "
                             "--quick: 200]")
    parser.add_argument("--backlog-windows", type=int, default=None,
                        help="W4: windows measured at each depth, the median is the "
                             "figure [default 5; --quick: 3]")
    parser.add_argument("--backlog-max-window", type=int, default=None,
                        help="W4: most handler starts per window (the window is ~2 s of "
                             "work, at least 200) [default 5000; --quick: 1000]")
    parser.add_argument("--load-limit", type=float, default=300.0,
                        help="W4: skip the deep backlog of a system that would need more "
                             "seconds than this to load it [default 300]")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes for a smoke run of the whole harness "
                             "(a few minutes for every system)")
    parser.add_argument("--timeout", type=float, default=900.0,
                        help="seconds one system may take to drain W1 [default 900]")
    parser.add_argument("--no-charts", action="store_true", help="skip the PNG charts")
    parser.add_argument("--results", type=Path, default=RESULTS, metavar="DIR",
                        help="where peers.jsonl, the summary and the charts go "
                             "[default: bench/results]")
    parser.add_argument("--keep", action="store_true",
                        help="keep each part's work dir (worker logs) and print its path")
    args = parser.parse_args()
    if args.jobs is None:
        args.jobs = 500 if args.quick else 10_000
    if args.latency_jobs is None:
        args.latency_jobs = 30 if args.quick else 200
    for name, full, quick in (("crash_jobs", 2_000, 400), ("crash_deadline", 120.0, 30.0),
                              ("backlog_deep", 1_000_000, 20_000),
                              ("backlog_shallow", 1_000, 1_000),
                              ("backlog_warmup", 1_000, 200), ("backlog_windows", 5, 3),
                              ("backlog_max_window", 5_000, 1_000)):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    args.system_list = [s.strip() for s in args.systems.split(",") if s.strip()]
    args.workload_list = [w.strip().lower() for w in args.workloads.split(",") if w.strip()]
    unknown = [s for s in args.system_list if s not in SYSTEMS]
    if unknown:
        parser.error(f"unknown system(s) {', '.join(unknown)}; choose from "
                     f"{', '.join(SYSTEMS)}")
    bad = [w for w in args.workload_list if w not in WORKLOADS]
    if bad:
        parser.error(f"unknown workload(s) {', '.join(bad)}; choose from "
                     f"{', '.join(WORKLOADS)}")
    if min(args.jobs, args.latency_jobs, args.crash_jobs, args.backlog_windows) < 1:
        parser.error("--jobs, --latency-jobs, --crash-jobs and --backlog-windows must be "
                     "at least 1")
    if args.crash_jobs < 4:
        parser.error("--crash-jobs must be at least 4 (the kill comes at 25 %)")
    if not 5 <= args.backlog_shallow <= args.backlog_deep:
        parser.error("--backlog-shallow must be at least 5 and at most --backlog-deep")
    return args


def draw_charts(records: list[dict[str, Any]], results: Path) -> list[str]:
    python = venv_python(PEERS_VENV)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(records, fh)
        path = fh.name
    try:
        done = subprocess.run([str(python), str(HERE / "charts.py"), path, str(results)],
                              capture_output=True, text=True, cwd=ROOT)
    finally:
        os.unlink(path)
    if done.returncode:
        print(f"charts not drawn: {done.stderr.strip()[-800:]}", flush=True)
        return []
    return done.stdout.split()


def main() -> None:
    args = parse_args()
    install_error = None
    if any(SYSTEMS[s].venv == "peers" for s in args.system_list) or not args.no_charts:
        install_error = ensure_peers_venv()
        if install_error:
            print(f"warning: {install_error}", flush=True)
    results: Path = args.results
    results.mkdir(parents=True, exist_ok=True)
    host = machine()
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    records: list[dict[str, Any]] = []
    for workload in args.workload_list:
        for system in args.system_list:
            print(f"{workload} {system} ...", end=" ", flush=True)
            # Every part starts with the page cache written out: what the install or
            # the previous part left dirty would otherwise be flushed during this one,
            # and slow the fsyncs of whichever system happens to come next.
            os.sync()
            load = os.getloadavg()[0]
            began = time.perf_counter()
            result = run_part(system, workload, args, install_error)
            record = {"bench": "peers", "run": started, "system": system,
                      "workload": workload,
                      "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                      **host, "quick": args.quick, "loadavg_1m_before": load, **result}
            records.append(record)
            with open(results / "peers.jsonl", "a") as fh:
                fh.write(json.dumps(record) + "\n")
            print(_brief(record, time.perf_counter() - began), flush=True)
    text, markdown = summary(records, host, started)
    print()
    print(text)
    (results / "peers-summary.md").write_text(markdown)
    print(f"raw figures: {_shown(results / 'peers.jsonl')}; "
          f"table: {_shown(results / 'peers-summary.md')}")
    if not args.no_charts:
        charts = draw_charts(records, results)
        if charts:
            print("charts: " + ", ".join(_shown(Path(c)) for c in charts))


def _shown(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _brief(record: dict[str, Any], took: float) -> str:
    if "error" in record:
        return f"error ({took:.0f}s): {record['error'].splitlines()[0][:200]}"
    extra = f" [{record['interference']}]" if "interference" in record else ""
    if record["workload"] == "w1":
        return (f"drain {record['drain_jobs_per_s']:,.0f} jobs/s, enqueue "
                f"{record['enqueue_per_call_jobs_per_s']:,.0f}/s per call ({took:.0f}s){extra}")
    if record["workload"] == "w3":
        done = record["all_done_after_kill_s"]
        return (f"lost {record['lost']}, {record['duplicate_executions']} duplicate "
                f"executions, all done "
                f"{'never' if done is None else f'{done:.2f} s after the kill'} "
                f"({took:.0f}s){extra}")
    if record["workload"] == "w4":
        shallow = (f"{record['rate_shallow_jobs_per_s']:,.0f} jobs/s at "
                   f"{record['shallow']:,}")
        if record.get("skipped"):
            return f"{shallow}; {record['deep']:,} skipped: {record['skipped']} ({took:.0f}s)"
        return (f"{shallow}, {record['rate_deep_jobs_per_s']:,.0f} at {record['deep']:,} "
                f"= {record['ratio']:.0%} ({took:.0f}s){extra}")
    return (f"p50 {record['p50_ms']:.2f} ms, p95 {record['p95_ms']:.2f} ms, "
            f"p99 {record['p99_ms']:.2f} ms ({took:.0f}s){extra}")


if __name__ == "__main__":
    main()
