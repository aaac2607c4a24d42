"""The job state machine (``hearth.domain.transitions``): every (state, event) pair,
legal or not, then the rules one at a time.

Pure: jobs are built directly by ``make_job``; the clock (``NOW``) and randomness
(``rand``) are passed in. Token-carrying moves (heartbeat, succeed, fail, release,
acknowledge_cancel) on a job that is not leased raise ``StaleLease`` (a late outcome of
an old attempt); operator and coordinator moves raise ``InvalidTransition``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from hearth.domain import transitions as tr
from hearth.domain.jobs import (
    ErrorInfo,
    Event,
    EventType,
    Job,
    JobSpec,
    JobState,
    Progress,
    Result,
)
from hearth.domain.retry import Backoff
from hearth.errors import InvalidTransition, StaleLease

NOW = 1_000.0
TOKEN = "tok-1"
WORKER = "worker-1"
TTL = 30.0
#: Deterministic backoff (no jitter): delays 2, 6, 18, 54, then 60 capped.
BACKOFF = Backoff(initial=2.0, max=60.0, multiplier=3.0, jitter=0.0)
#: When the factory's leased job's lease runs out.
EXPIRY = NOW + 25.0

S = JobState
E = EventType

_PER_STATE: dict[JobState, dict[str, Any]] = {
    S.QUEUED: {},
    S.LEASED: dict(attempt=1, lease_token=TOKEN, worker=WORKER, leased_at=NOW - 5,
                   lease_expires_at=EXPIRY),
    S.FAILED: dict(attempt=1, failures=1, worker=WORKER, leased_at=NOW - 20,
                   last_error=ErrorInfo("boom")),
    S.SUCCEEDED: dict(attempt=1, worker=WORKER, leased_at=NOW - 20, result=Result(b"ok"),
                      finished_at=NOW - 10),
    S.DEAD: dict(attempt=3, failures=3, worker=WORKER, leased_at=NOW - 20,
                 last_error=ErrorInfo("boom"), finished_at=NOW - 10),
    S.CANCELLED: dict(cancel_requested=True, finished_at=NOW - 10),
}


def make_job(state: JobState = S.QUEUED, **changes: Any) -> Job:
    """A plausible job in ``state`` (due, and if leased, leased by WORKER under TOKEN)."""
    job = Job(
        id="job-1", namespace="default", kind="email.send", state=state, payload=b"{}",
        payload_type="json", input_blobs=(), priority=0, run_at=NOW - 60, max_attempts=3,
        backoff=BACKOFF, lease_ttl=TTL, timeout=None, idempotency_key=None, labels={},
        parent=None, created_at=NOW - 100, updated_at=NOW - 60,
    )
    return replace(job, **{**_PER_STATE[state], **changes})


Move = Callable[[Job], tuple[Job, Event | None]]

MOVES: dict[str, Move] = {
    "lease": lambda j: tr.lease(j, worker="worker-2", token="tok-2", now=NOW),
    "heartbeat": lambda j: tr.heartbeat(j, token=TOKEN, now=NOW, progress=Progress(50.0)),
    "succeed": lambda j: tr.succeed(j, token=TOKEN, now=NOW, result=Result(b"done")),
    "fail": lambda j: tr.fail(j, token=TOKEN, now=NOW, error=ErrorInfo("boom"), rand=0.5),
    "expire": lambda j: tr.expire(j, now=EXPIRY, rand=0.5),
    "abandon": lambda j: tr.abandon(j, now=NOW, rand=0.5),
    "release": lambda j: tr.release(j, token=TOKEN, now=NOW),
    "cancel": lambda j: tr.cancel(j, now=NOW),
    "acknowledge_cancel": lambda j: tr.acknowledge_cancel(j, token=TOKEN, now=NOW),
    "retry": lambda j: tr.retry(j, now=NOW),
}

# -- every (state, event) pair ----------------------------------------------------------
X = InvalidTransition
Z = StaleLease
COLUMNS = ("lease", "heartbeat", "succeed", "fail", "expire", "release", "cancel",
           "acknowledge_cancel", "retry", "abandon")
# Each cell: (resulting state, event type) or the exception raised.
# fmt: off
MATRIX: dict[JobState, tuple[Any, ...]] = {
    #           lease                heartbeat            succeed                  fail
    #           expire               release              cancel
    #           acknowledge_cancel   retry                abandon
    S.QUEUED:    ((S.LEASED, E.LEASED), Z, Z, Z,
                  X, Z, (S.CANCELLED, E.CANCELLED),
                  Z, X, X),
    S.LEASED:    (X, (S.LEASED, E.PROGRESS), (S.SUCCEEDED, E.SUCCEEDED), (S.FAILED, E.FAILED),
                  (S.FAILED, E.EXPIRED), (S.QUEUED, E.RELEASED), (S.LEASED, E.CANCEL_REQUESTED),
                  (S.CANCELLED, E.CANCELLED), X, (S.FAILED, E.EXPIRED)),
    S.SUCCEEDED: (X, Z, Z, Z,
                  X, Z, X,
                  Z, X, X),
    S.FAILED:    ((S.LEASED, E.LEASED), Z, Z, Z,
                  X, Z, (S.CANCELLED, E.CANCELLED),
                  Z, (S.QUEUED, E.RETRIED), X),
    S.DEAD:      (X, Z, Z, Z,
                  X, Z, X,
                  Z, (S.QUEUED, E.RETRIED), X),
    S.CANCELLED: (X, Z, Z, Z,
                  X, Z, X,
                  Z, X, X),
}
# fmt: on
CASES = [
    pytest.param(state, move, expected, id=f"{state}-{move}")
    for state, row in MATRIX.items()
    for move, expected in zip(COLUMNS, row, strict=True)
]


def test_matrix_covers_every_state_and_move() -> None:
    assert set(MATRIX) == set(JobState)
    assert set(COLUMNS) == set(MOVES)
    assert len(CASES) == len(JobState) * len(MOVES)


@pytest.mark.parametrize(("state", "move", "expected"), CASES)
def test_every_state_and_move(state: JobState, move: str, expected: Any) -> None:
    job = make_job(state)
    if isinstance(expected, type):
        with pytest.raises(expected):
            MOVES[move](job)
        return
    new, event = MOVES[move](job)
    assert (new.state, event.type if event else None) == expected
    assert event is not None
    assert (event.job_id, event.state, event.attempt) == (job.id, new.state, new.attempt)
    assert (event.namespace, event.kind) == (job.namespace, job.kind)
    if new.state.terminal:
        assert new.finished_at is not None
        assert new.lease_token is None and new.lease_expires_at is None


# -- fencing ----------------------------------------------------------------------------
TOKEN_MOVES: dict[str, Callable[[Job, str, float], object]] = {
    "heartbeat": lambda j, t, now: tr.heartbeat(j, token=t, now=now),
    "succeed": lambda j, t, now: tr.succeed(j, token=t, now=now, result=Result()),
    "fail": lambda j, t, now: tr.fail(j, token=t, now=now, error=ErrorInfo("x"), rand=0.5),
    "release": lambda j, t, now: tr.release(j, token=t, now=now),
    "acknowledge_cancel": lambda j, t, now: tr.acknowledge_cancel(j, token=t, now=now),
}
STALE = [
    pytest.param("tok-old", NOW, id="wrong-token"),
    pytest.param(TOKEN, EXPIRY, id="right-token-at-expiry"),
    pytest.param(TOKEN, EXPIRY + 100, id="right-token-after-expiry"),
]


@pytest.mark.parametrize("move", TOKEN_MOVES)
@pytest.mark.parametrize(("token", "now"), STALE)
def test_fencing_refuses_stale_tokens_and_expired_leases(move: str, token: str,
                                                          now: float) -> None:
    with pytest.raises(StaleLease):
        TOKEN_MOVES[move](make_job(S.LEASED), token, now)


@pytest.mark.parametrize("move", TOKEN_MOVES)
def test_fencing_accepts_the_live_token_just_before_expiry(move: str) -> None:
    TOKEN_MOVES[move](make_job(S.LEASED), TOKEN, EXPIRY - 0.001)


def test_late_heartbeat_never_revives_an_expired_lease() -> None:
    job = make_job(S.LEASED)
    with pytest.raises(StaleLease):
        tr.heartbeat(job, token=TOKEN, now=EXPIRY + 1, progress=Progress(90.0))
    new, event = tr.expire(job, now=EXPIRY + 1, rand=0.5)
    assert (new.state, event.type) == (S.FAILED, E.EXPIRED)


def test_outcome_of_an_earlier_attempt_is_refused_after_re_lease() -> None:
    first = make_job(S.LEASED)
    failed, _ = tr.expire(first, now=EXPIRY, rand=0.5)
    again, _ = tr.lease(failed, worker="worker-2", token="tok-2", now=failed.run_at)
    with pytest.raises(StaleLease):
        tr.succeed(again, token=TOKEN, now=failed.run_at, result=Result())


# -- heartbeat --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("timeout", "leased_at", "expires_at", "expected"),
    [
        pytest.param(None, NOW - 5, NOW + 1, NOW + TTL, id="extends-to-now-plus-ttl"),
        pytest.param(20.0, NOW - 5, NOW + 1, NOW + 15, id="capped-at-execution-deadline"),
        pytest.param(20.0, NOW - 5, NOW + 15, NOW + 15, id="at-deadline-stays"),
        pytest.param(None, NOW - 5, NOW + 50, NOW + 50, id="never-shortens"),
        pytest.param(100.0, NOW - 5, NOW + 1, NOW + TTL, id="deadline-further-than-ttl"),
    ],
)
def test_heartbeat_extends_the_lease(timeout: float | None, leased_at: float,
                                     expires_at: float, expected: float) -> None:
    job = make_job(S.LEASED, timeout=timeout, leased_at=leased_at, lease_expires_at=expires_at)
    new, event = tr.heartbeat(job, token=TOKEN, now=NOW)
    assert new.lease_expires_at == expected
    assert (new.state, new.lease_token, new.updated_at, event) == (S.LEASED, TOKEN, NOW, None)


@pytest.mark.parametrize(
    ("before", "sent", "after", "event_data"),
    [
        (None, None, None, None),
        (None, Progress(10.0), Progress(10.0), {"percent": 10.0}),
        (Progress(10.0), Progress(10.0), Progress(10.0), None),
        (Progress(10.0), None, Progress(10.0), None),
        (Progress(10.0), Progress(20.0), Progress(20.0), {"percent": 20.0}),
        (Progress(10.0, "a"), Progress(10.0, "b"), Progress(10.0, "b"),
         {"percent": 10.0, "message": "b"}),
        (Progress(10.0), Progress(None, "note"), Progress(None, "note"), {"message": "note"}),
    ],
)
def test_heartbeat_progress_event_only_when_it_changes(
    before: Progress | None, sent: Progress | None, after: Progress | None,
    event_data: dict[str, Any] | None,
) -> None:
    new, event = tr.heartbeat(make_job(S.LEASED, progress=before), token=TOKEN, now=NOW,
                              progress=sent)
    assert new.progress == after
    if event_data is None:
        assert event is None
    else:
        assert event is not None
        assert (event.type, dict(event.data), event.worker) == (E.PROGRESS, event_data, WORKER)


# -- lease ------------------------------------------------------------------------------
@pytest.mark.parametrize(("run_at", "ok"), [(NOW + 0.001, False), (NOW, True), (NOW - 1, True)])
def test_lease_waits_for_run_at(run_at: float, ok: bool) -> None:
    job = make_job(S.QUEUED, run_at=run_at)
    if ok:
        assert tr.lease(job, worker=WORKER, token=TOKEN, now=NOW)[0].state is S.LEASED
    else:
        with pytest.raises(InvalidTransition):
            tr.lease(job, worker=WORKER, token=TOKEN, now=NOW)


@pytest.mark.parametrize(
    ("state", "timeout", "expected_expiry"),
    [
        (S.QUEUED, None, NOW + TTL),
        (S.FAILED, None, NOW + TTL),
        (S.QUEUED, 10.0, NOW + 10),
        (S.QUEUED, 60.0, NOW + TTL),
    ],
)
def test_lease_grants_a_fresh_attempt(state: JobState, timeout: float | None,
                                      expected_expiry: float) -> None:
    job = make_job(state, timeout=timeout, attempt=4, progress=Progress(80.0))
    new, event = tr.lease(job, worker="worker-9", token="tok-9", now=NOW)
    assert (new.state, new.attempt, new.lease_token, new.worker) == (
        S.LEASED, 5, "tok-9", "worker-9")
    assert (new.leased_at, new.lease_expires_at, new.progress) == (NOW, expected_expiry, None)
    assert new.failures == job.failures
    assert (event.type, event.attempt, event.worker) == (E.LEASED, 5, "worker-9")


# -- fail, expire and the one retry decision ---------------------------------------------
def _fail(job: Job, error: ErrorInfo | None = None) -> tuple[Job, Event]:
    return tr.fail(job, token=TOKEN, now=NOW, error=error or ErrorInfo("boom", "IOError"),
                   rand=0.5)


@pytest.mark.parametrize(("failures_before", "delay"), [(0, 2.0), (1, 6.0), (2, 18.0),
                                                         (3, 54.0), (4, 60.0), (9, 60.0)])
def test_fail_with_retries_left_waits_out_the_backoff(failures_before: int,
                                                      delay: float) -> None:
    job = make_job(S.LEASED, failures=failures_before, max_attempts=20)
    new, event = _fail(job)
    assert (new.state, new.failures, new.run_at) == (S.FAILED, failures_before + 1, NOW + delay)
    assert (new.lease_token, new.lease_expires_at, new.finished_at) == (None, None, None)
    assert new.last_error == ErrorInfo("boom", "IOError")
    assert event.type is E.FAILED
    assert dict(event.data) == {"error": "boom", "error_type": "IOError",
                                "retry_at": NOW + delay}


@pytest.mark.parametrize(("failures_before", "max_attempts"), [(2, 3), (0, 1), (7, 3)])
def test_fail_on_the_last_attempt_is_dead(failures_before: int, max_attempts: int) -> None:
    job = make_job(S.LEASED, failures=failures_before, max_attempts=max_attempts)
    new, event = _fail(job)
    assert (new.state, new.failures, new.finished_at) == (S.DEAD, failures_before + 1, NOW)
    assert new.run_at == job.run_at
    assert (event.type, event.data["cause"], event.data["error"]) == (E.DEAD, "failed", "boom")
    assert str(max_attempts) in event.data["reason"]


@pytest.mark.parametrize(("failures_before", "delay"), [(0, 2.0), (3, 54.0), (1_000, 60.0),
                                                         (10**9, 60.0)])
def test_max_attempts_zero_never_gives_up(failures_before: int, delay: float) -> None:
    new, event = _fail(make_job(S.LEASED, failures=failures_before, max_attempts=0))
    assert (new.state, event.type, new.run_at) == (S.FAILED, E.FAILED, NOW + delay)


@pytest.mark.parametrize("max_attempts", [0, 10])
def test_non_retryable_error_is_dead_at_once(max_attempts: int) -> None:
    job = make_job(S.LEASED, max_attempts=max_attempts)
    new, event = _fail(job, ErrorInfo("bad input", "ValueError", retryable=False))
    assert (new.state, new.failures, new.finished_at, event.type) == (S.DEAD, 1, NOW, E.DEAD)
    assert "non-retryable" in event.data["reason"]


@pytest.mark.parametrize(
    ("changes", "state", "event_type", "cause", "error_type"),
    [
        pytest.param({}, S.FAILED, E.EXPIRED, None, "LeaseExpired", id="retry"),
        pytest.param({"failures": 2}, S.DEAD, E.DEAD, "expired", "LeaseExpired",
                     id="last-attempt"),
        pytest.param({"timeout": 30.0}, S.FAILED, E.TIMED_OUT, None, "Timeout",
                     id="deadline-passed"),
        pytest.param({"timeout": 30.0, "failures": 2}, S.DEAD, E.DEAD, "timed_out", "Timeout",
                     id="deadline-passed-last-attempt"),
        pytest.param({"timeout": 60.0}, S.FAILED, E.EXPIRED, None, "LeaseExpired",
                     id="deadline-not-yet"),
        pytest.param({"cancel_requested": True}, S.CANCELLED, E.CANCELLED, None, None,
                     id="cancel-requested"),
        pytest.param({"cancel_requested": True, "timeout": 30.0, "failures": 2}, S.CANCELLED,
                     E.CANCELLED, None, None, id="cancel-beats-timeout-and-giving-up"),
    ],
)
def test_expire(changes: dict[str, Any], state: JobState, event_type: EventType,
                cause: str | None, error_type: str | None) -> None:
    job = make_job(S.LEASED, **changes)  # leased_at NOW-5, so a 30s timeout ends at EXPIRY
    new, event = tr.expire(job, now=EXPIRY, rand=0.5)
    assert (new.state, event.type, event.data.get("cause")) == (state, event_type, cause)
    assert (new.last_error.type if new.last_error else None) == error_type
    assert (new.lease_token, new.lease_expires_at) == (None, None)
    if state is S.CANCELLED:
        assert (new.failures, new.finished_at) == (job.failures, EXPIRY)


def test_abandon_ends_a_live_lease_now_with_the_same_retry_decision() -> None:
    job = make_job(S.LEASED)
    assert (job.lease_expires_at or 0) > NOW  # the lease has not run out
    new, event = tr.abandon(job, now=NOW, rand=0.5)
    expired, _ = tr.expire(job, now=job.lease_expires_at or 0.0, rand=0.5)
    assert (new.state, event.type) == (S.FAILED, E.EXPIRED)
    assert new.last_error is not None and new.last_error.type == "WorkerRestarted"
    assert (new.failures, new.attempt) == (expired.failures, expired.attempt)
    assert (new.lease_token, new.lease_expires_at) == (None, None)
    cancelled, event = tr.abandon(make_job(S.LEASED, cancel_requested=True), now=NOW,
                                  rand=0.5)
    assert (cancelled.state, event.type) == (S.CANCELLED, E.CANCELLED)


@pytest.mark.parametrize(("failures_before", "rand"), [(0, 0.0), (1, 0.3), (2, 0.99), (5, 0.5)])
@pytest.mark.parametrize("timeout", [None, 20.0])  # 20s: the deadline has passed
def test_expire_makes_the_same_retry_decision_as_fail(failures_before: int, rand: float,
                                                      timeout: float | None) -> None:
    job = make_job(S.LEASED, failures=failures_before, timeout=timeout,
                   backoff=Backoff(initial=1.0, max=100.0, multiplier=2.0, jitter=0.5))
    now = EXPIRY - 0.5
    failed, _ = tr.fail(job, token=TOKEN, now=now, error=ErrorInfo("x"), rand=rand)
    expired, _ = tr.expire(replace(job, lease_expires_at=now), now=now, rand=rand)
    assert (expired.state, expired.failures, expired.run_at) == (
        failed.state, failed.failures, failed.run_at)


def test_expire_refuses_a_live_lease() -> None:
    with pytest.raises(InvalidTransition):
        tr.expire(make_job(S.LEASED), now=EXPIRY - 0.001, rand=0.5)


# -- release ----------------------------------------------------------------------------
def test_release_queues_now_without_burning_an_attempt() -> None:
    job = make_job(S.LEASED, failures=2, attempt=3, max_attempts=3)
    new, event = tr.release(job, token=TOKEN, now=NOW)
    assert (new.state, new.run_at, new.failures, new.attempt) == (S.QUEUED, NOW, 2, 3)
    assert (new.lease_token, new.lease_expires_at, new.finished_at) == (None, None, None)
    assert event.type is E.RELEASED
    again, _ = tr.lease(new, worker="worker-2", token="tok-2", now=NOW)
    assert again.failures == 2  # still one failure away from dead, not dead


def test_release_after_cancel_request_cancels() -> None:
    new, event = tr.release(make_job(S.LEASED, cancel_requested=True), token=TOKEN, now=NOW)
    assert (new.state, new.finished_at, event.type) == (S.CANCELLED, NOW, E.CANCELLED)


# -- cancel -----------------------------------------------------------------------------
@pytest.mark.parametrize("state", [S.QUEUED, S.FAILED])
def test_cancel_of_a_waiting_job_is_immediate(state: JobState) -> None:
    new, event = tr.cancel(make_job(state), now=NOW)
    assert (new.state, new.cancel_requested, new.finished_at) == (S.CANCELLED, True, NOW)
    assert event.type is E.CANCELLED


def test_cancel_of_a_leased_job_is_a_request_then_the_worker_acknowledges() -> None:
    job = make_job(S.LEASED)
    requested, event = tr.cancel(job, now=NOW)
    assert (requested.state, requested.cancel_requested, event.type) == (
        S.LEASED, True, E.CANCEL_REQUESTED)
    assert (requested.lease_token, requested.lease_expires_at) == (TOKEN, EXPIRY)
    with pytest.raises(InvalidTransition):
        tr.cancel(requested, now=NOW + 1)
    done, event = tr.acknowledge_cancel(requested, token=TOKEN, now=NOW + 1)
    assert (done.state, done.finished_at, event.type) == (S.CANCELLED, NOW + 1, E.CANCELLED)


@pytest.mark.parametrize("state", [S.SUCCEEDED, S.DEAD, S.CANCELLED])
def test_cancel_of_a_finished_job_is_refused(state: JobState) -> None:
    with pytest.raises(InvalidTransition, match="already finished"):
        tr.cancel(make_job(state), now=NOW)


# -- retry ------------------------------------------------------------------------------
@pytest.mark.parametrize("state", [S.DEAD, S.FAILED])
def test_retry_queues_now_with_a_fresh_budget(state: JobState) -> None:
    job = make_job(state, run_at=NOW + 500)
    new, event = tr.retry(job, now=NOW)
    assert (new.state, new.run_at, new.failures, new.finished_at) == (S.QUEUED, NOW, 0, None)
    assert new.attempt == job.attempt
    assert (event.type, dict(event.data)) == (E.RETRIED, {"previous": state.value})


@pytest.mark.parametrize("state", [S.QUEUED, S.LEASED, S.SUCCEEDED, S.CANCELLED])
def test_retry_of_other_states_is_refused(state: JobState) -> None:
    with pytest.raises(InvalidTransition):
        tr.retry(make_job(state), now=NOW)


# -- create -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("delay", "run_at", "expected_run_at", "event_data"),
    [
        (0.0, None, NOW, {}),
        (5.0, None, NOW + 5, {"run_at": NOW + 5}),
        (5.0, NOW + 100, NOW + 100, {"run_at": NOW + 100}),
        (0.0, NOW - 100, NOW - 100, {}),
        (0.0, NOW, NOW, {}),
    ],
)
def test_create_honours_delay_and_run_at(delay: float, run_at: float | None,
                                         expected_run_at: float,
                                         event_data: dict[str, Any]) -> None:
    spec = JobSpec(kind="email.send", payload=b"{}", payload_type="json", delay=delay,
                   run_at=run_at, max_attempts=5, labels={"team": "a"}, priority=7)
    job, event = tr.create(spec, "job-9", NOW)
    assert (job.id, job.state, job.run_at) == ("job-9", S.QUEUED, expected_run_at)
    assert (job.attempt, job.failures, job.max_attempts, job.priority) == (0, 0, 5, 7)
    assert (job.created_at, job.updated_at, dict(job.labels)) == (NOW, NOW, {"team": "a"})
    assert (event.type, event.state, dict(event.data)) == (E.SUBMITTED, S.QUEUED, event_data)


# -- the fast copy -----------------------------------------------------------------------


def test_replace_equals_dataclasses_replace_and_keeps_unchanged_fields_identical() -> None:
    job = make_job(S.LEASED, labels={"team": "a"})
    fast = tr.replace(job, state=S.SUCCEEDED, finished_at=NOW)
    assert fast == replace(job, state=S.SUCCEEDED, finished_at=NOW)
    assert fast.labels is job.labels and fast.payload is job.payload
    assert job.state is S.LEASED  # the original is untouched


def test_replace_refuses_a_field_that_does_not_exist() -> None:
    with pytest.raises(TypeError, match="lease_tokn"):
        tr.replace(make_job(), lease_tokn=None)


def test_a_job_stays_frozen() -> None:
    from dataclasses import FrozenInstanceError

    with pytest.raises(FrozenInstanceError):
        make_job().state = S.DEAD  # type: ignore[misc]
