"""Is this worker making progress? The truth behind ``/readyz`` and ``/healthz`` (DESIGN §8).

A worker's loop retries what fails on Redis or the broker, with a backoff, for ever (DESIGN §4: an
infrastructure failure only slows a batch). Retrying is right; answering 200 meanwhile is not.
:class:`Progress` records, per part of the worker's work (the route worker has one part, its
batches; the delivery worker has several: its requests, its dead letters, its state reads), when
the current unbroken run of failures began; the part's next success ends the run. The worker is
**failing** once any run has lasted ``ROUTER_FAILING_AFTER_S`` seconds (default 60). A worker with
nothing to do and no failure is healthy: idleness is not a failure.

The bookkeeping is plain (a clock is injected, tests pass their own); each failure also adds one to
the ``router_batches_failed{kind, reason}`` counter, ``reason`` being one of :data:`REASONS`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from opentelemetry import metrics

log = logging.getLogger("router.progress")

REDIS, BROKER, OTHER = "redis", "broker", "other"
REASONS = (REDIS, BROKER, OTHER)  # the counter's ``reason`` values: a bounded set, never an error text
BATCH = "batch"  # the route worker's one part

_batches_failed = metrics.get_meter("router").create_counter(
    "router_batches_failed", unit="1",
    description="batches (route) or requests, dead letters and state reads (deliver) that failed on Redis, the "
                "broker or another service and are retried; by worker kind and reason (redis, broker, other)")


@dataclass(frozen=True)
class ProgressStatus:
    """What :meth:`Progress.status` saw: the oldest open failure run, if any."""

    failing: bool  # a run has lasted at least ``failing_after_s``
    since_s: float | None  # seconds since the oldest open run began (None: no failure since the last success)
    reason: str | None  # the most recent failure's reason in that run
    part: str | None  # the part that run belongs to
    last_success_s: float | None  # seconds since that part (or, with no open run, any part) last succeeded

    def body(self) -> dict[str, object]:
        """The probes' JSON answer: a status, and for a failure the run's age, reason and part; never
        an error message (it may quote a URL or a credential)."""
        if self.since_s is None:
            return {"status": "ok"}
        out: dict[str, object] = {"status": "failing" if self.failing else "retrying",
                                  "since_s": round(self.since_s, 1), "reason": self.reason, "part": self.part}
        if self.last_success_s is not None:
            out["last_success_s"] = round(self.last_success_s, 1)
        return out


class Progress:
    """Failure runs of one worker's parts; thread-safe (the loop writes, the probe thread reads)."""

    def __init__(self, kind: str, failing_after_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.kind = kind
        self.failing_after_s = failing_after_s
        self.clock = clock
        self._lock = threading.Lock()
        self._since: dict[str, float] = {}  # part -> when its open run began
        self._reason: dict[str, str] = {}  # part -> the open run's latest reason
        self._success: dict[str, float] = {}  # part -> when it last succeeded
        self._said = False  # the failing state was logged (once per episode)

    def failed(self, reason: str, part: str = BATCH) -> None:
        """A unit of ``part``'s work failed on ``reason`` and will be retried; counted."""
        reason = reason if reason in REASONS else OTHER
        _batches_failed.add(1, {"kind": self.kind, "reason": reason})
        now = self.clock()
        with self._lock:
            self._since.setdefault(part, now)
            self._reason[part] = reason
            status = self._status(now)
            say, self._said = status.failing and not self._said, self._said or status.failing
        if say:
            log.error("%s worker failing: its %s has failed for %.0fs (%s); /readyz and /healthz answer 503",
                      self.kind, status.part, status.since_s or 0.0, status.reason)

    def succeeded(self, part: str = BATCH) -> None:
        """A unit of ``part``'s work succeeded: its failure run, if any, is over."""
        now = self.clock()
        with self._lock:
            self._success[part] = now
            self._end(part, now)

    def settled(self, part: str) -> None:
        """Nothing of ``part`` is left to retry (its records went elsewhere): its run is over, without
        counting as a success."""
        if part in self._since:
            with self._lock:
                self._end(part, self.clock())

    def failing(self) -> bool:
        """Has a failure run lasted ``failing_after_s``?"""
        return self.status().failing

    def status(self) -> ProgressStatus:
        """The oldest open run (or none), as of now."""
        now = self.clock()
        with self._lock:
            return self._status(now)

    def _end(self, part: str, now: float) -> None:
        if self._since.pop(part, None) is not None:
            self._reason.pop(part, None)
            if self._said and not self._status(now).failing:
                self._said = False
                log.warning("%s worker making progress again", self.kind)

    def _status(self, now: float) -> ProgressStatus:
        if not self._since:
            last = max(self._success.values(), default=None)
            return ProgressStatus(False, None, None, None, None if last is None else now - last)
        part = min(self._since, key=self._since.__getitem__)
        since = now - self._since[part]
        success = self._success.get(part)
        return ProgressStatus(since >= self.failing_after_s, since, self._reason[part], part,
                              None if success is None else now - success)
