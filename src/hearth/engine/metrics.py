"""Prometheus metrics of one coordinator, in a registry of its own (never the global one,
so two apps in one process — tests, embedding — never collide).

- ``hearth_jobs{namespace,kind,state}``: gauge, read from the store at scrape time;
- ``hearth_lease_latency_seconds``: histogram of due → leased (``leased_at - run_at``);
- ``hearth_jobs_finished_total{kind,outcome}``: attempts that ended, by outcome
  (``succeeded``, ``failed`` = retry scheduled, ``dead``, ``cancelled``, ``released``,
  ``expired`` = lease expiry or timeout with a retry scheduled);
- ``hearth_http_requests_total{route,status}``: counted in a plain dict on the request
  path and turned into a metric only at scrape time, so the hot path pays ~nothing.

Never put payloads, tokens or job ids in labels (unbounded cardinality, secrets).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from hearth.domain.jobs import Job
from hearth.store.port import QueueCount

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0, 30.0, 60.0, 300.0)


class _ScrapeCollector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        jobs = GaugeMetricFamily("hearth_jobs", "Jobs per namespace, kind and state.",
                                 labels=["namespace", "kind", "state"])
        for count in self._metrics.queue_counts:
            jobs.add_metric([count.namespace, count.kind, count.state.value], count.count)
        yield jobs
        http = CounterMetricFamily("hearth_http_requests", "HTTP requests by route and status.",
                                   labels=["route", "status"])
        for (route, status), value in sorted(self._metrics.http_counts.items()):
            http.add_metric([route, str(status)], value)
        yield http
        yield self._metrics.lease_latency.family()


class _Latency:
    """The lease-latency histogram as plain counts: every leased job is observed on
    the hot path (256 per lease batch), where prometheus_client's Histogram took a
    lock per observation; this is one bisect and one add, exposed at scrape time."""

    def __init__(self, buckets: Sequence[float]) -> None:
        self.bounds = list(buckets)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.total += seconds

    def family(self) -> HistogramMetricFamily:
        cumulative, running = [], 0
        for bound, n in zip([*map(str, self.bounds), "+Inf"], self.counts, strict=True):
            running += n
            cumulative.append((bound, running))
        family = HistogramMetricFamily("hearth_lease_latency_seconds",
                                       "Seconds from a job being due to being leased.")
        family.add_metric([], cumulative, self.total)
        return family


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.lease_latency = _Latency(LATENCY_BUCKETS)
        self.finished = Counter(
            "hearth_jobs_finished", "Attempts that ended, by kind and outcome.",
            ["kind", "outcome"], registry=self.registry)
        self.http_counts: dict[tuple[str, int], int] = {}
        self.queue_counts: Sequence[QueueCount] = ()
        self.registry.register(_ScrapeCollector(self))

    def leased(self, jobs: Iterable[Job]) -> None:
        observe = self.lease_latency.observe
        for job in jobs:
            if job.leased_at is not None:
                observe(max(0.0, job.leased_at - job.run_at))

    def ended(self, outcomes: Iterable[tuple[str, str]]) -> None:
        """Count ended attempts given as ``(kind, outcome)`` pairs."""
        totals: dict[tuple[str, str], int] = {}
        for key in outcomes:
            totals[key] = totals.get(key, 0) + 1
        for (kind, outcome), n in totals.items():
            self.finished.labels(kind, outcome).inc(n)

    def http_request(self, route: str, status: int) -> None:
        key = (route, status)
        self.http_counts[key] = self.http_counts.get(key, 0) + 1

    def render(self, counts: Sequence[QueueCount]) -> bytes:
        """The Prometheus text exposition, with ``counts`` as the current queue sizes."""
        self.queue_counts = counts
        return generate_latest(self.registry)
