"""The Store port: the one interface the engine uses to keep jobs, events and nodes.

Every adapter (SQLite, PostgreSQL) passes the conformance suite in
``tests/conformance``. The port is synchronous: the engine calls it from worker
threads, so adapters may block; they must be thread-safe.

Contract, for every adapter:
- Each method is atomic: it commits completely or changes nothing.
- Nothing is returned before it is committed (durable before acknowledged).
- Errors are those of :mod:`hearth.errors` only; driver errors are translated.
- Batch methods (``lease``, ``heartbeat``, ``finish``) report per item: one stale
  token never fails the other items of the batch.
- State changes go through :mod:`hearth.domain.transitions`; each appends exactly one
  event to the job's history in the same transaction.
- The clock and randomness come from the caller (``now``, ``rand``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from hearth.domain.jobs import ErrorInfo, Event, Job, JobSpec, JobState, Progress, Result
from hearth.errors import HearthError

OutcomeKind = Literal["succeeded", "failed", "cancelled", "released"]


@dataclass(frozen=True, slots=True)
class Submitted:
    job: Job
    #: False when the idempotency key matched an existing job (which is returned).
    created: bool


@dataclass(frozen=True, slots=True)
class Grant:
    """A lease taken in the transaction that creates the job: a lease poll was already
    waiting for its kind (see :meth:`Store.submit`)."""

    worker: str
    token: str


@dataclass(frozen=True, slots=True)
class JobFilter:
    namespace: str | None = None
    kinds: tuple[str, ...] = ()
    states: tuple[JobState, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    worker: str | None = None
    parent: str | None = None


@dataclass(frozen=True, slots=True)
class Page:
    jobs: list[Job]
    #: Opaque; pass back as ``cursor`` for the next (older) page. None on the last page.
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class HeartbeatItem:
    job_id: str
    token: str
    progress: Progress | None = None


@dataclass(frozen=True, slots=True)
class FinishItem:
    job_id: str
    token: str
    outcome: OutcomeKind
    result: Result | None = None
    error: ErrorInfo | None = None


@dataclass(frozen=True, slots=True)
class ItemResult:
    """Per-item answer of a batch call: ``job`` on success, ``error`` otherwise."""

    job_id: str
    job: Job | None = None
    error: HearthError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True, slots=True)
class Node:
    name: str
    kinds: tuple[str, ...]
    host: str = ""
    version: str = ""
    concurrency: int = 1
    registered_at: float = 0.0
    last_seen: float = 0.0
    in_flight: int = 0
    status: str = "active"
    labels: dict[str, str] = field(default_factory=dict)
    #: Random per worker process. A registration under a new session means the
    #: previous process of that name is gone: its leases are expired at once.
    session: str = ""
    #: Leases of the previous session expired by this registration (answer only).
    released: int = 0


@dataclass(frozen=True, slots=True)
class QueueCount:
    namespace: str
    kind: str
    state: JobState
    count: int


@dataclass(frozen=True, slots=True)
class CertRecord:
    """A client certificate the coordinator's CA issued (mutual-TLS enrollment).

    Only the facts needed to list and revoke it: the certificate itself stays with its
    holder. ``revoked_at`` is None while it is valid.
    """

    #: Lowercase hex, without separators; the primary key.
    serial: str
    name: str
    #: "worker" or "admin".
    role: str
    kinds: tuple[str, ...]
    #: SHA-256 of the DER encoding, lowercase hex.
    fingerprint: str
    issued_at: float
    not_after: float
    revoked_at: float | None = None


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """An API token. The secret is never stored, only its SHA-256 (``secret_hash``)."""

    #: Short public id; the primary key.
    id: str
    name: str
    #: "admin", "operator", "approver" or "viewer".
    role: str
    #: Namespaces the token may act in; empty means every namespace.
    namespaces: tuple[str, ...]
    #: SHA-256 of the secret, lowercase hex.
    secret_hash: str
    created_at: float
    expires_at: float | None = None
    revoked_at: float | None = None


class Store(Protocol):
    """Durable home of jobs, their history and registered nodes."""

    # -- jobs -------------------------------------------------------------------------
    def submit(self, specs: Sequence[JobSpec], *, now: float,
               new_id: Callable[[], str],
               grants: Mapping[int, Grant] | None = None) -> list[Submitted]:
        """Create jobs (all or none). A spec whose (namespace, idempotency_key) already
        exists yields the existing job with ``created=False``; two specs in one batch
        with the same key yield the same job. Input blobs must exist (``NotFound``).

        ``grants`` maps the index of a spec to a lease taken in the same transaction:
        that job is created and leased (two events, ``submitted`` then ``leased``),
        exactly as if :meth:`lease` had taken it the moment it was committed. A spec
        that yields an existing job, or that is not due at ``now``, ignores its grant."""
        ...

    def get(self, job_id: str) -> Job:
        """The job, or ``NotFound``."""
        ...

    def list_jobs(self, flt: JobFilter, *, limit: int = 100,
                  cursor: str | None = None) -> Page:
        """Newest first. ``ValidationError`` for a malformed cursor."""
        ...

    def events(self, *, job_id: str | None = None, after: int = 0, limit: int = 1000,
               namespace: str | None = None) -> list[Event]:
        """History in commit order (``seq`` ascending) after ``after``. With ``job_id``,
        that job's history only, and ``NotFound`` if the job does not exist (also when
        it was purged while someone was following it)."""
        ...

    def last_event_seq(self) -> int:
        ...

    # -- leasing and outcomes ---------------------------------------------------------
    def lease(self, *, worker: str, kinds: Sequence[str], limit: int, now: float,
              new_token: Callable[[], str], namespaces: Sequence[str] = ()) -> list[Job]:
        """Lease up to ``limit`` due jobs of ``kinds`` to ``worker``: highest priority
        first, then earliest ``run_at``, then submission order. Concurrent callers never
        receive the same job."""
        ...

    def heartbeat(self, items: Sequence[HeartbeatItem], *, worker: str,
                  now: float) -> list[ItemResult]:
        """Extend live leases held by ``worker``; ``StaleLease`` per stale item. The
        returned job's ``cancel_requested`` tells the worker to stop."""
        ...

    def finish(self, items: Sequence[FinishItem], *, worker: str, now: float,
               rand: Callable[[], float]) -> list[ItemResult]:
        """Record attempt outcomes (success, failure, acknowledged cancel, release)."""
        ...

    def expire_leases(self, *, now: float, rand: Callable[[], float],
                      limit: int = 500) -> list[Job]:
        """Expire up to ``limit`` leases whose time has passed; return the new jobs."""
        ...

    def cancel(self, job_id: str, *, now: float) -> Job:
        ...

    def retry(self, job_id: str, *, now: float) -> Job:
        ...

    def next_wakeup(self, *, kinds: Sequence[str], now: float) -> float | None:
        """Earliest future ``run_at`` among leasable jobs of ``kinds`` (for long-polls)."""
        ...

    def next_lease_expiry(self) -> float | None:
        """Earliest ``lease_expires_at`` of any leased job (for the reaper)."""
        ...

    def counts(self) -> list[QueueCount]:
        """Number of jobs per (namespace, kind, state)."""
        ...

    def purge_finished(self, *, before: float, limit: int = 1000) -> int:
        """Delete up to ``limit`` terminal jobs finished before ``before`` (and their
        history); return how many."""
        ...

    def referenced_digests(self, digests: Iterable[str]) -> set[str]:
        """Which of ``digests`` some job (input or result) still references."""
        ...

    # -- nodes ------------------------------------------------------------------------
    def register_node(self, node: Node, *, now: float, rand: Callable[[], float]
                      ) -> tuple[Node, list[Job]]:
        """Create or update the node by name; sets ``registered_at``/``last_seen``.

        When the node was registered before under another non-empty ``session`` (its
        process was replaced: a crash and a restart), every job still leased to that
        name is expired in the same transaction, through the lease-expiry transition
        (the attempt counts as failed and the retry rule decides), and returned, so
        the work does not wait for the dead process's leases to run out."""
        ...

    def touch_node(self, name: str, *, now: float) -> None:
        ...

    def list_nodes(self) -> list[Node]:
        """All nodes with ``in_flight`` = jobs currently leased to them."""
        ...

    # -- certificates and API tokens --------------------------------------------------
    def record_certificate(self, cert: CertRecord) -> None:
        """Remember an issued certificate. ``ValidationError`` if ``serial`` is not
        lowercase hex; ``Conflict`` if a certificate with that serial exists."""
        ...

    def list_certificates(self, *, name: str | None = None) -> list[CertRecord]:
        """All certificates (revoked ones too), or those issued to ``name``; ordered by
        ``issued_at``, then ``serial``."""
        ...

    def revoke_certificates(self, *, now: float, name: str | None = None,
                            serial: str | None = None) -> list[CertRecord]:
        """Revoke, in one transaction, every not-yet-revoked certificate issued to
        ``name``, or the one with ``serial`` (matched case-insensitively). Exactly one
        of the two is required (``ValidationError``). Returns every matching record as
        it is after the call, ordered as :meth:`list_certificates`; already revoked
        ones keep their original ``revoked_at``. ``NotFound`` if nothing matches."""
        ...

    def revoked_serials(self) -> set[str]:
        """Serials of every revoked certificate (for the TLS handshake check)."""
        ...

    def create_token(self, token: TokenRecord) -> None:
        """Store a new token. ``Conflict`` if its id exists, or if a token that is not
        revoked already has its name (a revoked token's name may be reused); of several
        concurrent creators of one name exactly one succeeds."""
        ...

    def get_token(self, token_id: str) -> TokenRecord:
        """The token with that id (revoked or expired too), or ``NotFound``."""
        ...

    def list_tokens(self) -> list[TokenRecord]:
        """All tokens, revoked ones too, ordered by ``created_at``, then ``id``."""
        ...

    def revoke_token(self, id_or_name: str, *, now: float) -> TokenRecord:
        """Revoke the token with that id or, when no id matches, the live token of that
        name, and return it. A token already revoked is returned unchanged.
        ``NotFound`` if neither matches."""
        ...

    # -- notifications and lifecycle --------------------------------------------------
    #: "sqlite" or "postgres": shown by /healthz.
    backend: str
    #: True for an embedded database whose only writer is this process (SQLite: one
    #: coordinator per file). Its short calls (one job, or one bounded batch through
    #: indexes) then never wait on another process and take microseconds per job, so
    #: the engine may make them on its event loop. False for a database server.
    local: bool

    def subscribe(self, callback: Callable[[set[str]], None]) -> Callable[[], None] | None:
        """Call ``callback(kinds)`` (from another thread) whenever jobs of ``kinds``
        became leasable through *another* process sharing this database (PostgreSQL
        NOTIFY). Returns an unsubscribe function, or None where the backend has no
        cross-process notification (SQLite: one coordinator per database file)."""
        ...

    def ping(self) -> None:
        """Raise ``Unavailable`` if the database does not answer."""
        ...

    def close(self) -> None:
        ...
