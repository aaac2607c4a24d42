"""Draw the charts of one peers run (matplotlib, from bench/.peers-venv).

Usage: python bench/peers/charts.py RECORDS.json OUT_DIR

Reads the run's records (the lines run.py appended to peers.jsonl) and writes
``peers-throughput.png`` (W1: drain, per-call and bulk enqueue rates) and
``peers-latency.png`` (W2: p50/p95/p99) into OUT_DIR; prints the paths written.
Scales are logarithmic: the systems differ by orders of magnitude.
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


def main() -> None:
    records = json.loads(Path(sys.argv[1]).read_text())
    out = Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    for path in (throughput(records, out), latency(records, out)):
        if path is not None:
            print(path)


if __name__ == "__main__":
    main()
