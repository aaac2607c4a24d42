"""The peer benchmark's summary (bench/peers/report.py) for W3 and W4: the tables, the
ratios' orientation and the target lines, from made-up records."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.peers.report import backlog_rows, crash_rows, summary, verdicts

HOST = {"machine": "x86_64 2 cores", "cpu": "test"}


def _w3(system: str, done: float | None, lost: int = 0) -> dict[str, Any]:
    return {"system": system, "workload": "w3", "jobs": 2000, "work_ms": 5.0,
            "kill_at_fraction": 0.25, "finished_at_kill": 500, "killed_in_flight": 3,
            "lost": lost, "duplicate_executions": 3, "duplicates_after_finish": 0,
            "all_done_after_kill_s": done, "deadline_s": 120.0,
            "within_target": done is not None and done <= 5 and not lost}


def _w4(system: str, shallow: float, deep: float | None,
        skipped: str | None = None) -> dict[str, Any]:
    record: dict[str, Any] = {
        "system": system, "workload": "w4", "shallow": 1000, "deep": 1_000_000,
        "skipped": skipped, "rate_shallow_jobs_per_s": shallow,
        "at_shallow": {"load_jobs_per_s": 10_000.0, "lowest_depth": 700,
                       "mean_depth": 850}}
    if deep is not None:
        record.update(rate_deep_jobs_per_s=deep, ratio=deep / shallow,
                      at_deep={"load_jobs_per_s": 12_000.0, "lowest_depth": 999_000})
    return record


def test_crash_table_ratios_are_peer_time_over_hearth_time() -> None:
    records = [_w3("hearth-sqlite", 2.0), _w3("hearth-postgres", 4.0),
               _w3("dbos-sqlite", 3.0), _w3("celery", None, lost=4)]
    header, table = crash_rows(records)
    row = dict(zip(header, table[2], strict=True))
    assert row["Hearth-SQLite time ratio"] == "1.50x"
    assert row["Hearth-PG time ratio"] == "0.75x"
    celery = dict(zip(header, table[3], strict=True))
    assert celery["all done after kill s"] == "not by 120 s"
    assert celery["lost"] == "4"
    assert celery["Hearth-SQLite time ratio"] == "—"


def test_crash_verdicts_check_lost_and_the_five_seconds() -> None:
    lines = verdicts([_w3("hearth-sqlite", 2.0), _w3("hearth-postgres", 6.5),
                      _w3("huey-redis", None, lost=2)])
    assert any("hearth-sqlite: 0 lost, all done 2.00 s" in ln and ": met)" in ln
               for ln in lines)
    assert any("hearth-postgres" in ln and "NOT met" in ln for ln in lines)
    assert any("huey-redis 2" in ln for ln in lines)


def test_backlog_table_and_target() -> None:
    records = [_w4("hearth-sqlite", 5000, 4500), _w4("hearth-postgres", 3000, 2000),
               _w4("rq", 80, 90), _w4("dbos-sqlite", 250, None, skipped="too slow")]
    header, table = backlog_rows(records)
    rq = dict(zip(header, table[2], strict=True))
    assert rq["deep ÷ shallow"] == "112%"
    assert rq["Hearth-SQLite deep ratio"] == "50.00x"
    assert rq["shallow depth mean / lowest"] == "850 / 700"
    dbos = dict(zip(header, table[3], strict=True))
    assert dbos["jobs/s deep"] == "skipped"
    assert dbos["Hearth-PG deep ratio"] == "—"
    lines = verdicts(records)
    assert any("hearth-sqlite" in ln and "= 90%" in ln and ": met)" in ln for ln in lines)
    assert any("hearth-postgres" in ln and "= 67%" in ln and "NOT met" in ln
               for ln in lines)
    assert any("dbos-sqlite: the deep backlog was skipped: too slow" in ln for ln in lines)
    assert not any("nearly empty" in ln for ln in lines)
    records[2]["at_shallow"]["nearly_dry"] = 0.25
    assert any("W4 rq: the 1,000 queue was nearly empty at 25% of the looks" in ln
               for ln in verdicts(records))


def test_summary_has_a_section_per_workload_present() -> None:
    text, markdown = summary([_w3("hearth-sqlite", 2.0), _w4("hearth-sqlite", 5000, 4500)],
                             HOST, "2026-01-01T00:00:00Z")
    assert "W3 2,000 5 ms jobs on 2 instances" in text
    assert "W4 1,000,000 vs 1,000 queued" in text
    assert "enqueue/call" not in text  # no W1/W2 records, no W1/W2 table
    assert "**W3 crash" in markdown and "**W4 backlog" in markdown


def test_errors_show_in_the_tables() -> None:
    records = [{"system": "rq", "workload": "w3", "error": "boom"},
               {"system": "rq", "workload": "w4", "error": "boom"}]
    assert crash_rows(records)[1][0][3] == "error"
    assert backlog_rows(records)[1][0][1] == "error"
