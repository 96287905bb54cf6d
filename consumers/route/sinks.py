"""The producer side of a batch: outputs and DLQ writes, with delivery reports kept, never raised.

librdkafka calls ``on_delivery`` from ``poll``/``flush``; raising there would unwind through C
(STYLE §3). One shared callback only records failures; ``flush`` reports which sends failed and
the loop decides. The producer is made with :data:`PRODUCER_CONFIG`, so librdkafka reports failures
only: a success costs nothing beyond the produce call (the hot path) — no Python call per record.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, KafkaException, Message, Producer

# Errors that will not go away by retrying the same record: the record goes to the DLQ instead.
PERMANENT = frozenset({
    KafkaError.MSG_SIZE_TOO_LARGE,
    KafkaError.INVALID_RECORD,
    KafkaError.RECORD_LIST_TOO_LARGE,
})

Headers = Sequence[tuple[str, str | bytes | None]]

# A BatchSink's producer reports failed deliveries only (``flush`` counts what is still unreported).
PRODUCER_CONFIG: dict[str, str | int | bool] = {"delivery.report.only.error": True}


@dataclass
class Pending:
    """One produce the broker did not acknowledge."""

    tag: object  # what the loop needs to handle the failure (e.g. the source record)
    is_dlq: bool
    error: KafkaError | None = None


@dataclass
class BatchSink:
    """Produces a batch's records and tells, after flush, which ones the broker did not take."""

    producer: Producer
    flush_timeout_s: float = 30.0
    sends: list[tuple[str, bytes | None, bytes | None, object, bool]] = field(default_factory=list)
    failures: list[tuple[KafkaError, str, bytes | None, bytes | None]] = field(default_factory=list)
    refused: list[Pending] = field(default_factory=list)
    last_sends: list[tuple[str, bytes | None, bytes | None, object, bool]] = field(default_factory=list)

    def _report(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self.failures.append((err, msg.topic() or "", msg.key(), msg.value()))

    def send(self, topic: str, key: bytes | None, value: bytes | None, headers: Headers, tag: object,
             is_dlq: bool = False) -> None:
        """Queue one record; a local refusal (e.g. too large) is recorded like a failed delivery."""
        self.sends.append((topic, key, value, tag, is_dlq))
        while True:
            try:
                self.producer.produce(topic, value=value, key=key, headers=headers,  # type: ignore[arg-type]
                                      on_delivery=self._report)
                return
            except BufferError:
                self.producer.poll(0.05)  # queue full: let deliveries drain, then try again
            except KafkaException as exc:
                self.sends.pop()
                self.refused.append(Pending(tag, is_dlq, exc.args[0]))
                return

    def flush(self) -> list[Pending]:
        """Wait for every report; return the failed sends and forget the batch."""
        remaining = self.producer.flush(self.flush_timeout_s)
        failed = list(self.refused)
        if remaining:
            # No report before the deadline: nothing of this batch may be trusted as written.
            timeout = KafkaError(KafkaError._TIMED_OUT, "no delivery report before the flush timeout")
            failed += [Pending(tag, is_dlq, timeout) for _t, _k, _v, tag, is_dlq in self.sends]
        elif self.failures:
            # Rare: find each failed send by its content (equal records are interchangeable).
            by_content: dict[tuple[str, bytes | None, bytes | None], list[tuple[object, bool]]] = defaultdict(list)
            for topic, key, value, tag, is_dlq in self.sends:
                by_content[(topic, key, value)].append((tag, is_dlq))
            for err, topic, key, value in self.failures:
                matches = by_content.get((topic, key, value))
                tag, is_dlq = matches.pop() if matches else (None, True)  # unknown: treat as a DLQ loss
                failed.append(Pending(tag, is_dlq, err))
        self.last_sends = self.sends  # what this flush covered (the caller may need the acknowledged ones)
        self.sends, self.failures, self.refused = [], [], []
        return failed


def is_permanent(error: KafkaError | None) -> bool:
    """True when retrying the same record cannot succeed."""
    return error is not None and error.code() in PERMANENT
