"""Draw the charts of one peers run (matplotlib, from bench/.peers-venv).

Usage: python bench/peers/charts.py RECORDS.json OUT_DIR

Reads the run's records (the lines run.py appended to peers.jsonl) and writes
``peers-throughput.png`` (W1: drain, per-call and bulk enqueue rates),
``peers-latency.png`` (W2: p50/p95/p99), ``peers-crash.png`` (W3: time from the kill
until all jobs were complete, or the jobs still missing at the deadline) and
``peers-backlog.png`` (W4: the rate at both depths) into OUT_DIR, each only when the
run has that workload; prints the paths written. Rate and latency scales are
logarithmic: the systems differ by orders of magnitude.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

HEARTH_COLOUR, PEER_COLOUR = "#c0392b", "#7f8c8d"


def _ok(records: list[dict[str, Any]], workload: str) -> list[dict[str, Any]]:
    return [r for r in records if r["workload"] == workload and "error" not in r]


def _subtitle(records: list[dict[str, Any]]) -> str:
    first = records[0]
    return f"{first['run'][:10]} · {first['machine']} · {first.get('cpu', '')}"


def _label_bars(ax: Any, bars: Any, fmt: str) -> None:
    for bar in bars:
        width = bar.get_width()
        if width > 0:
            ax.text(width * 1.05, bar.get_y() + bar.get_height() / 2, format(width, fmt),
                    va="center", fontsize=7)


def throughput(records: list[dict[str, Any]], out: Path) -> Path | None:
    rows = sorted(_ok(records, "w1"), key=lambda r: r["drain_jobs_per_s"])
    if not rows:
        return None
    names = [r["system"] for r in rows]
    colours = [HEARTH_COLOUR if n.startswith("hearth") else PEER_COLOUR for n in names]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 0.45 * len(rows) + 2),
                                      sharey=True)
    bars = left.barh(names, [r["drain_jobs_per_s"] for r in rows], color=colours)
    _label_bars(left, bars, ",.0f")
    left.set_xscale("log")
    left.set_xlim(right=max(r["drain_jobs_per_s"] for r in rows) * 4)
    left.set_xlabel("jobs/s (log scale)")
    left.set_title(f"W1 drain: {rows[0]['jobs']:,} queued no-op jobs, worker start → "
                   "all complete", fontsize=9)
    y = range(len(rows))
    h = 0.4
    per_call = right.barh([i + h / 2 for i in y], [r["enqueue_per_call_jobs_per_s"]
                          for r in rows], height=h, color="#2980b9", label="one call per job")
    bulk = right.barh([i - h / 2 for i in y], [r["enqueue_bulk_jobs_per_s"] or 0
                      for r in rows], height=h, color="#27ae60", label="bulk API")
    _label_bars(right, per_call, ",.0f")
    _label_bars(right, bulk, ",.0f")
    right.set_xscale("log")
    right.set_xlim(right=max(max(r["enqueue_per_call_jobs_per_s"],
                                 r["enqueue_bulk_jobs_per_s"] or 0) for r in rows) * 4)
    right.set_xlabel("jobs/s (log scale); no green bar: no bulk API")
    right.set_title("W1 enqueue, workers stopped", fontsize=9)
    right.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2)
    fig.suptitle(f"Hearth and its peers: throughput\n{_subtitle(rows)}", fontsize=10)
    fig.tight_layout()
    path = out / "peers-throughput.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def latency(records: list[dict[str, Any]], out: Path) -> Path | None:
    rows = sorted(_ok(records, "w2"), key=lambda r: -r["p50_ms"])
    if not rows:
        return None
    names = [r["system"] for r in rows]
    fig, ax = plt.subplots(figsize=(9, 0.55 * len(rows) + 2))
    h = 0.27
    for offset, key, colour in ((h, "p50_ms", "#27ae60"), (0, "p95_ms", "#f39c12"),
                                (-h, "p99_ms", "#c0392b")):
        bars = ax.barh([i + offset for i in range(len(rows))], [r[key] for r in rows],
                       height=h, color=colour, label=key.replace("_ms", ""))
        _label_bars(ax, bars, ".1f")
    ax.set_yticks(range(len(rows)), names)
    for tick in ax.get_yticklabels():
        if tick.get_text().startswith("hearth"):
            tick.set_fontweight("bold")
    ax.set_xscale("log")
    ax.set_xlim(right=max(r["p99_ms"] for r in rows) * 4)
    ax.set_xlabel("ms, handler start - submit call start (log scale)")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3)
    ax.set_title(f"Hearth and its peers: W2 latency at idle, {rows[0]['jobs']} jobs, "
                 f"{rows[0]['gap_ms']:g} ms apart\n{_subtitle(rows)}", fontsize=10)
    fig.tight_layout()
    path = out / "peers-latency.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def crash(records: list[dict[str, Any]], out: Path) -> Path | None:
    rows = _ok(records, "w3")
    if not rows:
        return None
    deadline = max(r["deadline_s"] for r in rows)
    rows.sort(key=lambda r: -(r["all_done_after_kill_s"] or deadline + r["lost"]))
    names = [r["system"] for r in rows]
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 2))
    for i, r in enumerate(rows):
        done = r["all_done_after_kill_s"]
        colour = HEARTH_COLOUR if r["system"].startswith("hearth") else PEER_COLOUR
        if done is None:
            ax.barh(i, deadline, color="white", edgecolor=colour, hatch="//")
            ax.text(deadline * 1.02, i, f"{r['lost']:,} of {r['jobs']:,} not done by "
                    f"{deadline:g} s", va="center", fontsize=7)
        else:
            ax.barh(i, done, color=colour)
            ax.text(done * 1.02 + 0.05, i, f"{done:.2f} s, {r['lost']} lost, "
                    f"{r['duplicate_executions']} re-run", va="center", fontsize=7)
    ax.axvline(r["target_s"], color="#27ae60", linestyle="--", linewidth=1)
    ax.text(r["target_s"], len(rows) - 0.4, f" Hearth target {r['target_s']:g} s",
            color="#27ae60", fontsize=7)
    ax.set_yticks(range(len(rows)), names)
    for tick in ax.get_yticklabels():
        if tick.get_text().startswith("hearth"):
            tick.set_fontweight("bold")
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlim(0, deadline * 4)
    ax.set_xlabel("seconds from the kill until every job was reported complete (symmetric "
                  "log scale)\nhatched: not all complete by the deadline")
    ax.set_title(f"Hearth and its peers: W3 crash, {rows[0]['jobs']:,} jobs of "
                 f"{rows[0]['work_ms']:g} ms on 2 instances, kill -9 of one at "
                 f"{rows[0]['kill_at_fraction']:.0%} done, restart 1 s later\n{_subtitle(rows)}",
                 fontsize=10)
    fig.tight_layout()
    path = out / "peers-crash.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def backlog(records: list[dict[str, Any]], out: Path) -> Path | None:
    rows = sorted(_ok(records, "w4"), key=lambda r: r["rate_shallow_jobs_per_s"])
    if not rows:
        return None
    names = [r["system"] for r in rows]
    fig, ax = plt.subplots(figsize=(9, 0.6 * len(rows) + 2))
    h = 0.38
    shallow = ax.barh([i + h / 2 for i in range(len(rows))],
                      [r["rate_shallow_jobs_per_s"] for r in rows], height=h,
                      color="#2980b9", label=f"{rows[0]['shallow']:,} queued")
    deep = ax.barh([i - h / 2 for i in range(len(rows))],
                   [r.get("rate_deep_jobs_per_s") or 0 for r in rows], height=h,
                   color="#8e44ad", label=f"{rows[0]['deep']:,} queued")
    _label_bars(ax, shallow, ",.0f")
    _label_bars(ax, deep, ",.0f")
    top = max(r["rate_shallow_jobs_per_s"] for r in rows)
    ax.set_xscale("log")
    ax.set_xlim(right=top * 30)
    left = ax.get_xlim()[0]
    for i, r in enumerate(rows):
        if r.get("skipped"):
            ax.text(left * 1.2, i - h / 2, f"{r['deep']:,}: skipped, loading would take "
                    "too long", va="center", fontsize=7, color="#8e44ad")
        elif r.get("ratio") is not None:
            ax.text(top * 12, i, f"{r['ratio']:.0%}", va="center", fontsize=8,
                    fontweight="bold" if r["system"].startswith("hearth") else None)
        dry = r["at_shallow"].get("nearly_dry", 0.0)
        if dry > 0.05:
            ax.text(top * 12, i + h, f"{r['shallow']:,} nearly empty at {dry:.0%} of looks",
                    va="center", fontsize=6, color="#2980b9")
    ax.set_yticks(range(len(rows)), names)
    for tick in ax.get_yticklabels():
        if tick.get_text().startswith("hearth"):
            tick.set_fontweight("bold")
    ax.set_xlabel("handler starts/s with the queue held at its depth, median window "
                  "(log scale)\nright: deep ÷ shallow; \"nearly empty\": the refill could "
                  "not keep up with the workers")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2)
    ax.set_title(f"Hearth and its peers: W4 leasing with a deep backlog vs a shallow one"
                 f"\n{_subtitle(rows)}", fontsize=10)
    fig.tight_layout()
    path = out / "peers-backlog.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main() -> None:
    records = json.loads(Path(sys.argv[1]).read_text())
    out = Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    for path in (throughput(records, out), latency(records, out), crash(records, out),
                 backlog(records, out)):
        if path is not None:
            print(path)


if __name__ == "__main__":
    main()
