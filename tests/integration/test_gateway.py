"""The webhook gateway against a real broker: 202 only after the ack, exact records, clean refusals, 503s."""

from __future__ import annotations

import re
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from openapi_spec_validator import validate

from producers.webhooks.options import GatewayOptions
from router.settings import Settings
from support.routing import headers_of, read_all
from tests.integration.gatewaying import (
    Answer,
    request,
    running_gateway,
    std_headers,
    stripe_headers,
    ticket_event,
    write_sources,
)
from tools.dev.embedded.broker import start_broker

TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")


def hook(url: str, tenant: str, source: str, body: bytes, headers: dict[str, str]) -> Answer:
    return request(url, "POST", f"/v1/hooks/{tenant}/{source}", body, headers)


def test_accepted_after_the_ack_byte_for_byte_with_headers(settings: Settings, tmp_path: Path, name: str) -> None:
    body = ticket_event("evt-1001")
    with running_gateway(settings, write_sources(tmp_path / "sources", name)) as url:
        before = int(time.time() * 1000)
        answer = hook(url, "acme", name, body, std_headers(body, msg_id="msg_1001"))
        after = int(time.time() * 1000)
        assert answer.status == 202, answer.body
        accepted = answer.json()
        assert accepted["event_id"] == "evt-1001" and accepted["topic"] == f"ingest.{name}"
        [record] = read_all(settings.kafka_bootstrap_servers or "", f"ingest.{name}", expect=1, deadline_s=30)
    # The 202 names the broker-assigned position: it was answered after the ack, and this is that record.
    assert (record.partition(), record.offset()) == (accepted["partition"], accepted["offset"])
    assert record.value() == body and record.key() == b"4521"
    hdrs = headers_of(record)
    assert set(hdrs) == {"router-tenant", "router-source", "router-event-id", "router-received-at", "traceparent"}
    assert (hdrs["router-tenant"], hdrs["router-source"], hdrs["router-event-id"]) == ("acme", name, "evt-1001")
    assert before <= int(hdrs["router-received-at"]) <= after
    assert TRACEPARENT.match(hdrs["traceparent"])


def test_trace_continued_from_a_valid_traceparent_only(settings: Settings, tmp_path: Path, name: str) -> None:
    incoming = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with running_gateway(settings, write_sources(tmp_path / "sources", name)) as url:
        for i, traceparent in enumerate((incoming, "00-not-a-trace-01")):
            body = ticket_event(f"evt-{i}")
            assert hook(url, "acme", name, body, {**std_headers(body), "traceparent": traceparent}).status == 202
        records = read_all(settings.kafka_bootstrap_servers or "", f"ingest.{name}", expect=2, deadline_s=30)
    by_id = {headers_of(r)["router-event-id"]: headers_of(r)["traceparent"] for r in records}
    continued = TRACEPARENT.match(by_id["evt-0"])
    fresh = TRACEPARENT.match(by_id["evt-1"])
    assert continued and continued.group(1) == "0af7651916cd43dd8448eb211c80319c"
    assert continued.group(2) != "b7ad6b7169203331"  # a new span of the same trace
    assert fresh and fresh.group(1) != "0af7651916cd43dd8448eb211c80319c"


def test_standard_webhooks_event_id_falls_back_to_webhook_id(settings: Settings, tmp_path: Path, name: str) -> None:
    body = ticket_event(None, ticket=None)  # no event_id, null ticket id
    with running_gateway(settings, write_sources(tmp_path / "sources", name)) as url:
        answer = hook(url, "acme", name, body, std_headers(body, msg_id="msg_fallback"))
        assert answer.status == 202, answer.body
        assert answer.json()["event_id"] == "msg_fallback"
        [record] = read_all(settings.kafka_bootstrap_servers or "", f"ingest.{name}", expect=1, deadline_s=30)
    assert record.key() is None  # no entity key in the body: a null key
    assert headers_of(record)["router-event-id"] == "msg_fallback"


def test_refusals_have_codes_and_write_nothing(settings: Settings, tmp_path: Path, name: str) -> None:
    sources = write_sources(tmp_path / "sources", name, max_bytes=2000, tenants="[acme]")
    good = ticket_event("evt-good")
    body = ticket_event("evt-bad")
    no_id = b'{"type": "customer.subscription.updated", "data": {"object": {"customer": "cus_1"}}}'
    stale = std_headers(body, ts=int(time.time()) - 600)
    cases: list[tuple[str, str, str, bytes, dict[str, str], int, str, dict[str, str]]] = [
        ("POST", "acme", name, b"{not json", std_headers(b"{not json"), 400, "gateway.invalid_json", {}),
        ("POST", "acme", f"{name}-s", no_id, stripe_headers(no_id), 400, "gateway.missing_event_id", {"field": "id"}),
        ("POST", "acme", name, ticket_event("x", ticket=[1]), std_headers(ticket_event("x", ticket=[1])), 400,
         "gateway.invalid_entity_key", {"field": "data.ticket.id"}),
        ("POST", "acme", name, body, {**std_headers(body), "webhook-signature": std_headers(good)["webhook-signature"]},
         401, "gateway.bad_signature", {"header": "webhook-signature"}),
        ("POST", "acme", name, body, stale, 401, "gateway.stale_timestamp", {}),
        ("POST", "acme", name, body, {"Content-Type": "application/json"}, 401, "gateway.bad_signature", {}),
        ("POST", "acme", "no-such-source", body, std_headers(body), 404, "gateway.unknown_source", {}),
        ("POST", "globex", name, body, std_headers(body), 404, "gateway.unknown_tenant", {}),
        ("GET", "acme", name, b"", {}, 405, "gateway.method_not_allowed", {}),
        ("POST", "acme", name, body, {**std_headers(body), "Content-Type": "text/plain"}, 415,
         "gateway.unsupported_media_type", {}),
        ("POST", "acme", name, b"{" + b" " * 3000 + b"}", std_headers(b"{" + b" " * 3000 + b"}"), 413,
         "gateway.too_large", {}),
    ]
    with running_gateway(settings, sources) as url:
        for method, tenant, source, payload, headers, status, code, members in cases:
            answer = request(url, method, f"/v1/hooks/{tenant}/{source}", payload or None, headers)
            assert answer.status == status, (code, answer.body)
            assert answer.headers["content-type"] == "application/problem+json"
            problem = answer.json()
            assert problem["code"] == code and problem["status"] == status
            assert {"type", "title", "detail"} <= set(problem) and problem["detail"]
            assert members.items() <= problem.items(), problem
        assert request(url, "GET", "/nowhere").json()["code"] == "gateway.not_found"
        # Then one good event: it is the only record on either topic.
        assert hook(url, "acme", name, good, std_headers(good)).status == 202
        records = read_all(settings.kafka_bootstrap_servers or "", f"ingest.{name}", expect=1, settle_s=2)
        assert [r.value() for r in records] == [good]
        assert read_all(settings.kafka_bootstrap_servers or "", f"ingest.{name}-s", expect=0, settle_s=1) == []


def _raw_exchange(url: str, head: bytes, body: bytes = b"", read_s: float = 5.0) -> bytes:
    """Send ``head`` + ``body`` on a socket; return the first complete response (head and body)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=read_s) as sock:
        sock.sendall(head + body)
        out = b""
        while True:
            head_end = out.find(b"\r\n\r\n")
            if head_end >= 0:
                length = re.search(rb"(?i)content-length: *(\d+)", out[:head_end])
                if length and len(out) >= head_end + 4 + int(length.group(1)):
                    return out
            chunk = sock.recv(65536)
            if not chunk:
                return out
            out += chunk


def test_too_large_is_refused_before_the_body_is_read(settings: Settings, tmp_path: Path, name: str) -> None:
    with running_gateway(settings, write_sources(tmp_path / "sources", name, max_bytes=1000)) as url:
        path = f"/v1/hooks/acme/{name}".encode()
        base = b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        # 1. A declared length over the limit and only 10 bytes sent: answered at once, without waiting for more.
        started = time.monotonic()
        out = _raw_exchange(url, base + b"Content-Length: 10000000\r\n\r\n", b'{"a": 1234')
        assert out.startswith(b"HTTP/1.1 413"), out[:200]
        assert b"gateway.too_large" in out and time.monotonic() - started < 3
        # 2. Expect: 100-continue gets the 413 instead of "100 Continue": the body is never sent.
        out = _raw_exchange(url, base + b"Content-Length: 5000\r\nExpect: 100-continue\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 413") and b"100 Continue" not in out, out[:200]
        # 3. A chunked body (no length declared) is cut off as soon as it passes the limit.
        chunk = b"{" + b" " * 1500 + b"}"
        out = _raw_exchange(url, base + b"Transfer-Encoding: chunked\r\n\r\n",
                            f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n0\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 413"), out[:200]
        # 4. Within the limit, chunked is fine (and still needs its signature: 401, not 413).
        small = b'{"event_id": "e"}'
        out = _raw_exchange(url, base + b"Transfer-Encoding: chunked\r\n\r\n",
                            f"{len(small):x}\r\n".encode() + small + b"\r\n0\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 401"), out[:200]


def test_broker_down_answers_503_with_retry_after_and_not_ready(tmp_path: Path, name: str) -> None:
    broker, bootstrap = start_broker()
    settings = Settings(kafka_bootstrap_servers=bootstrap, topic_partitions=1)
    options = GatewayOptions(ack_deadline_s=1.5, retry_after_s=7, queue_max_messages=1, flush_timeout_s=1)
    try:
        with running_gateway(settings, write_sources(tmp_path / "sources", name), options) as url:
            body = ticket_event("evt-up")
            assert hook(url, "acme", name, body, std_headers(body)).status == 202
            assert request(url, "GET", "/readyz").status == 200
            broker.stop()
            started = time.monotonic()
            # Two at once: one waits for the ack up to the deadline, the other finds the queue (1) full.
            with ThreadPoolExecutor(2) as pool:
                answers = list(pool.map(lambda i: hook(url, "acme", name, ticket_event(f"evt-{i}"),
                                                       std_headers(ticket_event(f"evt-{i}"))), range(2)))
            elapsed = time.monotonic() - started
            assert [a.status for a in answers] == [503, 503], [a.body for a in answers]
            assert all(a.headers["retry-after"] == "7" and a.json()["code"] == "gateway.unavailable"
                       for a in answers)
            assert elapsed < options.ack_deadline_s + 2.0
            details = sorted(a.json()["detail"] for a in answers)
            assert any("queue is full" in d for d in details) and any("did not acknowledge" in d for d in details)
            ready = request(url, "GET", "/readyz", timeout=10)
            assert ready.status == 503 and ready.json()["status"] == "not_ready"
            assert request(url, "GET", "/healthz").status == 200
    finally:
        broker.stop()


def test_not_ready_until_a_broker_answers(tmp_path: Path, name: str) -> None:
    from router.procs import free_port

    settings = Settings(kafka_bootstrap_servers=f"127.0.0.1:{free_port()}")
    with running_gateway(settings, write_sources(tmp_path / "sources", name),
                         GatewayOptions(ack_deadline_s=1.0, flush_timeout_s=1)) as url:
        assert request(url, "GET", "/readyz").status == 503
        body = ticket_event()
        answer = hook(url, "acme", name, body, std_headers(body))
        assert answer.status == 503 and answer.headers["retry-after"] == "5"


def test_openapi_is_valid_3_1_and_lists_the_routes(settings: Settings, tmp_path: Path, name: str) -> None:
    with running_gateway(settings, write_sources(tmp_path / "sources", name)) as url:
        answer = request(url, "GET", "/openapi.json")
    assert answer.status == 200 and answer.headers["content-type"].startswith("application/json")
    document = answer.json()
    validate(document)  # raises on an invalid OpenAPI document
    assert document["openapi"].startswith("3.1")
    assert set(document["paths"]) == {"/v1/hooks/{tenant}/{source}", "/healthz", "/readyz", "/openapi.json",
                                      "/metrics"}
    responses = document["paths"]["/v1/hooks/{tenant}/{source}"]["post"]["responses"]
    assert set(responses) == {"202", "400", "401", "404", "405", "413", "415", "503"}
    assert "Retry-After" in responses["503"]["headers"]


def test_stripe_source_accepts_signed_events(settings: Settings, tmp_path: Path, name: str) -> None:
    body = b'{"id": "evt_1QxPastDue", "type": "customer.subscription.updated", "created": 1763640000, ' \
           b'"data": {"object": {"id": "sub_1Qx", "customer": "cus_R2D2", "status": "past_due"}}}'
    with running_gateway(settings, write_sources(tmp_path / "sources", name)) as url:
        answer = hook(url, "acme", f"{name}-s", body, stripe_headers(body))
        assert answer.status == 202 and answer.json()["event_id"] == "evt_1QxPastDue"
        [record] = read_all(settings.kafka_bootstrap_servers or "", f"ingest.{name}-s", expect=1, deadline_s=30)
    assert record.value() == body and record.key() == b"cus_R2D2"
