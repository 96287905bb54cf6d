"""The fuzz tier's delivery half (issue 15): hostile records on a delivery topic, one real
delivery worker, the partner simulator. For every batch: the worker is alive, each valid record
is accepted by the partner exactly once, and each hostile one — bytes that are not registry-framed
Avro, an unknown schema id, corrupt Avro, missing or junk ``router-`` headers — is dead-lettered
exactly once with a stable code.

    FUZZ_EXAMPLES=500 .venv/bin/pytest tests/fuzz/test_deliver_fuzz.py -p no:cacheprovider
"""

from __future__ import annotations

import os
import re
import struct
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from consumers.deliver.payload import idempotency_key
from consumers.deliver.worker import DeliverWorker
from router import headers as h
from router.settings import Settings
from support.delivering import Partner, delivery_records, http_spec, partner_sim, running_deliverer
from support.routing import make_topology, prepare_services, produce, zendesk_event
from support.services import unique, wait_for

EXAMPLES = max(5, int(os.environ.get("FUZZ_EXAMPLES", "40")) // 2)
CODE = re.compile(r"^(deliver|internal)\.[a-z_]+$")
Record = tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]


@dataclass
class Rig:
    bootstrap: str
    topic: str
    destination: str
    integration: str
    schema_id: int
    worker: DeliverWorker
    partner: Partner
    dead: Consumer
    valid_template: Record
    dead_seen: int = 0


@pytest.fixture(scope="module")
def rig(kafka_bootstrap: str, redis_url: str, registry_url: str, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[Rig]:
    name = unique("dfuzz")
    tmp: Path = tmp_path_factory.mktemp("dfuzz")
    settings_ = Settings(kafka_bootstrap_servers=kafka_bootstrap, redis_url=redis_url, session_timeout_ms=6000,
                         redis_key_prefix=f"{name}:")
    with partner_sim(tmp) as partner:
        dest = f"{name}-d"
        topo = make_topology(tmp, name, {"a": http_spec(name, name, dest, f"{partner.url}/v1/{dest}")})
        schema_ids = prepare_services(settings_, registry_url, topo, partitions=1)
        template = delivery_records(topo, schema_ids, [zendesk_event("tpl", 1, 1)])[0]
        dead = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": "fuzz-reader", "enable.partition.eof": False,
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
        dead.assign([TopicPartition(f"delivery.{dest}.dlq", 0, 0)])
        try:
            with running_deliverer(settings_, registry_url, topo, group=name) as worker:
                yield Rig(kafka_bootstrap, f"delivery.{dest}", dest, name, schema_ids[name], worker, partner, dead,
                          template)
        finally:
            dead.close()


@st.composite
def batch(draw: st.DrawFn, rig: Rig) -> tuple[list[Record], set[str], int]:
    """Records for the delivery topic, the idempotency keys of the valid ones (two records may share
    one: the second is a duplicate, skipped) and how many are hostile."""
    tag = draw(st.uuids()).hex[:8]
    key, value, template_headers = rig.valid_template
    records: list[Record] = []
    valid: set[str] = set()
    hostile = 0
    for i in range(draw(st.integers(1, 6))):
        event_id = f"{tag}-{i}"
        headers = [(k, event_id.encode() if k == h.EVENT_ID else v) for k, v in template_headers]
        kind = draw(st.sampled_from(["valid", "valid", "bytes", "unknown_schema", "corrupt", "headers"]))
        if kind == "valid":
            valid.add(idempotency_key("acme", rig.integration, event_id))
            records.append((key, value, headers))
            continue
        if kind == "bytes":
            records.append((key, draw(st.binary(max_size=200) | st.none()), headers))
        elif kind == "unknown_schema":
            records.append((key, b"\x00" + struct.pack(">I", 900_000 + draw(st.integers(0, 9999)))
                            + draw(st.binary(max_size=50)), headers))
        elif kind == "corrupt":
            records.append((key, struct.pack(">bI", 0, rig.schema_id) + draw(st.binary(min_size=1, max_size=80)),
                            headers))
        else:  # the body is fine, its headers are not
            broken = draw(st.sampled_from([h.INTEGRATION, h.EVENT_ID]))
            # An id that is empty, not UTF-8 or past MAX_EVENT_ID_CHARS is dead-lettered (deliver.bad_header);
            # one of exactly the limit is a different id, still a valid record.
            junk = draw(st.sampled_from([b"", b"\xff\xfe", b"nobody", b"x" * h.MAX_EVENT_ID_CHARS,
                                         b"x" * (h.MAX_EVENT_ID_CHARS + 1)]))
            hostile_headers = [(k, junk if k == broken else v) for k, v in headers]
            if broken == h.EVENT_ID and 0 < len(junk) <= h.MAX_EVENT_ID_CHARS and junk != b"\xff\xfe":
                valid.add(idempotency_key("acme", rig.integration, junk.decode()))
                hostile -= 1
            hostile_headers += [(h.RECEIVED_AT, b"9" * 5000), (h.TRACEPARENT, draw(st.binary(max_size=60)))]
            records.append((key, value, hostile_headers))
        hostile += 1
    return records, valid, hostile


# No shrinking: each example costs a real round trip, and a shrink of a timed-out one would take minutes.
@settings(phases=[Phase.explicit, Phase.generate], max_examples=EXAMPLES, deadline=None, database=None,
          derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                 HealthCheck.data_too_large])
@given(data=st.data())
def test_every_hostile_delivery_record_ends_delivered_or_dead_lettered_once(rig: Rig, data: st.DataObject) -> None:
    records, valid, hostile = data.draw(batch(rig))
    produce(rig.bootstrap, rig.topic, records)
    dead: list[Any] = []

    def settled() -> bool:
        dead.extend(m for m in rig.dead.consume(100, 0.05) if m.error() is None)
        accepted = rig.partner.ledger(rig.destination)["accepted"]
        return valid <= set(accepted) and len(dead) >= hostile

    wait_for(settled, deadline_s=60, what=f"{len(valid)} accepted and {hostile} dead-lettered", interval_s=0.05)
    dead.extend(m for m in rig.dead.consume(100, 0.2) if m.error() is None)
    accepted = Counter(rig.partner.ledger(rig.destination)["accepted"])
    assert all(accepted[k] == 1 for k in valid), f"accepted more than once: {[(k, accepted[k]) for k in valid]}"
    assert len(dead) == hostile, f"{len(dead)} dead letters for {hostile} hostile records"
    for m in dead:
        code = dict(m.headers() or [])[h.ERROR_CODE].decode()
        assert CODE.match(code), f"unstable DLQ code {code!r}"
