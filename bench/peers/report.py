"""The summary of one run: a table per system, Hearth's ratio to each peer, and the
issue's targets, as plain text for the terminal and as Markdown for the README.

Ratios are oriented so that above 1 means Hearth is better: drain is Hearth ÷ peer,
latency is peer ÷ Hearth. Pure formatting (standard library only): it reads records,
never measures.
"""

from __future__ import annotations

from typing import Any

HEARTH = ("hearth-sqlite", "hearth-postgres")
# Issue 4's targets for Hearth, measured in the same run as the peers.
DRAIN_TARGET = {"hearth-sqlite": 3.0, "hearth-postgres": 1.0}
P50_TARGET_MS, P99_TARGET_MS = 2.0, 5.0


def _by(records: list[dict[str, Any]], workload: str) -> dict[str, dict[str, Any]]:
    return {r["system"]: r for r in records if r["workload"] == workload}


def _ratio(num: Any, den: Any) -> str:
    if not num or not den:
        return "—"
    return f"{num / den:.2f}x"


def rows(records: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    w1, w2 = _by(records, "w1"), _by(records, "w2")
    systems = list(dict.fromkeys(r["system"] for r in records))
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


def summary(records: list[dict[str, Any]], host: dict[str, str], started: str
            ) -> tuple[str, str]:
    header, table = rows(records)
    w1 = next((r for r in records if r["workload"] == "w1" and "jobs" in r), None)
    w2 = next((r for r in records if r["workload"] == "w2" and "jobs" in r), None)
    sizes = []
    if w1:
        sizes.append(f"W1 {w1['jobs']:,} no-op jobs")
    if w2:
        sizes.append(f"W2 {w2['jobs']} jobs, {w2['gap_ms']:g} ms gap")
    title = (f"Peers, {started} on {host['machine']} ({host['cpu']}); "
             f"{'; '.join(sizes)}")
    notes = verdicts(records)

    widths = [max(len(header[i]), *(len(row[i]) for row in table)) if table else
              len(header[i]) for i in range(len(header))]
    line = "  ".join(h.ljust(widths[0]) if i == 0 else h.rjust(widths[i])
                     for i, h in enumerate(header))
    body = ["  ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i])
                      for i, c in enumerate(row)) for row in table]
    text = "\n".join([title, "", line, "-" * len(line), *body, "",
                      "Ratios above 1 mean Hearth is better (drain: Hearth ÷ peer; "
                      "p50: peer ÷ Hearth).", *notes])

    md = [f"{title}", "", "| " + " | ".join(header) + " |",
          "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    md += ["| " + " | ".join(row) + " |" for row in table]
    md += ["", "Ratios above 1 mean Hearth is better (drain: Hearth ÷ peer; p50: "
           "peer ÷ Hearth).", "", *[f"- {n}" for n in notes], ""]
    return text, "\n".join(md)
