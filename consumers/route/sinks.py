"""The producer side of a batch: outputs and DLQ writes, with delivery reports kept, never raised.

librdkafka calls ``on_delivery`` from ``poll``/``flush``; raising there would unwind through C
(STYLE §3). The callback only records; ``flush`` reports what failed and the loop decides.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from confluent_kafka import KafkaError, KafkaException, Message, Producer

# Errors that will not go away by retrying the same record: the record goes to the DLQ instead.
PERMANENT = frozenset({
    KafkaError.MSG_SIZE_TOO_LARGE,
    KafkaError.INVALID_RECORD,
    KafkaError.RECORD_LIST_TOO_LARGE,
})


@dataclass
class Pending:
    """One produce whose delivery report has not been checked yet."""

    tag: object  # what the loop needs to handle a failure (e.g. the source record)
    is_dlq: bool
    error: KafkaError | None = None
    done: bool = False


@dataclass
class BatchSink:
    """Produces a batch's records and tells, after flush, which ones the broker did not take."""

    producer: Producer
    flush_timeout_s: float = 30.0
    pending: list[Pending] = field(default_factory=list)

    def send(self, topic: str, key: bytes | None, value: bytes | None, headers: list, tag: object,
             is_dlq: bool = False) -> Pending:
        """Queue one record; a local refusal (too large) is recorded like a failed delivery."""
        item = Pending(tag, is_dlq)
        self.pending.append(item)

        def report(err: KafkaError | None, _msg: Message) -> None:
            item.error = err
            item.done = True

        while True:
            try:
                self.producer.produce(topic, value=value, key=key, headers=headers, on_delivery=report)
                return item
            except BufferError:
                self.producer.poll(0.05)  # queue full: let deliveries drain, then try again
            except KafkaException as exc:
                item.error = exc.args[0]
                item.done = True
                return item

    def flush(self) -> list[Pending]:
        """Wait for every report; return the failed items and forget the batch."""
        remaining = self.producer.flush(self.flush_timeout_s)
        failed = [p for p in self.pending if p.error is not None or not p.done]
        if remaining:
            for p in self.pending:
                if not p.done:
                    p.error = KafkaError(KafkaError._TIMED_OUT, "no delivery report before the flush timeout")
        self.pending = []
        return failed


def is_permanent(error: KafkaError | None) -> bool:
    """True when retrying the same record cannot succeed."""
    return error is not None and error.code() in PERMANENT
