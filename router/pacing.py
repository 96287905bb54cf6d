"""Spacing work to a rate: one schedule for every ``--rate`` (DLQ replay, cohort sync)."""

from __future__ import annotations

import time
from collections.abc import Callable


class Pacer:
    """Books one slot per event, ``1/rate`` apart; :meth:`delay` says how long to wait for the
    next one. After a stall the schedule restarts from now (at most one interval of catch-up), so
    a pause is never followed by a burst. The caller waits its own way (an event, a producer poll
    that serves delivery reports) — and must wait the whole delay: a wait that returns early
    (``Producer.poll`` returns at the first delivery report) is waited again."""

    def __init__(self, rate: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self.clock = clock
        self.next_at = clock()

    def delay(self) -> float:
        """Seconds until the next slot (0 when it is due), and book it."""
        if not self.interval:
            return 0.0
        now = self.clock()
        delay = max(0.0, self.next_at - now)
        self.next_at = max(self.next_at, now - self.interval) + self.interval
        return delay
