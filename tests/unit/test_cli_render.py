"""CLI rendering: ages, sizes, notes, tables and JSON, from wire models and a fixed now."""

from __future__ import annotations

import json
from typing import Any

import pytest
from rich.console import Console

from hearth.cli.render import (
    emit_json,
    event_detail,
    events_table,
    format_age,
    format_size,
    job_note,
    job_with_history,
    jobs_table,
    nodes_table,
)
from hearth.wire import EventOut, JobOut, NodeOut

NOW = 1_700_000_000.0


def job(**fields: Any) -> JobOut:
    base: dict[str, Any] = {
        "id": "01HZZZZZZZZZZZZZZZZZZZZZZZ", "namespace": "default", "kind": "echo",
        "state": "queued", "run_at": NOW - 5, "max_attempts": 3,
        "backoff": {"initial": 1, "max": 300, "multiplier": 2, "jitter": 0.1},
        "lease_ttl": 30, "created_at": NOW - 90, "updated_at": NOW - 5,
    }
    base.update(fields)
    return JobOut.model_validate(base)


def text_of(renderable: Any, width: int = 200) -> str:
    console = Console(width=width, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


@pytest.mark.parametrize(("seconds", "shown"), [
    (-3, "0s"), (0, "0s"), (59.9, "59s"), (60, "1m"), (3599, "59m"), (3600, "1h"),
    (86399, "23h"), (86400, "1d"), (10 * 86400, "10d"),
])
def test_age(seconds: float, shown: str) -> None:
    assert format_age(seconds) == shown


@pytest.mark.parametrize(("size", "shown"), [
    (0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (1536, "1.5 KiB"),
    (3 * 1024 * 1024, "3.0 MiB"), (5 * 1024**4, "5120.0 GiB"),
])
def test_size(size: int, shown: str) -> None:
    assert format_size(size) == shown


def test_note_prefers_error_then_progress() -> None:
    dead = job(state="dead", last_error={"message": "boom\nsecond line", "type": "E"},
               progress={"percent": 50})
    assert job_note(dead) == "boom second line"
    running = job(state="leased", progress={"percent": 42.4, "message": "page 3"})
    assert job_note(running) == "42% page 3"
    assert job_note(job(state="leased", cancel_requested=True)) == "cancel requested"
    assert job_note(job(state="succeeded", progress={"percent": 100})) == ""
    long = job(state="failed", last_error={"message": "x" * 100})
    assert len(job_note(long, width=20)) == 20
    assert job_note(long, width=20).endswith("…")


def test_jobs_table_has_one_row_per_job() -> None:
    text = text_of(jobs_table([
        job(),
        job(id="01J0000000000000000000000B", kind="sleep", state="leased", attempt=1,
            worker="laptop-1", progress={"percent": 10}),
    ], NOW))
    lines = text.strip().splitlines()
    assert lines[0].split() == ["ID", "KIND", "STATE", "ATTEMPT", "PRIORITY", "AGE", "WORKER",
                                "PROGRESS/ERROR"]
    assert lines[1].split() == ["01HZZZZZZZZZZZZZZZZZZZZZZZ", "echo", "queued", "0/3", "0",
                                "1m", "-"]
    assert lines[2].split() == ["01J0000000000000000000000B", "sleep", "leased", "1/3", "0",
                                "1m", "laptop-1", "10%"]


def test_unlimited_attempts_show_the_count_only() -> None:
    assert "4 " in text_of(jobs_table([job(max_attempts=0, attempt=4)], NOW))


def test_detail_and_history() -> None:
    done = job(state="dead", attempt=2, max_attempts=2, labels={"team": "ml"},
               payload_b64="aGk=", payload_type="bytes", finished_at=NOW - 1,
               last_error={"message": "always fails", "type": "RuntimeError"},
               result=None)
    events = [
        EventOut(seq=1, job_id=done.id, namespace="default", kind="echo", type="submitted",
                 at=NOW - 90, state="queued", attempt=0),
        EventOut(seq=7, job_id=done.id, namespace="default", kind="echo", type="dead",
                 at=NOW - 1, state="dead", attempt=2, worker="w1",
                 data={"error": {"message": "always fails", "type": "RuntimeError"}}),
    ]
    text = text_of(job_with_history(done, events, NOW))
    assert "attempt     2 of 2" in text or "2 of 2" in text
    assert "(2 B of bytes)" in text
    assert "team=ml" in text
    assert "RuntimeError: always fails" in text
    assert "1s ago" in text
    history = text.split("history")[1]
    assert [line.split()[0] for line in history.strip().splitlines()] == ["SEQ", "1", "7"]


def test_event_detail() -> None:
    def ev(data: dict[str, Any]) -> EventOut:
        return EventOut(seq=1, job_id="j", namespace="d", kind="k", type="progress", at=NOW,
                        state="leased", attempt=1, data=data)

    assert event_detail(ev({"percent": 25.0, "message": "half"})) == "25% half"
    assert event_detail(ev({"message": "no percent"})) == "no percent"
    assert event_detail(ev({"error": {"message": "bad"}})) == "bad"
    assert event_detail(ev({"delay": 1.5, "nested": {"x": 1}})) == "delay=1.5"
    assert "progress" in text_of(events_table([ev({})], NOW))


def test_nodes_table() -> None:
    node = NodeOut(name="laptop", kinds=["echo", "sleep"], host="laptop.lan", version="0.1.0",
                   concurrency=8, registered_at=NOW - 600, last_seen=NOW - 2, in_flight=3)
    line = text_of(nodes_table([node], NOW)).strip().splitlines()[1]
    assert line.split() == ["laptop", "echo,", "sleep", "laptop.lan", "0.1.0", "3/8", "2s",
                            "ago", "active"]


def test_emit_json_is_plain_json(capsys: pytest.CaptureFixture[str]) -> None:
    emit_json({"job": job(), "events": [], "n": 1})
    out = json.loads(capsys.readouterr().out)
    assert out["job"]["kind"] == "echo"
    assert out["events"] == []
    assert out["n"] == 1
