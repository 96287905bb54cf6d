"""Route worker against a real broker, Redis and schema registry (DESIGN §2, §4, §5)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from router.settings import Settings
from support.routing import (
    headers_of,
    json_records,
    make_topology,
    produce,
    read_all,
    running_worker,
    zendesk_event,
    zendesk_spec,
)
from support.services import wait_for


def processed(worker, n: int) -> bool:  # type: ignore[no-untyped-def]
    totals = worker.outcomes.totals
    return sum(totals[k] for k in ("routed", "duplicate", "stale", "ignored", "dlq")) >= n


def test_maps_and_sets_headers_readable_by_confluent_deserializer(
        settings: Settings, registry_url: str, registry_client: SchemaRegistryClient, tmp_path: Path,
        name: str) -> None:
    topo = make_topology(tmp_path, name, {"a": zendesk_spec(name, source=name, destination=f"{name}-pd")})
    event = zendesk_event("evt-1", 4521, 7, priority="med", tags=["p1"])
    record = (b"4521", orjson.dumps(event), [("router-tenant", b"acme"), ("traceparent",
              b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")])
    with running_worker(settings, registry_url, topo, group=name, prefix=f"{name}:") as worker:
        produce(settings.kafka_bootstrap_servers or "", topo.source_topic, [record])
        wait_for(lambda: processed(worker, 1), deadline_s=60, what="the record to be routed")
    [msg] = read_all(settings.kafka_bootstrap_servers or "", f"delivery.{name}-pd", expect=1)
    value = AvroDeserializer(registry_client)(
        msg.value(), SerializationContext(msg.topic(), MessageField.VALUE))
    assert value["incident_key"] == "acme:4521"
    assert value["severity"] == 2
    assert value["tags"] == ["p1"]
    assert msg.key() == b"4521"
    assert msg.value()[:1] == b"\x00"
    hdrs = headers_of(msg)
    assert hdrs["router-tenant"] == "acme"
    assert hdrs["router-source"] == name
    assert hdrs["router-event-id"] == "evt-1"
    assert hdrs["router-integration"] == name
    assert int(hdrs["router-received-at"]) > 0
    assert hdrs["traceparent"].startswith("00-0af7651916cd43dd8448eb211c80319c")


def test_duplicates_are_counted_not_routed(settings_each_redis: Settings, registry_url: str, tmp_path: Path,
                                           name: str) -> None:
    settings = settings_each_redis
    topo = make_topology(tmp_path, name, {"a": zendesk_spec(name, source=name, destination=f"{name}-pd")})
    events = [zendesk_event("evt-1", 1, 1), zendesk_event("evt-2", 2, 1), zendesk_event("evt-1", 1, 1)]
    with running_worker(settings, registry_url, topo, group=name, prefix=f"{name}:") as worker:
        produce(settings.kafka_bootstrap_servers or "", topo.source_topic, json_records(events))
        wait_for(lambda: processed(worker, 3), deadline_s=60, what="3 records processed")
        assert worker.outcomes.totals["duplicate"] == 1
        assert worker.outcomes.totals["routed"] == 2
    out = read_all(settings.kafka_bootstrap_servers or "", f"delivery.{name}-pd", expect=2, settle_s=1.0)
    assert sorted(headers_of(m)["router-event-id"] for m in out) == ["evt-1", "evt-2"]


@pytest.mark.parametrize(("policy", "routed", "dlq"), [("drop", 1, 0), ("deliver", 2, 0), ("dlq", 1, 1)])
def test_stale_versions_follow_the_policy(settings_each_redis: Settings, registry_url: str, tmp_path: Path, name: str,
                                          policy: str, routed: int, dlq: int) -> None:
    settings = settings_each_redis
    topo = make_topology(tmp_path, name, {"a": zendesk_spec(name, source=name, destination=f"{name}-pd",
                                                            on_stale=policy)})
    events = [zendesk_event("evt-new", 9, 5), zendesk_event("evt-old", 9, 3)]
    with running_worker(settings, registry_url, topo, group=name, prefix=f"{name}:") as worker:
        produce(settings.kafka_bootstrap_servers or "", topo.source_topic, json_records(events))
        wait_for(lambda: processed(worker, 2) or worker.outcomes.totals["stale_delivered"], deadline_s=60,
                 what="2 records processed")
        wait_for(lambda: worker.outcomes.totals["routed"] == routed, deadline_s=30, what=f"{routed} routed")
    bootstrap = settings.kafka_bootstrap_servers or ""
    out = read_all(bootstrap, f"delivery.{name}-pd", expect=routed, settle_s=1.0)
    assert len(out) == routed
    if dlq:
        [dead] = read_all(bootstrap, f"{topo.source_topic}.dlq", expect=1)
        hdrs = headers_of(dead)
        assert hdrs["router-error-code"] == "order.stale"
        assert hdrs["router-error-stage"] == "order"
        assert hdrs["router-integration"] == name
        assert orjson.loads(dead.value())["event_id"] == "evt-old"


def test_every_dlq_code_with_its_headers(settings: Settings, registry_url: str, tmp_path: Path, name: str) -> None:
    topo = make_topology(tmp_path, name, {"a": zendesk_spec(name, source=name, destination=f"{name}-pd")})
    tenant = [("router-tenant", b"acme")]
    records = [
        (b"k1", b"{not json", tenant),
        (b"k2", b"[1, 2, 3]", tenant),
        (b"k3", orjson.dumps({k: v for k, v in zendesk_event("x", 3, 1).items() if k != "event_id"}), tenant),
        (b"k4", orjson.dumps(zendesk_event("evt-4", 4, 1, title=None)), tenant),
        (b"k5", orjson.dumps(zendesk_event("evt-5", 5, 1, title={"nested": True})), tenant),
        (b"k6", orjson.dumps(zendesk_event("evt-6", 6, 1, tags=[1, 2])), tenant),
        (b"k7", orjson.dumps(zendesk_event("evt-7", 7, 1)), []),
        (b"k8", b"x" * (1024 * 1024 + 1), tenant),
        (b"k9", orjson.dumps(zendesk_event("evt-9", 9, 1, event_type="ticket.created")), tenant),
        (b"k10", orjson.dumps(zendesk_event("evt-10", 10, 1)), tenant),
    ]
    expected = {
        b"k1": ("decode.invalid_json", "decode"),
        b"k2": ("decode.not_object", "decode"),
        b"k3": ("validate.missing_event_id", "validate"),
        b"k4": ("map.required_missing", "map"),
        b"k5": ("map.type_error", "map"),
        b"k6": ("map.type_error", "map"),  # list items are checked against the Avro items type
        b"k7": ("validate.missing_tenant", "validate"),
        b"k8": ("decode.too_large", "decode"),
    }
    with running_worker(settings, registry_url, topo, group=name, prefix=f"{name}:") as worker:
        produce(settings.kafka_bootstrap_servers or "", topo.source_topic, records)
        wait_for(lambda: processed(worker, len(records)), deadline_s=60, what="all records processed")
        assert worker.outcomes.totals["ignored"] == 1  # k9: a type nobody wants
        assert worker.outcomes.totals["routed"] == 1  # k10
    dead = read_all(settings.kafka_bootstrap_servers or "", f"{topo.source_topic}.dlq", expect=len(expected),
                    settle_s=1.0)
    assert len(dead) == len(expected)
    by_key = {m.key(): m for m in dead}
    originals = {k: v for k, v, _ in records}
    sources = read_all(settings.kafka_bootstrap_servers or "", topo.source_topic, expect=len(records))
    where = {m.key(): (str(m.partition()), str(m.offset()), str(m.timestamp()[1])) for m in sources}
    for key, (code, stage) in expected.items():
        msg = by_key[key]
        hdrs = headers_of(msg)
        assert (hdrs["router-error-code"], hdrs["router-error-stage"]) == (code, stage), key
        assert msg.value() == originals[key], "the DLQ keeps the original value byte for byte"
        assert hdrs["router-original-topic"] == topo.source_topic
        original = (hdrs["router-original-partition"], hdrs["router-original-offset"],
                    hdrs["router-original-timestamp"])
        assert original == where[key], "the DLQ names the source record's real coordinates"
        assert hdrs["router-consumer-group"] == name
        assert hdrs["router-attempts"] == "1"
        assert hdrs["router-error-message"]
        assert int(hdrs["router-first-failed-at"]) > 0
        if key != b"k7":
            assert hdrs["router-tenant"] == "acme", "original headers are kept"


def test_one_event_fans_out_to_two_destinations(settings: Settings, registry_url: str, tmp_path: Path,
                                               name: str) -> None:
    topo = make_topology(tmp_path, name, {
        "a": zendesk_spec(f"{name}-a", source=name, destination=f"{name}-pd"),
        "b": zendesk_spec(f"{name}-b", source=name, destination=f"{name}-ops"),
    })
    with running_worker(settings, registry_url, topo, group=name, prefix=f"{name}:") as worker:
        produce(settings.kafka_bootstrap_servers or "", topo.source_topic, json_records([zendesk_event("e1", 1, 1)]))
        wait_for(lambda: worker.outcomes.totals["routed"] >= 2, deadline_s=60, what="fan-out to both")
    bootstrap = settings.kafka_bootstrap_servers or ""
    [a] = read_all(bootstrap, f"delivery.{name}-pd", expect=1)
    [b] = read_all(bootstrap, f"delivery.{name}-ops", expect=1)
    assert headers_of(a)["router-integration"] == f"{name}-a"
    assert headers_of(b)["router-integration"] == f"{name}-b"


NESTED_SCHEMA = """{"type": "record", "name": "Escalation", "namespace": "com.example.test", "fields": [
  {"name": "ticket", "type": "string"},
  {"name": "requester", "type": {"type": "record", "name": "Requester", "fields": [
    {"name": "email", "type": "string"}]}}]}"""

NESTED_SPEC = """name: {name}
version: 1
source: {{topic: ingest.{name}, event_id: event_id}}
mapping:
  schema: com.example.test.Escalation
  fields:
    ticket: {{from: data.ticket.title, required: true}}
    requester: {{from: data.ticket.requester, required: true}}
destination: {{name: {name}-out}}
"""


def test_a_record_that_fits_the_mapping_but_not_the_schema_is_encode_schema_mismatch(
        settings: Settings, registry_url: str, tmp_path: Path, name: str) -> None:
    import shutil

    from support.routing import ROOT

    schemas = tmp_path / "schemas"
    shutil.copytree(ROOT / "schemas" / "avro", schemas)
    (schemas / "com.example.test.Escalation.avsc").write_text(NESTED_SCHEMA)
    topo = make_topology(tmp_path, name, {"a": NESTED_SPEC.format(name=name)})
    # A dict passes the mapping's record check; the encoder finds the nested field missing.
    event = {"event_id": "n1", "data": {"ticket": {"title": "x", "requester": {"name": "no email"}}}}
    with running_worker(settings, registry_url, topo, group=name, prefix=f"{name}:") as worker:
        produce(settings.kafka_bootstrap_servers or "", topo.source_topic,
                [(b"n1", orjson.dumps(event), [("router-tenant", b"acme")])])
        wait_for(lambda: processed(worker, 1), deadline_s=60, what="the record processed")
    [dead] = read_all(settings.kafka_bootstrap_servers or "", f"{topo.source_topic}.dlq", expect=1)
    hdrs = headers_of(dead)
    assert (hdrs["router-error-code"], hdrs["router-error-stage"]) == ("encode.schema_mismatch", "encode")
    assert hdrs["router-integration"] == name
