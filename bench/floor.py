"""The floor: the least Python any route worker must run for this workload, with nothing else.

Run as its own process, measured like a `router route` worker:

    python -m bench.floor --bootstrap HOST:PORT --redis-url URL --source T --dest T2 --group G \
        --events N --prefix P --schema-id ID

It does the work DESIGN §4 and §5 require of a route worker for the bench's one spec, and only
that work, written by hand for that spec: parse the JSON body, read the tenant header, map the
ticket to a PagerDuty ``Incident`` (the shipped spec's fields, in straight-line code), Avro-encode
it with the writer `router route` uses (``router.spec.avro_writer``, the fastest we have), ask
Redis for dedupe and ordering with the route worker's own script (``RedisState``: one call per
batch), produce the records it routes with the five DESIGN headers, flush, commit. Its threads
overlap like the route worker's: while the main thread consumes and prepares batch N+1, batch N
is decided on one thread and produced, flushed and committed on another. It has no spec interpreter, no DLQ, no error
handling, no outcome counters, health or tracing: a malformed record stops it. It exists to
answer one question: how close to the passthrough can one Python process get at all?
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import orjson
import redis
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from consumers.route.sinks import PRODUCER_CONFIG
from consumers.route.state_redis import RedisState
from router import codec
from router import headers as h
from router.kafka import consumer_config, producer_config
from router.pipeline.records import Claim, Decision
from router.settings import Settings
from router.spec.avro_writer import compile_writer
from router.spec.coerce import to_timestamp_ms

ROOT = Path(__file__).resolve().parents[1]
DAY_MS = 86_400_000
SEVERITY = {"low": 3, "med": 2, "high": 1}
ROUTE = Decision.ROUTE

Headers = list[tuple[str, str | bytes | None]]
# One batch: its outputs (key, value, headers), their claims, and the last offset per partition.
Batch = tuple[list[tuple[bytes, bytes, Headers]], list[Claim], dict[tuple[str, int], int]]


class Floor:
    """The loop; ``source_name`` / ``integration`` are the spec's names (for keys and headers)."""

    def __init__(self, settings: Settings, group: str, state: RedisState, dest: str, prefix: str, schema_id: int,
                 source_name: str, integration: str) -> None:
        self.consumer = Consumer(consumer_config(settings, group))
        self.producer = Producer(producer_config(settings, **PRODUCER_CONFIG))
        self.state = state
        self.dest = dest
        self.prefix = prefix
        self.framing = codec.frame(schema_id, b"")
        schema = orjson.loads((ROOT / "schemas" / "avro" / "com.example.pagerduty.Incident.avsc").read_bytes())
        self.write = compile_writer(schema)
        self.source_name, self.source_bytes = source_name, source_name.encode()
        self.integration, self.integration_bytes = integration, integration.encode()
        self.failures: list[KafkaError] = []

    def prepare(self, messages: Sequence[Message]) -> Batch:
        outs: list[tuple[bytes, bytes, Headers]] = []
        claims: list[Claim] = []
        last: dict[tuple[str, int], int] = {}
        prefix, source, name = self.prefix, self.source_name, self.integration
        for msg in messages:
            if msg.error() is not None:
                continue
            headers: list[tuple[str, bytes]] = msg.headers() or []  # type: ignore[assignment]
            tenant = next(v for k, v in headers if k == h.TENANT).decode()
            event = orjson.loads(msg.value())  # type: ignore[arg-type]
            ticket = event["data"]["ticket"]
            tid = str(ticket["id"])
            event_id = event["event_id"]
            received = str(msg.timestamp()[1]).encode()
            record = {
                "incident_key": f"{tenant}:{tid}",
                "title": ticket["title"],
                "severity": SEVERITY.get(ticket.get("priority"), 2),
                "occurred_at": to_timestamp_ms(event["occurred_at"]),
                "source": "zendesk",
                "requester_email": (ticket.get("requester") or {}).get("email"),
                "ticket_url": f"https://{tenant}.zendesk.example/agent/tickets/{tid}",
                "tags": ticket.get("tags") or [],
            }
            coords = f"{msg.topic()}:{msg.partition()}:{msg.offset()}"
            outs.append((tid.encode(), self.framing + self.write(record), [
                (h.TENANT, tenant.encode()), (h.SOURCE, self.source_bytes), (h.EVENT_ID, event_id.encode()),
                (h.INTEGRATION, self.integration_bytes), (h.RECEIVED_AT, received)]))
            claims.append(Claim(f"{prefix}dk:{tenant}:{source}:{event_id}", name, coords, DAY_MS,
                                f"{prefix}wm:{tenant}:{name}:{tid}", float(event["sequence"]), 30 * DAY_MS))
            last[msg.topic(), msg.partition()] = msg.offset()  # type: ignore[index,assignment]
        return outs, claims, last

    def finish(self, batch: Batch, decided: Future[list[Decision]]) -> int:
        """On ``floor-io``: wait for the batch's decisions, produce what they route, flush, commit."""
        outs, _claims, last = batch
        produce, dest = self.producer.produce, self.dest
        for (key, value, headers), decision in zip(outs, decided.result(), strict=True):
            if decision is ROUTE:
                while True:
                    try:
                        produce(dest, value, key, headers=headers, on_delivery=self._on_error)
                        break
                    except BufferError:
                        self.producer.poll(0.1)
        if self.producer.flush(30) or self.failures:
            raise SystemExit(f"floor: records not acknowledged: {self.failures[:3]}")
        self.consumer.commit(offsets=[TopicPartition(t, p, o + 1) for (t, p), o in last.items()],
                             asynchronous=True)
        return len(outs)

    def _on_error(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None:  # PRODUCER_CONFIG reports failures only
            self.failures.append(err)

    def run(self, source: str, events: int, deadline_s: float, batch_size: int) -> int:
        self.consumer.subscribe([source])
        state_io = ThreadPoolExecutor(1, thread_name_prefix="floor-state")  # decisions in batch order
        io = ThreadPoolExecutor(1, thread_name_prefix="floor-io")
        done = 0
        end = time.monotonic() + deadline_s
        inflight: Future[int] | None = None
        try:
            while done < events and time.monotonic() < end:
                batch = self.prepare(self.consumer.consume(batch_size, 0.2))
                decided = state_io.submit(self.state.decide, batch[1]) if batch[0] else None
                if inflight is not None:  # one batch in flight, as in the route worker
                    done += inflight.result()
                    inflight = None
                if decided is not None:
                    inflight = io.submit(self.finish, batch, decided)
            if inflight is not None:
                done += inflight.result()
        finally:
            io.shutdown(wait=True)
            state_io.shutdown(wait=True)
            self.producer.flush(10)
            self.consumer.close()
        return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description="the least work of a route worker")
    for flag in ("--bootstrap", "--redis-url", "--source", "--dest", "--group", "--prefix", "--source-name",
                 "--integration"):
        parser.add_argument(flag, required=True)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--schema-id", type=int, required=True)
    parser.add_argument("--batch-size", type=int, default=2000, help="records per poll (`router route`'s default)")
    parser.add_argument("--deadline", type=float, default=600.0, help="give up after this many seconds")
    args = parser.parse_args(argv)
    settings = Settings(kafka_bootstrap_servers=args.bootstrap, session_timeout_ms=6000)
    floor = Floor(settings, args.group, RedisState(redis.Redis.from_url(args.redis_url)), args.dest, args.prefix,
                  args.schema_id, args.source_name, args.integration)
    print("READY floor", flush=True)
    done = floor.run(args.source, args.events, args.deadline, args.batch_size)
    print(f"stopped floor read={done}", flush=True)
    return 0 if done >= args.events else 1


if __name__ == "__main__":
    sys.exit(main())
