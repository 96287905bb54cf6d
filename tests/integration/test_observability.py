"""Metrics, traces and health rows after a known run (DESIGN §8)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import redis
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from prometheus_client.parser import text_string_to_metric_families

from router import telemetry
from router.health import row_key
from router.settings import Settings
from support.delivering import http_spec, partner_sim, running_deliverer
from support.routing import make_topology, produce, running_worker, zendesk_event
from support.services import wait_for

BAD_TRACE_ID = "6bf92f3577b34da6a3ce929d0e0e4738"
REJECTED_TRACE_ID = "5bf92f3577b34da6a3ce929d0e0e4737"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    telemetry.setup("test", span_processor=SimpleSpanProcessor(exporter))
    yield exporter


def _samples(name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(telemetry.metrics_text().decode()):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def test_a_known_run_shows_in_metrics_traces_and_health(spans: InMemorySpanExporter, settings: Settings,
                                                        registry_url: str, tmp_path: Path, name: str) -> None:
    bootstrap = settings.kafka_bootstrap_servers or ""
    with partner_sim(tmp_path) as partner:
        partner.rules({"destination": f"{name}-d", "match": {"field": "title", "equals": "rejected"},
                       "status": 400, "body": {"error": "no"}})
        topo = make_topology(tmp_path, name, {"a": http_spec(name, name, f"{name}-d", f"{partner.url}/v1/{name}-d")})
        tenant = [("router-tenant", b"acme")]
        traced = [*tenant, ("traceparent", f"00-{TRACE_ID}-00f067aa0ba902b7-01".encode())]
        records = [
            (b"1", orjson.dumps(zendesk_event("ok-1", 1, 1)), traced),
            (b"2", orjson.dumps(zendesk_event("ok-2", 2, 1)), tenant),
            (b"3", orjson.dumps(zendesk_event("ok-2", 2, 1)), tenant),  # duplicate
            (b"4", orjson.dumps(zendesk_event("bad-1", 4, 1, title=None, email="ana@example.com")),
             [("router-tenant", b"globex"), ("traceparent", f"00-{BAD_TRACE_ID}-00f067aa0ba902b9-01".encode())]),
            (b"5", orjson.dumps(zendesk_event("rej-1", 5, 1, title="rejected")),
             [*tenant, ("traceparent", f"00-{REJECTED_TRACE_ID}-00f067aa0ba902b8-01".encode())]),
        ]
        with running_worker(settings, registry_url, topo, group=name, prefix=settings.redis_key_prefix) as route, \
                running_deliverer(settings, registry_url, topo, group=f"{name}-d"):
            route.finisher.health_client = redis.Redis.from_url(settings.redis_url or "")
            produce(bootstrap, topo.source_topic, records)
            wait_for(lambda: _samples("router_records_total", integration=name, outcome="delivered") == 2
                     and _samples("router_records_total", integration=name, outcome="dlq", stage="deliver") == 1,
                     deadline_s=90, what="2 deliveries and 1 delivery DLQ in the metrics")
            wait_for(lambda: _samples("router_records_total", integration=name, outcome="duplicate") == 1,
                     deadline_s=10, what="the duplicate counted")

    assert _samples("router_records_total", integration=name, outcome="routed", stage="route") == 3
    assert _samples("router_records_total", integration=name, outcome="dlq", stage="route",
                    code="map.required_missing") == 1
    assert _samples("router_records_total", integration=name, outcome="dlq", stage="deliver") == 1
    assert _samples("router_delivery_attempts_total", integration=name, status="2xx") == 2
    assert _samples("router_delivery_attempts_total", integration=name, status="4xx") == 1
    assert _samples("router_records_total", integration=name, outcome="attempt_2xx") == 0, \
        "attempts are not record outcomes: sum(router_records_total) counts each record once"
    assert _samples("router_end_to_end_seconds_count", integration=name) == 2
    assert _samples("router_delivery_request_seconds_count", integration=name) == 3

    trace_spans = [s for s in spans.get_finished_spans() if format(s.context.trace_id, "032x") == TRACE_ID]
    names = sorted(s.name for s in trace_spans)
    assert names == [f"deliver {name}", f"route {name}"], names
    route_span = next(s for s in trace_spans if s.name.startswith("route"))
    deliver_span = next(s for s in trace_spans if s.name.startswith("deliver"))
    assert deliver_span.parent is not None and deliver_span.parent.span_id == route_span.context.span_id
    assert deliver_span.status.status_code is StatusCode.UNSET

    # The rejected record's trace ends in a failed request and a dead letter, both with error status.
    rejected = {s.name: s for s in spans.get_finished_spans()
                if format(s.context.trace_id, "032x") == REJECTED_TRACE_ID}
    assert sorted(rejected) == [f"dead-letter {name}", f"deliver {name}", f"route {name}"], sorted(rejected)
    request_span, letter_span = rejected[f"deliver {name}"], rejected[f"dead-letter {name}"]
    assert request_span.status.status_code is StatusCode.ERROR
    assert (request_span.attributes or {})["http.response.status_code"] == 400
    assert letter_span.status.status_code is StatusCode.ERROR
    assert (letter_span.attributes or {})["router.error.code"] == "deliver.http_4xx"
    # A record the route worker dead-letters ends its trace there, with the code.
    [bad] = [s for s in spans.get_finished_spans() if format(s.context.trace_id, "032x") == BAD_TRACE_ID]
    assert bad.name == f"dead-letter {name}" and bad.status.status_code is StatusCode.ERROR
    assert (bad.attributes or {})["router.error.code"] == "map.required_missing"

    client = redis.Redis.from_url(settings.redis_url or "", decode_responses=True)
    acme = client.hgetall(row_key(settings.redis_key_prefix, name, "acme"))
    assert int(acme["last_success_ms"]) > 0
    assert acme["last_error_code"] == "deliver.http_4xx"
    assert "rejected" in acme["last_error_sample"]
    globex = client.hgetall(row_key(settings.redis_key_prefix, name, "globex"))
    assert globex["last_error_code"] == "map.required_missing"
    assert "ana@example.com" not in globex["last_error_sample"], "PII is masked in samples"
    assert '"email":"***"' in globex["last_error_sample"]
    assert {f"{name}|acme", f"{name}|globex"} <= client.smembers(f"{settings.redis_key_prefix}health:index")


def test_one_trace_spans_gateway_route_and_delivery(spans: InMemorySpanExporter, settings: Settings,
                                                    registry_url: str, tmp_path: Path, name: str) -> None:
    from tests.integration.gatewaying import request, running_gateway, std_headers, write_sources

    sources = write_sources(tmp_path / "sources", name)
    with partner_sim(tmp_path) as partner:
        topo = make_topology(tmp_path, name, {"a": http_spec(name, name, f"{name}-d", f"{partner.url}/v1/{name}-d")})
        body = orjson.dumps(zendesk_event("traced-1", 42, 1))
        with running_gateway(settings, sources) as gateway, \
                running_worker(settings, registry_url, topo, group=name, prefix=f"{name}:"), \
                running_deliverer(settings, registry_url, topo, group=f"{name}-d"):
            answer = request(gateway, "POST", f"/v1/hooks/acme/{name}", body, std_headers(body, "msg_traced_1"))
            assert answer.status == 202, answer
            wait_for(lambda: partner.ledger(f"{name}-d")["accepted"], deadline_s=90, what="the delivery")

    def spans_of_event() -> list:  # type: ignore[type-arg]
        route = [s for s in spans.get_finished_spans() if s.name == f"route {name}"]
        if not route:
            return []
        trace_id = route[0].context.trace_id
        return [s for s in spans.get_finished_spans() if s.context.trace_id == trace_id]

    found = wait_for(lambda: got if len(got := spans_of_event()) >= 3 else None, deadline_s=10,
                     what="three spans in one trace")
    kinds = {s.name.split(" ", 1)[0] for s in found}
    assert {"route", "deliver"} <= kinds and any(s.instrumentation_scope.name == "router.gateway" for s in found), \
        [(s.name, s.instrumentation_scope.name) for s in found]
    gateway_span = next(s for s in found if s.instrumentation_scope.name == "router.gateway")
    route_span = next(s for s in found if s.name.startswith("route"))
    deliver_span = next(s for s in found if s.name.startswith("deliver"))
    assert route_span.parent is not None and route_span.parent.span_id == gateway_span.context.span_id
    assert deliver_span.parent is not None and deliver_span.parent.span_id == route_span.context.span_id
