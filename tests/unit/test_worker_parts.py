"""Pure parts of the worker runtime: return values, errors, backoff, handler registry."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest

import hearth.worker
from hearth.errors import NotFound, ValidationError
from hearth.wire import JobOut
from hearth.worker import JobContext, NonRetryable, Output
from hearth.worker.link import MAX_DELAY, retry_delay
from hearth.worker.outcome import NotJSONError, error_in, split_return
from hearth.worker.registry import Registry

ALMOST_ONE = math.nextafter(1.0, 0.0)


def test_public_api_is_pinned() -> None:
    assert hearth.worker.__all__ == sorted(hearth.worker.__all__)
    assert set(hearth.worker.__all__) == {"Fatal", "JobCancelled", "JobContext",
                                          "NonRetryable", "Output", "Worker", "run_worker"}


@pytest.mark.parametrize(
    ("value", "fields"),
    [
        ({"a": [1, 2]}, {"payload": {"a": [1, 2]}}),
        (None, {"payload": None}),
        ("text", {"payload": "text"}),
        (b"\x00\xff", {"payload_b64": "AP8="}),
        (b"", {}),
        (Output(payload=3), {"payload": 3}),
        (Output(data=b"hi"), {"payload_b64": "aGk="}),
        (Output(), {}),
    ],
)
def test_split_return_values(value: object, fields: dict[str, object]) -> None:
    assert split_return(value).fields == fields


def test_output_blobs_are_kept_for_upload(tmp_path: Path) -> None:
    split = split_return(Output(payload=1, blobs={"a.txt": b"x", "b": tmp_path}))
    assert split.blobs == {"a.txt": b"x", "b": tmp_path}


@pytest.mark.parametrize(
    "value",
    [object(), {1, 2}, Output(payload=1, data=b"x"), Output(blobs={"a/b": b""}),
     Output(blobs={"x": 3})],  # type: ignore[dict-item]
)
def test_unusable_return_values_are_refused(value: object) -> None:
    with pytest.raises(NotJSONError):
        split_return(value)


def test_error_in_retryable_unless_non_retryable() -> None:
    err = error_in(ValueError("bad input"))
    assert (err.message, err.type, err.retryable) == ("bad input", "ValueError", True)
    err = error_in(NonRetryable("give up"))
    assert (err.type, err.retryable) == ("NonRetryable", False)
    assert error_in(NotJSONError("x")).retryable is False
    assert "without a message" in error_in(KeyError()).message or error_in(KeyError()).message
    assert len(error_in(RuntimeError("x" * 20_000)).message) <= 16_384


@pytest.mark.parametrize(
    ("failures", "low", "high"),
    [(1, 0.075, 0.125), (2, 0.15, 0.25), (3, 0.3, 0.5), (6, 2.4, 4.0), (7, 3.75, 5.0),
     (50, 3.75, 5.0)],
)
def test_retry_delay_doubles_from_a_tenth_to_five_seconds(failures: int, low: float,
                                                          high: float) -> None:
    for rand in (0.0, 0.5, ALMOST_ONE):
        assert low <= retry_delay(failures, rand) <= high <= MAX_DELAY


def test_registry_checks_kinds_and_detects_async() -> None:
    registry = Registry()

    @registry.decorator("echo", timeout=2)
    async def echo(ctx: JobContext) -> object:
        return ctx.payload

    registry.add("sync.one", lambda ctx: None)
    assert registry.kinds == ["echo", "sync.one"]
    assert registry.get("echo").is_async  # type: ignore[union-attr]
    assert registry.any_sync
    assert registry.get("echo").timeout_for(5.0) == 2  # type: ignore[union-attr]
    assert registry.get("sync.one").timeout_for(None) is None  # type: ignore[union-attr]
    with pytest.raises(ValidationError, match="already registered"):
        registry.add("echo", echo)
    with pytest.raises(ValidationError, match="not valid"):
        registry.add("Bad Kind", echo)
    with pytest.raises(ValidationError, match="timeout"):
        registry.add("t", echo, timeout=0)


def job(**extra: object) -> JobOut:
    fields: dict[str, object] = {
        "id": "j_1", "namespace": "default", "kind": "echo", "state": "leased",
        "run_at": 0.0, "max_attempts": 3, "backoff": {}, "lease_ttl": 30.0,
        "created_at": 0.0, "updated_at": 0.0, "attempt": 2,
    }
    fields.update(extra)
    return JobOut.model_validate(fields)


def context(**extra: object) -> JobContext:
    loop = asyncio.new_event_loop()
    loop.close()
    return JobContext(job(**extra), "tok", None, loop)  # type: ignore[arg-type]


def test_context_payloads() -> None:
    ctx = context(payload={"x": 1}, payload_type="json")
    assert (ctx.id, ctx.kind, ctx.attempt) == ("j_1", "echo", 2)
    assert ctx.payload == {"x": 1}
    assert ctx.payload_bytes == b'{"x":1}'
    raw = context(payload_b64="AP8=", payload_type="bytes")
    assert raw.payload == b"\x00\xff" == raw.payload_bytes
    assert context().payload == b""


def test_context_progress_is_versioned() -> None:
    ctx = context()
    assert ctx.progress_since(0) is None
    ctx.report_progress(10, "a")
    ctx.report_progress(20, "b")
    version, progress = ctx.progress_since(0)  # type: ignore[misc]
    assert (version, progress.percent, progress.message) == (2, 20, "b")
    assert ctx.progress_since(2) is None
    with pytest.raises(ValidationError, match="between 0 and 100"):
        ctx.report_progress(101)


def test_context_interrupt_first_reason_wins() -> None:
    ctx = context()
    ctx.raise_if_cancelled()
    assert ctx.interrupt("cancel") is True
    assert ctx.interrupt("timeout") is False
    assert ctx.reason == "cancel" and ctx.cancelled.is_set()
    with pytest.raises(hearth.worker.JobCancelled):
        ctx.raise_if_cancelled()


def test_context_finds_blobs_by_name_or_digest() -> None:
    ctx = context(input_blobs=[{"digest": "a" * 64, "size": 1, "name": "in.txt"},
                               {"digest": "b" * 64, "size": 2}])
    assert ctx._ref("in.txt").digest == "a" * 64
    assert ctx._ref("b" * 64).size == 2
    assert ctx._ref("c" * 64).digest == "c" * 64
    with pytest.raises(NotFound, match=r"in\.txt"):
        ctx._ref("missing")


def test_cancel_flag_wakes_a_waiting_thread() -> None:
    import threading

    from hearth.worker.context import CancelFlag

    flag = CancelFlag()
    assert not flag and not flag.is_set() and flag.wait(0) is False
    woke: list[bool] = []
    waiter = threading.Thread(target=lambda: woke.append(flag.wait(60)))
    waiter.start()
    flag.set()
    waiter.join(60)
    assert woke == [True] and flag and flag.wait() is True


@pytest.mark.parametrize(("concurrency", "batch", "expected"),
                         [(1, None, 1), (8, None, 4), (256, None, 128), (5000, None, 1000),
                          (8, 8, 8), (8, 100, 8)])
def test_lease_batch_is_half_the_slots_unless_asked(concurrency: int, batch: int | None,
                                                    expected: int) -> None:
    from hearth.worker import Worker

    assert Worker("http://127.0.0.1:1", concurrency=concurrency, batch=batch).batch == expected


def test_resizing_a_worker_moves_its_default_batch_but_not_an_asked_one() -> None:
    from hearth.worker import Worker

    default, asked = Worker("http://127.0.0.1:1"), Worker("http://127.0.0.1:1", batch=3)
    default.resize(256)
    asked.resize(256)
    assert (default.concurrency, default.batch, asked.batch) == (256, 128, 3)
    with pytest.raises(ValidationError, match="at least 1"):
        default.resize(0)
