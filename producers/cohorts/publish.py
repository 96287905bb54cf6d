"""Publishing a plan's chunks to cohort.<audience> and waiting until the broker has every one.

Every record is keyed by the audience (not by user id as DESIGN §2 says for cohort topics): all
chunks of an audience then share one partition, so a later sync's remove of a user can never
overtake an earlier sync's add of the same user (docs/cohorts.md).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterable

from confluent_kafka import KafkaError, Message, Producer

from producers.cohorts.errors import CohortError
from producers.cohorts.records import change_headers, change_record
from router import codes
from router.kafka import producer_config
from router.pacing import Pacer
from router.pipeline.stages import encode_avro
from router.settings import Settings
from router.spec.avro_writer import Writer

FLUSH_TIMEOUT_S = 300.0


class Publisher:
    """One idempotent, acks=all producer; :meth:`publish` returns only when every record is acknowledged."""

    def __init__(self, settings: Settings, topic: str, schema_id: int, write: Writer) -> None:
        self.topic = topic
        self.schema_id = schema_id
        self.write = write
        # Larger batches than the route worker's: a first sync is 10,000 records of ~14 kB at once.
        self.producer = Producer(producer_config(settings, **{"linger.ms": 20, "batch.size": 4_000_000}))
        self.failures: list[KafkaError] = []
        self.acked = 0

    def _report(self, err: KafkaError | None, _msg: Message) -> None:
        # Never raise in a librdkafka callback: record it, publish() raises after the flush.
        if err is not None:
            self.failures.append(err)
        else:
            self.acked += 1

    def _wait(self, seconds: float, stop: threading.Event | None) -> None:
        """Serve delivery reports for ``seconds``: poll returns at the first report, so poll again
        until the time is up (or the run is stopped)."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0 and not (stop is not None and stop.is_set()):
            self.producer.poll(min(left, 0.1))

    def publish(self, chunks: Iterable[tuple[list[str], bool]], *, sync_id: str, audience: str,
                destination: str | None, tenant: str, rate: float | None = None,
                stop: threading.Event | None = None, healthy: Callable[[], bool] = lambda: True,
                progress: Callable[[], None] = lambda: None) -> int:
        """Produce one record per chunk, then flush; raise CohortError unless all were acknowledged.

        Order: produce every record (serving delivery reports as the queue fills), flush, fail if
        anything is undelivered. ``stop`` or an unhealthy lease aborts before the flush: what was
        produced may or may not be on the topic, and the caller must not commit the state.
        """
        key = audience.encode()
        trace_id = secrets.token_hex(16)
        pacer = Pacer(rate)
        count = 0
        for count, (ids, remove) in enumerate(chunks, start=1):
            if (stop is not None and stop.is_set()) or not healthy():
                self.producer.flush(30)
                why = "stopped by a signal" if stop is not None and stop.is_set() else "lost its lease"
                raise CohortError(f"the sync {why} after {count - 1} record(s); the state was not replaced, "
                                  "the next run redoes the diff", code=codes.COHORT_INTERRUPTED)
            self._wait(pacer.delay(), stop)
            now_ms = int(time.time() * 1000)
            record = change_record(sync_id, count - 1, audience, destination, ids, remove, now_ms)
            value = encode_avro(record, self.schema_id, self.write)
            headers = change_headers(tenant, record["change_id"], now_ms, trace_id)
            while True:
                try:
                    self.producer.produce(self.topic, key=key, value=value, headers=headers, on_delivery=self._report)
                    break
                except BufferError:
                    self.producer.poll(0.1)
            self.producer.poll(0)
            progress()
        remaining = self.producer.flush(FLUSH_TIMEOUT_S)
        if remaining or self.failures:
            detail = f"{remaining} still queued" if remaining else str(self.failures[0])
            raise CohortError(f"{len(self.failures) + remaining} of {count} record(s) were not acknowledged "
                              f"({detail}); the state was not replaced, the next run redoes the diff",
                              code=codes.COHORT_PUBLISH_FAILED)
        return count
