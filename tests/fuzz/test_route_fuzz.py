"""The fuzz tier (issue 15): hostile records through a real route worker on the real broker and Redis.

Hypothesis draws batches of records a hostile partner (or a broken producer) could put on an
ingest topic — JSON nested up to 2,000 levels, huge and non-finite numbers, long strings,
invalid UTF-8, arbitrary bytes, junk ``router-`` headers and keys — and one long-running worker
routes them. For every batch: the worker is alive, its offsets reach the end of the topic, and
every record ends exactly once as routed (its output, once), ignored (counted) or dead-lettered
(one DLQ record with a stable code).

Bounded for CI (about a minute, ``FUZZ_EXAMPLES`` batches, default 40); a longer run:

    FUZZ_EXAMPLES=1000 .venv/bin/pytest tests/fuzz -p no:cacheprovider
"""

from __future__ import annotations

import os
import re
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
import redis
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumers.route.state_redis import RedisState
from consumers.route.worker import RouteWorker, WorkerOptions
from router import headers as h
from router.pipeline.stages import RoutingTable
from router.settings import Settings
from support.routing import make_topology, prepare_services, produce, worker_thread, zendesk_spec
from support.services import unique, wait_for
from support.workers import committed_total

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))
OUTCOMES = ("routed", "duplicate", "stale", "stale_delivered", "ignored", "dlq")
CODE = re.compile(r"^(decode|validate|map|encode|order|internal)\.[a-z_]+$")


@dataclass
class Rig:
    """One route worker for the whole module, and readers of its output and DLQ topics."""

    bootstrap: str
    topic: str
    group: str
    worker: RouteWorker
    thread_alive: Any
    outputs: Consumer
    dead: Consumer
    produced: int = 0


def _reader(bootstrap: str, topic: str) -> Consumer:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "fuzz-reader", "enable.auto.commit": False,
                         "auto.offset.reset": "earliest", "enable.partition.eof": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    return consumer


def _read(consumer: Consumer, n: int, deadline_s: float = 30.0) -> list[Any]:
    """The next ``n`` records (those a batch wrote: acknowledged before its commit), then whatever
    else arrives within a short quiet period — a record written twice would show there."""
    out: list[Any] = []
    def enough() -> bool:
        out.extend(m for m in consumer.consume(500, 0.1) if m.error() is None)
        return len(out) >= n

    wait_for(enough,
             deadline_s=deadline_s, what=f"{n} records on {consumer.assignment()[0].topic}", interval_s=0)
    out.extend(m for m in consumer.consume(500, 0.05) if m.error() is None)
    return out


@pytest.fixture(scope="module")
def rig(kafka_bootstrap: str, redis_url: str, registry_url: str, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[Rig]:
    name = unique("fuzz")
    settings_ = Settings(kafka_bootstrap_servers=kafka_bootstrap, redis_url=redis_url, session_timeout_ms=6000)
    topo = make_topology(tmp_path_factory.mktemp("fuzz"), name,
                         {"a": zendesk_spec(name, source=name, destination=f"{name}-pd", on_stale="dlq")})
    schema_ids = prepare_services(settings_, registry_url, topo, partitions=1)
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    table = RoutingTable.build(topo.catalog.integrations, schema_ids, f"{name}:")
    registry = SchemaRegistryClient({"url": registry_url})
    worker = RouteWorker(settings_, table, RedisState(client), registry,
                         WorkerOptions(group=name, backoff_initial_s=0.2, backoff_max_s=1), health_client=client)
    outputs = _reader(kafka_bootstrap, f"delivery.{name}-pd")
    dead = _reader(kafka_bootstrap, f"{topo.source_topic}.dlq")
    try:
        with worker_thread(worker, "route-fuzz", join_s=60) as running:
            thread = next(t for t in threading.enumerate() if t.name == "route-fuzz")
            yield Rig(kafka_bootstrap, topo.source_topic, name, running, thread.is_alive, outputs, dead)
    finally:
        outputs.close()
        dead.close()
        registry.close()
        client.close()


# ---- strategies ---------------------------------------------------------------------------------

def _nested(depth: int) -> str:
    return "[" * depth + '"x"' + "]" * depth


hostile_json = st.one_of(
    st.integers(1, 2000).map(_nested),
    st.sampled_from(['"Infinity"', '"NaN"', "1e308", "-1e308", "1" + "0" * 30, '""', "null", "true", "[]", "{}"]),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda f: orjson.dumps(f).decode()),
    st.text(max_size=40).map(lambda s: orjson.dumps(s).decode()),
    st.integers(1000, 100_000).map(lambda n: '"' + "x" * n + '"'),
)
PATHS = ("title", "priority", "id", "sequence", "event_id", "occurred_at", "type")


@st.composite
def hostile_record(draw: st.DrawFn, event_id: str) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]:
    kind = draw(st.sampled_from(["event", "event", "event", "bytes", "broken"]))
    if kind == "bytes":
        value: bytes | None = draw(st.binary(max_size=300) | st.none())
    else:
        template: dict[str, Any] = {"event_id": event_id, "type": "ticket.escalated", "sequence": 1,
                    "occurred_at": "2026-11-20T10:15:00Z",
                    "data": {"ticket": {"id": event_id, "title": "down", "priority": "high"}}}
        where = draw(st.sampled_from(PATHS))
        if where in ("title", "priority", "id"):
            template["data"]["ticket"][where] = "HOSTILE"
        else:
            template[where] = "HOSTILE"
        value = orjson.dumps(template).replace(b'"HOSTILE"', draw(hostile_json).encode())
        if kind == "broken":  # invalid UTF-8 or a cut body
            cut = draw(st.integers(0, len(value)))
            value = value[:cut] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b""]))
    headers = [(h.TENANT, draw(st.sampled_from([b"acme", b"acme", b"", b"\xff\xfe", b"a" * 300])))]
    for name in draw(st.lists(st.sampled_from([h.RECEIVED_AT, h.ATTEMPTS, h.TRACEPARENT, h.INTEGRATION,
                                               h.REPLAY_COUNT, h.FIRST_FAILED_AT, h.EVENT_ID]), max_size=3)):
        headers.append((name, draw(st.binary(max_size=40) | st.integers(1, 6000).map(lambda n: b"9" * n))))
    key = draw(st.none() | st.binary(max_size=64))
    return key, value, headers


@st.composite
def batches(draw: st.DrawFn) -> list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]]:
    n = draw(st.integers(1, 6))
    tag = draw(st.uuids()).hex[:8]
    return [draw(hostile_record(f"fz-{tag}-{i}")) for i in range(n)]


# ---- the property -------------------------------------------------------------------------------

@settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                 HealthCheck.data_too_large, HealthCheck.large_base_example])
@given(records=batches())
def test_every_hostile_record_ends_routed_ignored_or_dead_lettered_once(rig: Rig, records: list[Any]) -> None:
    totals = rig.worker.outcomes.totals
    before = Counter({k: totals[k] for k in OUTCOMES})
    first = rig.produced
    rig.produced += produce(rig.bootstrap, rig.topic, records)
    end = rig.produced

    def counted() -> int:
        assert rig.thread_alive(), "the route worker died"
        return sum(totals[k] - before[k] for k in OUTCOMES)

    # Every record gets one outcome, counted once its batch is committed (one integration here).
    wait_for(lambda: counted() >= len(records), deadline_s=60, what=f"{len(records)} outcomes", interval_s=0.05)
    delta = Counter({k: totals[k] - before[k] for k in OUTCOMES})
    assert sum(delta.values()) == len(records), f"{len(records)} records, outcomes {dict(+delta)}"
    assert committed_total(rig.bootstrap, rig.group, rig.topic, 1) >= end or wait_for(
        lambda: committed_total(rig.bootstrap, rig.group, rig.topic, 1) >= end, deadline_s=10,
        what=f"offsets committed to {end}")
    outputs = _read(rig.outputs, delta["routed"] + delta["stale_delivered"])
    dead = _read(rig.dead, delta["dlq"])
    routed = Counter(dict(m.headers() or []).get(h.EVENT_ID, b"") for m in outputs)
    assert len(outputs) == delta["routed"] + delta["stale_delivered"], f"outputs {len(outputs)} vs {dict(+delta)}"
    assert all(n == 1 for n in routed.values()), f"an output was produced twice: {routed.most_common(2)}"
    coords = Counter(int(dict(m.headers() or [])[h.ORIGINAL_OFFSET]) for m in dead)
    assert len(dead) == delta["dlq"], f"DLQ records {len(dead)} vs {dict(+delta)}"
    assert all(n == 1 for n in coords.values()), f"a record was dead-lettered twice: {coords.most_common(2)}"
    assert set(coords) <= set(range(first, end)), "DLQ records name this batch's offsets"
    for m in dead:
        code = dict(m.headers() or [])[h.ERROR_CODE].decode()
        assert CODE.match(code), f"unstable DLQ code {code!r}"
