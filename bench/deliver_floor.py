"""The floor of bench.deliver_bench: the least Python any delivery worker must run for its work.

    python -m bench.deliver_floor --url URL --group GROUP --topic TOPIC --batch N [--concurrency 8]

One asyncio loop, written by hand for the bench's spec and nothing else: ``consume(500)`` on the
loop's own thread (no executor hop), the idempotency key from three headers, the compiled Avro
reader (``router.codec``), each record's JSON (``record_json``), bodies of ``--batch`` records
joined as the worker joins them, ``--concurrency`` POSTs in flight on one aiohttp session, then a
synchronous commit of the consumed batch. No lanes, Redis, delivered keys, rate limits, retries,
DLQ, outcomes, health or metrics: an answer other than 200 stops it. Environment as for
``router deliver`` (KAFKA_BOOTSTRAP_SERVERS, SCHEMA_REGISTRY_URL). It runs until killed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

import aiohttp
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient

from consumers.deliver.payload import batch_idempotency_key, idempotency_key, join_body, record_json, to_json
from router import codec
from router import headers as h


async def run(args: argparse.Namespace) -> None:
    """Consume, decode, encode, post, commit; forever."""
    consumer = Consumer({"bootstrap.servers": os.environ["KAFKA_BOOTSTRAP_SERVERS"], "group.id": args.group,
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    consumer.subscribe([args.topic])
    # Ctrl-C unwinds through here: the registry client's HTTP pool is closed, not left to the collector.
    with SchemaRegistryClient({"url": os.environ["SCHEMA_REGISTRY_URL"]}) as registry:
        schemas = codec.Codec(codec.registry_fetch(registry))
        slots = asyncio.Semaphore(args.concurrency)
        connector = aiohttp.TCPConnector(limit=args.concurrency, keepalive_timeout=30)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def post(keys: list[str], parts: list[bytes]) -> None:
                """One request; anything but a 200 stops the floor."""
                single = args.batch == 1
                body = parts[0] if single else join_body(parts, "records")
                request_key = keys[0] if single else batch_idempotency_key(keys)
                headers = {"Content-Type": "application/json", "Idempotency-Key": request_key}
                async with slots, session.post(args.url, data=body, headers=headers) as resp:
                    await resp.read()
                    if resp.status != 200:
                        raise SystemExit(f"the partner answered {resp.status}")

            while True:
                messages = consumer.consume(500, 0.05)
                if not messages:
                    await asyncio.sleep(0)
                    continue
                keys: list[str] = []
                parts: list[bytes] = []
                offsets: dict[tuple[str, int], int] = {}
                for msg in messages:
                    raw: list[tuple[str, bytes]] = msg.headers() or []  # type: ignore[assignment]
                    found = {k: v for k, v in raw if k in _WANTED}
                    key = idempotency_key(found[h.TENANT].decode(), found[h.INTEGRATION].decode(),
                                          found[h.EVENT_ID].decode())
                    value = msg.value()
                    record = schemas.decode_fetching(value)
                    keys.append(key)
                    parts.append(to_json(record) if args.batch == 1 else record_json(record, key, "idempotency_key"))
                    offsets[(msg.topic() or "", msg.partition() or 0)] = msg.offset() or 0
                await asyncio.gather(*(post(keys[i:i + args.batch], parts[i:i + args.batch])
                                       for i in range(0, len(keys), args.batch)))
                consumer.commit(offsets=[TopicPartition(t, p, o + 1) for (t, p), o in offsets.items()],  # type: ignore[call-overload]
                                asynchronous=False)


_WANTED = frozenset({h.TENANT, h.INTEGRATION, h.EVENT_ID})


def main(argv: list[str] | None = None) -> int:
    """Parse the flags and run until killed."""
    parser = argparse.ArgumentParser(prog="python -m bench.deliver_floor", description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--concurrency", type=int, default=8)
    asyncio.run(run(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
