"""One webhook's trace, received by an OTLP receiver the test starts (issue 22): `router dev`
configured only by the OpenTelemetry SDK's own variables exports the gateway's, the route
worker's and the delivery worker's spans of that webhook, in one trace."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from support.services import wait_for
from tests.e2e.test_pipeline import _post, _signed, dev_env, start_dev, stop_dev

ROOT = Path(__file__).resolve().parents[2]
Span = tuple[str, str, bytes, int]  # (service.name, span name, trace id, status code)


class _Receiver(BaseHTTPRequestHandler):
    server: _Collector

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path == "/v1/traces":
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            with self.server.lock:
                for resource_spans in request.resource_spans:
                    service = next((a.value.string_value for a in resource_spans.resource.attributes
                                    if a.key == "service.name"), "")
                    for scope in resource_spans.scope_spans:
                        self.server.spans.extend((service, s.name, s.trace_id, s.status.code) for s in scope.spans)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return


class _Collector(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Receiver)
        self.spans: list[Span] = []
        self.lock = threading.Lock()

    def seen(self) -> list[Span]:
        with self.lock:
            return list(self.spans)


@contextmanager
def otlp_receiver() -> Iterator[_Collector]:
    """An OTLP/HTTP (protobuf) trace receiver on a loopback port, for the block."""
    server = _Collector()
    thread = threading.Thread(target=server.serve_forever, name="otlp-receiver", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_one_webhooks_trace_reaches_an_otlp_receiver(tmp_path: Path) -> None:
    with otlp_receiver() as collector:
        env = dev_env()
        env.update({"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.server_address[1]}",
                    "OTEL_TRACES_SAMPLER": "parentbased_always_on", "OTEL_BSP_SCHEDULE_DELAY": "200"})
        dev, ready = start_dev(tmp_path, env)
        try:
            event = {"event_id": "zd-trace-1", "type": "ticket.escalated", "sequence": 1,
                     "occurred_at": "2026-11-22T09:00:00Z",
                     "data": {"ticket": {"id": 9901, "title": "Traced", "priority": "high"}}}
            body, headers = _signed(event, "msg_trace_1")
            status, answer = _post(f"{ready['gateway']}/v1/hooks/acme/zendesk", body, headers)
            assert status == 202, answer

            def one_trace() -> bytes | None:
                by_trace: dict[bytes, set[str]] = {}
                for service, _name, trace_id, _status in collector.seen():
                    by_trace.setdefault(trace_id, set()).add(service)
                return next((t for t, services in by_trace.items()
                             if {"router-gateway", "router-route", "router-deliver"} <= services), None)

            trace_id = wait_for(one_trace, deadline_s=90,
                                what="the gateway's, route's and delivery's spans in one trace")
            names = {(service, name) for service, name, t, _s in collector.seen() if t == trace_id}
            assert any(service == "router-deliver" and name.startswith("deliver ") for service, name in names), names
        finally:
            stop_dev(dev)
