"""Outcomes waiting to be reported, sent in batches by one flusher task.

Handlers finish one by one, but the coordinator hears about them in batches: whatever
is pending when the flusher wakes goes in one ``POST /v1/leases/finish``, and whatever
finishes while that request is in flight goes in the next. That keeps the HTTP cost
per job near zero under load and adds no delay when idle.

An outcome that cannot be sent (coordinator unreachable) is kept and retried with
backoff, never dropped; the coordinator may answer "stale lease" by then, which is
fine. The only outcomes dropped are those the coordinator refuses for good.
"""

from __future__ import annotations

import asyncio
import logging

from hearth.client import AsyncClient
from hearth.errors import HearthError, Unavailable
from hearth.wire import ErrorIn, FinishIn, ItemOut
from hearth.worker.link import Backoff, Link

BATCH = 5000


class Outbox:
    """Queue outcomes with :meth:`put`; :meth:`run` is the flusher task."""

    def __init__(self, client: AsyncClient, worker: str, link: Link,
                 log: logging.Logger) -> None:
        self._client = client
        self._worker = worker
        self._link = link
        self._log = log
        self._pending: list[FinishIn] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._backoff = Backoff()
        #: Outcomes the coordinator accepted (for logs and tests).
        self.sent = 0

    def __len__(self) -> int:
        return len(self._pending)

    def put(self, item: FinishIn) -> None:
        self._pending.append(item)
        self._idle.clear()
        self._wake.set()

    async def drain(self, timeout: float) -> bool:
        """Wait until everything queued was sent; False if ``timeout`` ran out first."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch = self._pending[:BATCH]
                del self._pending[:BATCH]
                try:
                    answers = await self._client.finish(self._worker, batch)
                except HearthError as exc:
                    if isinstance(exc, Unavailable) or exc.status >= 500:
                        self._pending[:0] = batch
                        self._link.down(exc)
                        await asyncio.sleep(self._backoff.next_delay())
                        continue
                    self._log.error("the coordinator refused %d outcome(s), which are "
                                    "dropped: %s", len(batch), exc,
                                    extra={"event": "outcomes_refused"})
                    continue
                self._backoff.reset()
                self._link.ok()
                self._settle(batch, answers)
            if not self._pending:
                self._idle.set()

    def _settle(self, batch: list[FinishIn], answers: list[ItemOut]) -> None:
        by_id = {item.job_id: item for item in batch}
        for answer in answers:
            if answer.status == 200:
                self.sent += 1
                continue
            item = by_id.get(answer.job_id)
            if answer.status in (404, 409):
                self._log.info("the outcome of job %s was not needed any more: %s",
                               answer.job_id, answer.error or answer.code,
                               extra={"event": "outcome_stale", "job_id": answer.job_id})
            elif item is not None and item.outcome == "succeeded" and answer.status in (
                    413, 422):
                # The result itself was refused (too big, not valid): fail the attempt
                # for good with the coordinator's reason instead of losing the outcome.
                self._pending.append(FinishIn(
                    job_id=item.job_id, token=item.token, outcome="failed",
                    error=ErrorIn(message="the coordinator refused the job's result: "
                                  f"{answer.error or answer.code}", type="InvalidResult",
                                  retryable=False)))
            else:
                self._log.error("the coordinator refused the outcome of job %s: %s",
                                answer.job_id, answer.error or answer.code,
                                extra={"event": "outcome_refused", "job_id": answer.job_id})


__all__ = ["Outbox"]
