"""A record's dead letter, on the event loop: checked against the DLQ ledger in Redis (one copy per
record), produced on the producer thread, its broker ack awaited, then the record is finished."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from confluent_kafka import KafkaError, Message
from opentelemetry import trace

from consumers.deliver.failures import DEAD_LETTERS, RETRYABLE_REDIS
from consumers.deliver.lanes import Item, now
from consumers.deliver.payload import to_json
from router import codes, deadletters
from router.deadletters import DeadLetter
from router.kafka import dlq_topic
from router.progress import BROKER, REDIS
from router.tracing import record_failure

if TYPE_CHECKING:
    from consumers.deliver.worker import DeliverWorker

log = logging.getLogger("router.deliver")
_tracer = trace.get_tracer("router.deliver")


async def dead_letter(worker: DeliverWorker, item: Item) -> None:
    """Write ``item`` to its topic's DLQ, wait for the ack, then finish it; on failure retry later."""
    code, message, status, body = item.dlq or (codes.DELIVER_UNKNOWN, "", None, b"")
    headers: list[tuple[str, str | bytes | None]] = [*deadletters.error_headers(
        item.headers, topic=item.topic, partition=item.partition, offset=item.offset,
        timestamp_ms=int(item.born_s * 1000), code=code, message=message, stage="deliver",
        group=worker.options.group, integration=None, now_ms=int(time.time() * 1000), attempts=item.attempts,
        http_status=status, response_body=body)]
    # One DLQ copy per record: a redelivery after a crash before the commit finds it recorded.
    letter = deadletters.slot(worker.prefix, worker.options.group,
                              DeadLetter(item.topic, item.partition, item.offset, item.integration))
    try:
        [already] = await deadletters.written_async(worker.redis, [letter])
    except RETRYABLE_REDIS as exc:
        log.warning("DLQ ledger unavailable, retrying the dead letter later: %s", exc)
        worker.progress.failed(REDIS, DEAD_LETTERS)
        worker.lanes.retry(item, now() + 1.0)
        return
    if already:
        worker.outcomes.add("dlq_already_written", item.tenant, item.integration, code)
        worker.finish(item, None)
        return
    loop = asyncio.get_running_loop()
    acked: asyncio.Future[KafkaError | None] = loop.create_future()

    def settle(err: KafkaError | None) -> None:
        """On the loop: the broker's answer to the DLQ write (first one wins)."""
        if not acked.done():
            acked.set_result(err)

    def report(err: KafkaError | None, _msg: Message) -> None:
        """On the producer thread (delivery report): hand the answer to the loop, nothing else."""
        loop.call_soon_threadsafe(settle, err)

    producer = worker.kafka.producer
    try:
        await worker.kafka.produce_call(lambda: producer.produce(dlq_topic(item.topic), key=item.key,
                                                                 value=item.value, headers=headers,
                                                                 on_delivery=report))
        err = await asyncio.wait_for(acked, 30)
    except Exception as exc:
        err = KafkaError(KafkaError._FAIL, str(exc))
    if err is not None:
        log.warning("DLQ write for %s failed, retrying: %s", item.topic, err)
        worker.progress.failed(BROKER, DEAD_LETTERS)
        worker.lanes.retry(item, now() + 1.0)
        return
    try:
        await deadletters.record_async(worker.redis, [letter], [code])
    except RETRYABLE_REDIS as exc:  # written once; only a crash before the commit could repeat it
        log.warning("DLQ ledger not updated for %s[%d]@%d: %s", item.topic, item.partition, item.offset, exc)
    worker.progress.succeeded(DEAD_LETTERS)
    worker.outcomes.add("dlq", item.tenant, item.integration, code)
    record_failure(_tracer, f"dead-letter {item.integration}", item.traceparent, code, message,
                   {"router.tenant": item.tenant, "router.integration": item.integration,
                    "messaging.destination.name": dlq_topic(item.topic)})
    sample = to_json(item.record) if item.record is not None else item.value
    worker.health.fail(item.integration, item.tenant, code, message, sample)
    worker.finish(item, None)
