"""The ceiling: consume, produce the same bytes, commit — no decoding, no Redis, no Avro.

Run as its own process so it is measured like a `router route` worker:

    python -m bench.passthrough --bootstrap HOST:PORT --source T --dest T2 --group G --events N

It uses the route worker's client settings (router.kafka: idempotent acks=all lz4 producer,
manual-commit consumer) and the same commit order: produce the batch, flush, fail if anything
is undelivered, then commit offset + 1 per partition, synchronously.
"""

from __future__ import annotations

import argparse
import sys
import time

from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from router.kafka import consumer_config, producer_config
from router.settings import Settings


def passthrough(settings: Settings, source: str, dest: str, group: str, events: int, *, batch_size: int = 1000,
                deadline_s: float = 600.0) -> int:
    """Copy ``events`` records from ``source`` to ``dest``; return how many were copied and committed."""
    consumer = Consumer(consumer_config(settings, group))
    producer = Producer(producer_config(settings))
    failures: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:  # never raise inside a librdkafka callback: the loop checks after flush
            failures.append(err)

    consumer.subscribe([source])
    done = 0
    end = time.monotonic() + deadline_s
    try:
        while done < events and time.monotonic() < end:
            last: dict[tuple[str, int], int] = {}
            copied = 0
            for msg in consumer.consume(batch_size, 0.2):
                err = msg.error()
                if err is not None:
                    if err.code() != KafkaError._PARTITION_EOF:
                        print(f"consumer error: {err}", file=sys.stderr, flush=True)
                    continue
                while True:
                    try:
                        producer.produce(dest, msg.value(), msg.key(), headers=msg.headers() or [],
                                         on_delivery=on_delivery)
                        break
                    except BufferError:
                        producer.poll(0.1)
                last[(msg.topic(), msg.partition())] = msg.offset()  # type: ignore[index,assignment]
                copied += 1
            if not last:
                continue
            if producer.flush(30) or failures:
                raise SystemExit(f"passthrough: records not acknowledged: {failures[:3]}")
            consumer.commit(offsets=[TopicPartition(t, p, o + 1) for (t, p), o in last.items()], asynchronous=False)
            done += copied
    finally:
        producer.flush(10)
        consumer.close()
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.passthrough", description="the passthrough ceiling")
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--dest", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--deadline", type=float, default=600.0, help="give up after this many seconds")
    args = parser.parse_args(argv)
    settings = Settings(kafka_bootstrap_servers=args.bootstrap, session_timeout_ms=6000)
    print("READY passthrough", flush=True)
    done = passthrough(settings, args.source, args.dest, args.group, args.events, batch_size=args.batch_size,
                       deadline_s=args.deadline)
    print(f"stopped passthrough copied={done}", flush=True)
    return 0 if done >= args.events else 1


if __name__ == "__main__":
    sys.exit(main())
