"""W4 backlog: the handler-start rate with a deep queue against a shallow one.

The definition, and why it is so, is in :mod:`bench.peers.workloads`' docstring, with
the other workloads'. This module only runs it; ``bench/backlog.py`` is the same
measurement for Hearth alone, in process.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from typing import Any

from bench.peers.common import ProcessGroup, StampReader
from bench.peers.systems.base import System, TooSlow
from bench.peers.workloads import check_alive

#: Jobs per refill batch; the bounds of the automatic window (handler starts).
REFILL, MIN_WINDOW, MAX_WINDOW = 200, 200, 5_000


def backlog(system: System, *, shallow: int = 1_000, deep: int = 1_000_000,
            warmup: int = 1_000, windows: int = 5, max_window: int = MAX_WINDOW,
            load_limit: float = 300.0, timeout: float = 900.0) -> dict[str, Any]:
    """W4: opens ``system`` itself, once per depth (the driver does not open it)."""
    refill = max(1, min(REFILL, shallow // 5))
    out: dict[str, Any] = {"shallow": shallow, "deep": deep, "warmup": warmup,
                           "windows": windows, "refill": refill, "skipped": None}
    # Hearth's deep backlog is measured whatever its loading takes: the target is its.
    load_for = float("inf") if system.backlog_required else 2 * load_limit
    first = _at_depth(system, shallow, warmup=warmup, windows=windows, window=None,
                      max_window=max_window, refill=refill, load_for=load_for,
                      timeout=timeout)
    out["loader"] = first.pop("loader")
    out["at_shallow"] = first
    out["rate_shallow_jobs_per_s"] = first["jobs_per_s"]
    estimate = deep / first["load_jobs_per_s"]
    if estimate > load_limit and not system.backlog_required:
        out["skipped"] = (f"loading {deep:,} jobs at the {first['load_jobs_per_s']:,.0f} "
                          f"jobs/s measured for {shallow:,} would take ~{estimate:,.0f} s "
                          f"(limit {load_limit:g} s)")
        return out
    try:
        second = _at_depth(system, deep, warmup=warmup, windows=windows,
                           window=first["window"], max_window=max_window, refill=refill,
                           load_for=load_for, timeout=timeout)
    except TooSlow as exc:
        out["skipped"] = f"loading {deep:,} jobs stopped after {load_for:g} s: {exc}"
        return out
    second.pop("loader")
    out["at_deep"] = second
    out["rate_deep_jobs_per_s"] = second["jobs_per_s"]
    out["ratio"] = second["jobs_per_s"] / first["jobs_per_s"]
    return out


def _at_depth(system: System, depth: int, *, warmup: int, windows: int,
              window: int | None, max_window: int, refill: int, load_for: float,
              timeout: float) -> dict[str, Any]:
    """Fresh state, ``depth`` jobs loaded, the workers started, the queue held at its
    depth until the windows are measured (or ``timeout`` passed)."""
    system.stamps.unlink(missing_ok=True)
    system.open()
    try:
        began = time.perf_counter()
        loader = system.load_backlog("stamp", range(depth),
                                     deadline=time.monotonic() + load_for)
        load_s = time.perf_counter() - began
        reader = StampReader(system.stamps)
        group = system.start_workers()
        window, (lowest, mean, dry), complete = _hold(
            system, group, reader, depth, refill=refill, warmup=warmup, windows=windows,
            window=window, max_window=max_window, timeout=timeout)
        system.stop_workers(group)
    finally:
        system.close()
    out = {"depth": depth, "load_s": load_s, "load_jobs_per_s": depth / load_s,
           "loader": loader, "window": window, "lowest_depth": lowest,
           "mean_depth": round(mean), "nearly_dry": round(dry, 3)}
    starts = sorted(reader.starts)
    if complete:
        rates = window_rates(starts, warmup, window, windows)
        return {**out, "jobs_per_s": statistics.median(rates),
                "window_rates": [round(r, 1) for r in rates]}
    # Out of time: the rate over whatever started after the warm-up (or at all).
    tail = starts[warmup:] if len(starts) > warmup + 1 else starts
    rate = (len(tail) - 1) / (tail[-1] - tail[0]) if len(tail) > 1 else 0.0
    return {**out, "jobs_per_s": rate, "timed_out": True, "handler_starts": len(starts)}


def _hold(system: System, group: ProcessGroup, reader: StampReader, depth: int, *,
          refill: int, warmup: int, windows: int, window: int | None, max_window: int,
          timeout: float) -> tuple[int, tuple[int, float, float], bool]:
    """Replace every handler start with a new job until ``warmup`` + ``windows`` x
    window starts were seen. Answers (the window, (the lowest and the mean depth seen
    after the warm-up, and the share of looks that found less than a twentieth of it
    left), whether it got there before ``timeout``)."""
    submitted = next_seq = depth
    chosen = window or 0  # the window, once the warm-up is over
    target = 0
    lowest, total, looks, dry = depth, 0, 0, 0

    def held() -> tuple[int, float, float]:
        return (lowest, total / looks, dry / looks) if looks else (depth, depth, 0.0)

    deadline = time.monotonic() + timeout
    next_alive_check = time.monotonic() + 1
    while True:
        reader.refresh()
        started = len(reader.starts)
        if not target and started >= warmup:
            chosen = chosen or auto_window(sorted(reader.starts)[:warmup], max_window)
            target = warmup + windows * chosen
        if target:
            if started >= target:
                return chosen, held(), True
            lowest = min(lowest, submitted - started)
            total += submitted - started
            dry += submitted - started < max(1, depth // 20)
            looks += 1
        # Replace what started: in batches of ``refill`` with a bulk API, else at once,
        # one call per job (so one call per job either way).
        missing = depth - (submitted - started)
        if missing >= refill or (missing > 0 and not system.bulk):
            batch = refill if system.bulk else min(missing, refill)
            system.enqueue_many("stamp", range(next_seq, next_seq + batch))
            submitted += batch
            next_seq += batch
            continue
        now = time.monotonic()
        if now > deadline:
            return chosen or warmup, held(), False
        if now > next_alive_check:
            check_alive(group)
            next_alive_check = now + 1
        time.sleep(0.005)


def auto_window(warm_starts: Sequence[float], max_window: int = MAX_WINDOW,
                seconds: float = 2.0) -> int:
    """Handler starts in about ``seconds`` at the rate of the second half of the
    warm-up (sorted start times), in hundreds, within [MIN_WINDOW, max_window]. Pure."""
    half = warm_starts[len(warm_starts) // 2:]
    span = half[-1] - half[0] if len(half) > 1 else 0.0
    rate = (len(half) - 1) / span if span > 0 else float(max_window)
    return int(min(max(round(rate * seconds, -2), MIN_WINDOW), max(max_window, MIN_WINDOW)))


def window_rates(starts: Sequence[float], warmup: int, window: int, windows: int
                 ) -> list[float]:
    """The rate of each of ``windows`` windows of ``window`` sorted handler starts after
    the first ``warmup``, as ``bench/backlog.py`` measures it. Pure."""
    rates = []
    for w in range(windows):
        first = warmup + w * window
        last = first + window - 1
        rates.append((window - 1) / (starts[last] - starts[first]))
    return rates
