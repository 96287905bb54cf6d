"""Outcome counters: every record ends routed, duplicate, stale, ignored or dlq (DESIGN §4).

Counts are aggregated per batch in a plain dict (no per-record metric calls on the hot path),
then added to OpenTelemetry counters labelled by tenant, integration and DLQ code.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from opentelemetry import metrics

OutcomeKey = tuple[str, str, str, str]  # outcome, tenant, integration, code

_meter = metrics.get_meter("router")
_records = _meter.create_counter("router_records", unit="1", description="records by outcome, tenant, integration")
# HTTP attempts are not record outcomes (a record may take several): their own counter, so that
# sum(router_records_total) counts each record once.
_attempts = _meter.create_counter("router_delivery_attempts", unit="1",
                                  description="partner API requests by status class (2xx..5xx, or error: no answer), "
                                              "tenant and integration")
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx", "error")


@dataclass
class Outcomes:
    """Running totals for one process, plus the batch being counted."""

    totals: Counter[str] = field(default_factory=Counter)
    batch: Counter[OutcomeKey] = field(default_factory=Counter)

    def add(self, outcome: str, tenant: str = "", integration: str = "", code: str = "", n: int = 1) -> None:
        self.batch[(outcome, tenant, integration, code)] += n

    def commit_batch(self, stage: str) -> None:
        """Publish the batch's counts (call after the batch's offsets are committed)."""
        for (outcome, tenant, integration, code), n in self.batch.items():
            self.totals[outcome] += n
            if code:
                self.totals[f"{outcome}:{code}"] += n
            _records.add(n, {"stage": stage, "outcome": outcome, "tenant": tenant, "integration": integration,
                             "code": code})
        self.batch.clear()

    def attempt(self, status: int | None, tenant: str, integration: str) -> None:
        """One partner request answered ``status`` (None: no answer), counted at once — an attempt
        happened whether or not its batch is committed. ``totals["attempt_<class>"]`` for tests and logs."""
        cls = f"{status // 100}xx" if status and 100 <= status < 600 else "error"
        self.totals[f"attempt_{cls}"] += 1
        _attempts.add(1, {"status": cls, "tenant": tenant, "integration": integration})

    def drop_batch(self) -> None:
        """Forget a batch that will be processed again (it was not committed)."""
        self.batch.clear()


# Bucket boundaries in seconds, 1 ms to 60 s, for every duration histogram. The SDK's default
# boundaries (0, 5, 10, ... 10000) suit milliseconds: every partner request would land in the first.
SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def seconds_histogram(meter: metrics.Meter, name: str, description: str) -> metrics.Histogram:
    """A duration histogram in seconds with :data:`SECONDS_BUCKETS`."""
    return meter.create_histogram(name, unit="s", description=description,
                                  explicit_bucket_boundaries_advisory=list(SECONDS_BUCKETS))


# Latencies (seconds): one HTTP request to a partner, and received-at (gateway) → partner 2xx.
delivery_request_seconds = seconds_histogram(_meter, "router_delivery_request_seconds", "partner API request duration")
end_to_end_seconds = seconds_histogram(_meter, "router_end_to_end_seconds",
                                       "from router-received-at to the partner's 2xx")
