"""Health rows off the commit path: batches add their tallies here, a ``route-health`` thread
writes what has gathered at most once every :data:`FLUSH_EVERY_S`.

Why: written per batch on ``route-io``, the rows held every commit for a Redis round trip (and
the GIL it waits for): ~32 ms a batch in the bench. Health is for people; a second of delay is
invisible on the page, and one write a second instead of one a batch is less work for Redis too.

Rules kept from the per-batch write: only finished batches count (the worker adds a batch's
tallies once it finished, drops them when it is retried); a failed write is logged and its
tallies dropped (a half-run pipeline must not be counted twice); what is pending when the worker
stops is written then. The thread uses the worker's client, whose pool gives it its own
connection: a Redis that hangs holds this thread for the socket timeout, never a decision.
"""

from __future__ import annotations

import logging
import threading

import redis

from router import redisconn
from router.health import HealthBatch, HealthWriter

log = logging.getLogger("router.route")

FLUSH_EVERY_S = 1.0


class HealthFlush:
    """Tallies of finished batches not yet written, and the thread that writes them."""

    def __init__(self, writer: HealthWriter, client: redisconn.Sync | None, every_s: float = FLUSH_EVERY_S) -> None:
        self.writer = writer
        self.client = client  # None: health is not recorded (tests may set one later)
        self.every_s = every_s
        self._pending = HealthBatch()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, batch: HealthBatch) -> None:
        """Take a finished batch's tallies (and clear ``batch``); no I/O. Starts the writer thread
        on first use."""
        if not batch.rows:
            return
        if self.client is None:
            batch.clear()
            return
        with self._lock:
            self._pending.merge(batch)
        if self._thread is None and not self._closed.is_set():
            self._thread = threading.Thread(target=self._run, name="route-health", daemon=True)
            self._thread.start()

    def flush(self) -> None:
        """Write what is pending now (best effort: never raises)."""
        with self._lock:
            pending, self._pending = self._pending, HealthBatch()
        client = self.client
        if not pending.rows or client is None:
            return
        try:
            self.writer.write(client, pending)
        except Exception as exc:  # Redis down, or a sample nobody foresaw: never the batch's problem
            log.warning("health not recorded: %s", exc if isinstance(exc, redis.RedisError) else type(exc).__name__)

    def close(self) -> None:
        """Stop the thread and write what is left (the worker is stopping)."""
        self._closed.set()
        if self._thread is not None:
            self._thread.join()
        self.flush()

    def _run(self) -> None:
        while not self._closed.wait(self.every_s):
            self.flush()
