"""The summary of one run: a table of W1/W2 per system, one of W3 and one of W4 (each
only when the run has that workload), Hearth's ratio to each peer, and the issue's
targets, as plain text for the terminal and as Markdown for the README.

Ratios are oriented so that above 1 means Hearth is better: drain and backlog rate
are Hearth ÷ peer, latency and the time until all are done after a crash are
peer ÷ Hearth. Pure formatting (standard library only): it reads records, never
measures.
"""

from __future__ import annotations

from typing import Any

HEARTH = ("hearth-sqlite", "hearth-postgres")
# Issue 4's targets for Hearth, measured in the same run as the peers.
DRAIN_TARGET = {"hearth-sqlite": 3.0, "hearth-postgres": 1.0}
P50_TARGET_MS, P99_TARGET_MS = 2.0, 5.0
CRASH_TARGET_S = 5.0  # W3: zero lost and all done within this long after the kill
BACKLOG_TARGET = 0.8  # W4: the rate at the deep backlog ÷ the rate at the shallow one
DRY_NOTE = 0.05  # W4: say so when a shallow queue was nearly empty at more looks than this


def _by(records: list[dict[str, Any]], workload: str) -> dict[str, dict[str, Any]]:
    return {r["system"]: r for r in records if r["workload"] == workload}


def _ratio(num: Any, den: Any) -> str:
    if not num or not den:
        return "—"
    return f"{num / den:.2f}x"


def _systems(records: list[dict[str, Any]], *workloads: str) -> list[str]:
    return list(dict.fromkeys(r["system"] for r in records if r["workload"] in workloads))


def rows(records: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """The W1/W2 table."""
    w1, w2 = _by(records, "w1"), _by(records, "w2")
    systems = _systems(records, "w1", "w2")
    header = ["system", "enqueue/call jobs/s", "enqueue bulk jobs/s", "drain jobs/s",
              "drain after 1st jobs/s", "p50 ms", "p95 ms", "p99 ms", "Hearth-SQLite drain ratio",
              "Hearth-PG drain ratio", "Hearth-SQLite p50 ratio", "Hearth-PG p50 ratio"]
    hs_drain = _ok(w1.get("hearth-sqlite"), "drain_jobs_per_s")
    hp_drain = _ok(w1.get("hearth-postgres"), "drain_jobs_per_s")
    hs_p50 = _ok(w2.get("hearth-sqlite"), "p50_ms")
    hp_p50 = _ok(w2.get("hearth-postgres"), "p50_ms")
    table = []
    for name in systems:
        a, b = w1.get(name), w2.get(name)
        drain = _ok(a, "drain_jobs_per_s")
        p50 = _ok(b, "p50_ms")
        peer = name not in HEARTH
        row = [name,
               _cell(a, "enqueue_per_call_jobs_per_s", ",.0f"),
               _cell(a, "enqueue_bulk_jobs_per_s", ",.0f", none="none"),
               _cell(a, "drain_jobs_per_s", ",.0f"),
               _cell(a, "drain_after_first_jobs_per_s", ",.0f"),
               _cell(b, "p50_ms", ".2f"), _cell(b, "p95_ms", ".2f"), _cell(b, "p99_ms", ".2f"),
               _ratio(hs_drain, drain) if peer else "",
               _ratio(hp_drain, drain) if peer else "",
               _ratio(p50, hs_p50) if peer else "",
               _ratio(p50, hp_p50) if peer else ""]
        table.append(row)
    return header, table


def _ok(record: dict[str, Any] | None, key: str) -> Any:
    if record is None or "error" in record:
        return None
    return record.get(key)


def _cell(record: dict[str, Any] | None, key: str, fmt: str, none: str = "—") -> str:
    if record is None:
        return ""
    if "error" in record:
        return "error"
    value = record.get(key)
    return none if value is None else format(value, fmt)


def crash_rows(records: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """The W3 table."""
    w3 = _by(records, "w3")
    header = ["system", "handlers done at kill", "killed in flight", "lost", "duplicate runs",
              "of them after a finished run", "all done after kill s",
              f"≤ {CRASH_TARGET_S:g} s", "Hearth-SQLite time ratio", "Hearth-PG time ratio"]
    hs = _ok(w3.get("hearth-sqlite"), "all_done_after_kill_s")
    hp = _ok(w3.get("hearth-postgres"), "all_done_after_kill_s")
    table = []
    for name in _systems(records, "w3"):
        r = w3[name]
        done = _ok(r, "all_done_after_kill_s")
        peer = name not in HEARTH
        table.append([
            name, _cell(r, "finished_at_kill", ","), _cell(r, "killed_in_flight", ","),
            _cell(r, "lost", ","), _cell(r, "duplicate_executions", ","),
            _cell(r, "duplicates_after_finish", ","),
            _cell(r, "all_done_after_kill_s", ".2f",
                  none=f"not by {r.get('deadline_s', 0):g} s"),
            "" if "error" in r else ("yes" if r.get("within_target") else "no"),
            _ratio(done, hs) if peer else "", _ratio(done, hp) if peer else ""])
    return header, table


def backlog_rows(records: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """The W4 table."""
    w4 = _by(records, "w4")
    header = ["system", "load jobs/s", "jobs/s shallow", "jobs/s deep", "deep ÷ shallow",
              "shallow depth mean / lowest", "Hearth-SQLite deep ratio",
              "Hearth-PG deep ratio"]
    hs = _ok(w4.get("hearth-sqlite"), "rate_deep_jobs_per_s")
    hp = _ok(w4.get("hearth-postgres"), "rate_deep_jobs_per_s")
    table = []
    for name in _systems(records, "w4"):
        r = w4[name]
        deep = _ok(r, "rate_deep_jobs_per_s")
        skipped = "skipped" if r.get("skipped") else "—"
        shallow = r.get("at_shallow") or {}
        loaded = (r.get("at_deep") or shallow).get("load_jobs_per_s")
        partial = any((r.get(k) or {}).get("timed_out") for k in ("at_shallow", "at_deep"))
        peer = name not in HEARTH
        table.append([
            name, "error" if "error" in r else _fmt(loaded, ",.0f"),
            _cell(r, "rate_shallow_jobs_per_s", ",.0f"),
            _cell(r, "rate_deep_jobs_per_s", ",.0f", none=skipped)
            + (" (timed out)" if partial else ""),
            _cell(r, "ratio", ".1%" if (r.get("ratio") or 1) < 0.1 else ".0%", none=skipped),
            "error" if "error" in r else
            f"{_fmt(shallow.get('mean_depth'), ',')} / {_fmt(shallow.get('lowest_depth'), ',')}",
            _ratio(hs, deep) if peer else "", _ratio(hp, deep) if peer else ""])
    return header, table


def _fmt(value: Any, fmt: str) -> str:
    return "—" if value is None else format(value, fmt)


def verdicts(records: list[dict[str, Any]]) -> list[str]:
    """Hearth against the fastest peer and the issue's targets."""
    w1, w2 = _by(records, "w1"), _by(records, "w2")
    lines = []
    peers = {n: _ok(r, "drain_jobs_per_s") for n, r in w1.items() if n not in HEARTH}
    peers = {n: v for n, v in peers.items() if v}
    if peers:
        best = max(peers, key=lambda n: peers[n])
        for name in HEARTH:
            mine = _ok(w1.get(name), "drain_jobs_per_s")
            if mine:
                ratio = mine / peers[best]
                target = DRAIN_TARGET[name]
                lines.append(
                    f"W1 drain, {name} vs the fastest peer ({best}, {peers[best]:,.0f} "
                    f"jobs/s): {mine:,.0f} jobs/s = {ratio:.2f}x (target ≥ {target:g}x: "
                    f"{'met' if ratio >= target else 'NOT met'})")
    lat = {n: _ok(r, "p50_ms") for n, r in w2.items() if n not in HEARTH}
    lat = {n: v for n, v in lat.items() if v}
    best_lat = min(lat, key=lambda n: lat[n]) if lat else None
    for name in HEARTH:
        r = w2.get(name)
        p50, p99 = _ok(r, "p50_ms"), _ok(r, "p99_ms")
        if p50 is None:
            continue
        met = p50 <= P50_TARGET_MS and p99 <= P99_TARGET_MS
        vs = (f"; the lowest peer p50 is {best_lat} at {lat[best_lat]:.2f} ms"
              if best_lat else "")
        lines.append(f"W2 latency, {name}: p50 {p50:.2f} ms, p99 {p99:.2f} ms (target "
                     f"p50 ≤ {P50_TARGET_MS:g}, p99 ≤ {P99_TARGET_MS:g}: "
                     f"{'met' if met else 'NOT met'}){vs}")
    lines += _crash_verdicts(_by(records, "w3"))
    lines += _backlog_verdicts(_by(records, "w4"))
    loads = [r["loadavg_1m_before"] for r in records if "loadavg_1m_before" in r]
    if loads:
        lines.append(f"1-minute load average before each part: {min(loads):.2f} to "
                     f"{max(loads):.2f} (anything else running shares the 2 cores)")
    for r in records:
        if "interference" in r:
            lines.append(f"{r['workload']} {r['system']}: {r['interference']}")
    for r in records:
        if "error" in r:
            lines.append(f"{r['workload']} {r['system']}: error: "
                         f"{r['error'].splitlines()[0][:300]}")
    return lines


def _crash_verdicts(w3: dict[str, dict[str, Any]]) -> list[str]:
    lines = []
    for name in HEARTH:
        r = w3.get(name)
        if r is None or "error" in r:
            continue
        done = r["all_done_after_kill_s"]
        met = r["lost"] == 0 and done is not None and done <= CRASH_TARGET_S
        when = (f"all done {done:.2f} s after the kill" if done is not None
                else f"not all done {r['deadline_s']:g} s after the kill")
        lines.append(f"W3 crash, {name}: {r['lost']} lost, {when}, "
                     f"{r['duplicate_executions']} duplicate executions (target zero lost "
                     f"and all done within {CRASH_TARGET_S:g} s: "
                     f"{'met' if met else 'NOT met'})")
    peers = {n: r for n, r in w3.items() if n not in HEARTH and "error" not in r}
    losing = [f"{n} {r['lost']:,}" for n, r in peers.items() if r["lost"]]
    if losing:
        deadline = max(r["deadline_s"] for r in peers.values())
        lines.append(f"W3 peers with jobs not complete {deadline:g} s after the kill: "
                     f"{', '.join(losing)}")
    return lines


def _backlog_verdicts(w4: dict[str, dict[str, Any]]) -> list[str]:
    lines = []
    for name in HEARTH:
        r = w4.get(name)
        if r is None or "error" in r:
            continue
        if r.get("skipped"):
            lines.append(f"W4 backlog, {name}: the deep backlog was skipped "
                         f"({r['skipped']}): target NOT measured")
            continue
        met = r["ratio"] >= BACKLOG_TARGET
        if any((r.get(k) or {}).get("timed_out") for k in ("at_shallow", "at_deep")):
            lines.append(f"W4 backlog, {name}: a depth was not measured to the end in "
                         "time; its rate is that of the handler starts seen")
        lines.append(f"W4 backlog, {name}: {r['rate_deep_jobs_per_s']:,.0f} jobs/s with "
                     f"{r['deep']:,} queued vs {r['rate_shallow_jobs_per_s']:,.0f} with "
                     f"{r['shallow']:,} = {r['ratio']:.0%} (target ≥ {BACKLOG_TARGET:.0%}: "
                     f"{'met' if met else 'NOT met'})")
    for name, r in w4.items():
        dry = (r.get("at_shallow") or {}).get("nearly_dry")
        if dry is not None and dry > DRY_NOTE:
            lines.append(f"W4 {name}: the {r['shallow']:,} queue was nearly empty at "
                         f"{dry:.0%} of the looks (the refill could not keep up), so that "
                         "rate is partly the feeder's")
        if name in HEARTH or "error" in r:
            continue
        if r.get("skipped"):
            lines.append(f"W4 {name}: the deep backlog was skipped: {r['skipped']}")
        elif (r.get("at_deep") or {}).get("timed_out"):
            deep = r["at_deep"]
            lines.append(f"W4 {name}: {deep['handler_starts']:,} handler starts at "
                         f"{r['deep']:,} queued in the time allowed "
                         f"({deep['jobs_per_s']:,.1f} jobs/s)")
    return lines


def _render(header: list[str], table: list[list[str]]) -> tuple[list[str], list[str]]:
    """A table as aligned text lines and as Markdown lines."""
    widths = [max(len(header[i]), *(len(row[i]) for row in table)) if table else
              len(header[i]) for i in range(len(header))]
    line = "  ".join(h.ljust(widths[0]) if i == 0 else h.rjust(widths[i])
                     for i, h in enumerate(header))
    body = ["  ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i])
                      for i, c in enumerate(row)) for row in table]
    md = ["| " + " | ".join(header) + " |",
          "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    md += ["| " + " | ".join(row) + " |" for row in table]
    return [line, "-" * len(line), *body], md


def summary(records: list[dict[str, Any]], host: dict[str, str], started: str
            ) -> tuple[str, str]:
    def first(workload: str, key: str) -> dict[str, Any] | None:
        return next((r for r in records if r["workload"] == workload and key in r), None)

    w1, w2, w3, w4 = first("w1", "jobs"), first("w2", "jobs"), first("w3", "jobs"), \
        first("w4", "deep")
    sizes = []
    if w1:
        sizes.append(f"W1 {w1['jobs']:,} no-op jobs")
    if w2:
        sizes.append(f"W2 {w2['jobs']} jobs, {w2['gap_ms']:g} ms gap")
    if w3:
        sizes.append(f"W3 {w3['jobs']:,} {w3['work_ms']:g} ms jobs on 2 instances")
    if w4:
        sizes.append(f"W4 {w4['deep']:,} vs {w4['shallow']:,} queued")
    title = (f"Peers, {started} on {host['machine']} ({host['cpu']}); "
             f"{'; '.join(sizes)}")
    sections: list[tuple[str | None, tuple[list[str], list[list[str]]]]] = []
    ratios = []
    if _systems(records, "w1", "w2"):
        sections.append((None, rows(records)))
        ratios.append("drain: Hearth ÷ peer; p50: peer ÷ Hearth")
    if _systems(records, "w3"):
        sections.append((
            f"W3 crash: kill -9 of one of two worker instances at "
            f"{(w3 or {}).get('kill_at_fraction', 0.25):.0%} of the handlers finished, "
            "restarted 1 s later; lost = not reported complete by the deadline",
            crash_rows(records)))
        ratios.append("W3 time: peer ÷ Hearth")
    if _systems(records, "w4"):
        sections.append((
            "W4 backlog: handler starts per second with each queue held at its depth "
            "(median window)", backlog_rows(records)))
        ratios.append("W4 rate at the deep backlog: Hearth ÷ peer")
    ratio_note = f"Ratios above 1 mean Hearth is better ({'; '.join(ratios)})."
    notes = verdicts(records)

    text: list[str] = [title]
    md: list[str] = [title]
    for heading, (header, table) in sections:
        lines, md_lines = _render(header, table)
        text += ["", *([heading] if heading else []), *lines]
        md += ["", *([f"**{heading}**", ""] if heading else []), *md_lines]
    text += ["", ratio_note, *notes]
    md += ["", ratio_note, "", *[f"- {n}" for n in notes], ""]
    return "\n".join(text), "\n".join(md)
