"""The pure parts of the peer benchmark's W3 and W4 (bench/peers/crash.py, backlog.py):
how a crash's side file is tallied, how backlog windows are sized and rated."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.peers.backlog import MIN_WINDOW, auto_window, window_rates
from bench.peers.crash import tally_work


def _run(seq: int, at: float, instance: str, pid: int, finished: bool = True
         ) -> list[tuple[int, float, str, int, str]]:
    events = [(seq, at, instance, pid, "s")]
    if finished:
        events.append((seq, at + 0.005, instance, pid, "d"))
    return events


def test_tally_clean_run_has_no_duplicates() -> None:
    events = [e for seq in range(4) for e in _run(seq, seq, "1.0", 10)]
    tally = tally_work(events, 4, killed="0.0")
    assert tally == {"executions": 4, "duplicate_executions": 0,
                     "duplicates_after_finish": 0, "never_run": 0,
                     "killed_instance_runs": 0, "killed_in_flight": 0,
                     "runs_by_instance": {"1.0": 4}}


def test_tally_tells_reruns_of_interrupted_jobs_from_reruns_of_finished_ones() -> None:
    events = [
        *_run(0, 1.0, "0.0", 10, finished=False),  # killed mid-run, then run again
        *_run(0, 3.0, "1.0", 20),
        *_run(1, 1.0, "0.0", 10),  # finished, but its outcome died with the process
        *_run(1, 3.0, "0.1", 30),
        *_run(2, 1.0, "1.0", 20),
    ]
    tally = tally_work(events, 4, killed="0.0")
    assert tally["executions"] == 5
    assert tally["duplicate_executions"] == 2
    assert tally["duplicates_after_finish"] == 1
    assert tally["never_run"] == 1
    assert tally["killed_instance_runs"] == 2
    assert tally["killed_in_flight"] == 1
    assert tally["runs_by_instance"] == {"0.0": 2, "0.1": 1, "1.0": 2}


def test_tally_ignores_warmup_jobs_and_matches_ends_by_process() -> None:
    events = [
        *_run(-1, 0.5, "0.0", 10),  # a warm-up job
        (0, 1.0, "0.0", 10, "s"),
        (0, 2.0, "1.0", 20, "s"),
        (0, 2.1, "1.0", 20, "d"),  # the end of the second run, not the first
    ]
    tally = tally_work(events, 1, killed="0.0")
    assert tally["executions"] == 2
    assert tally["killed_in_flight"] == 1
    assert tally["duplicates_after_finish"] == 0


def test_window_rates_measure_each_window_after_the_warmup() -> None:
    starts = [i / 100 for i in range(10)] + [0.1 + i / 1000 for i in range(20)]
    rates = window_rates(starts, warmup=10, window=10, windows=2)
    assert rates == pytest.approx([1000.0, 1000.0])


@pytest.mark.parametrize(("per_s", "expected"), [
    (10_000, 5_000),  # capped
    (1_234, 2_500),   # two seconds, in hundreds
    (20, MIN_WINDOW),  # at least MIN_WINDOW
])
def test_auto_window_is_two_seconds_of_the_warmup_rate(per_s: int, expected: int) -> None:
    starts = [i / per_s for i in range(1_000)]
    assert auto_window(starts, max_window=5_000) == expected


def test_auto_window_of_a_warmup_that_took_no_time_is_the_largest() -> None:
    assert auto_window([1.0] * 10, max_window=1_000) == 1_000
