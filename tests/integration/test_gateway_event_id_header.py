"""The event id taken from a header: it becomes the UTF-8 router-event-id header, so other bytes are a 400, not a 500.

Found by tests/integration/test_gateway_schemathesis.py (latin-1 header values): a webhook-id such as the
single byte 0xE9 reached ``event_id.encode()`` and the gateway answered 500 gateway.internal.
"""

from __future__ import annotations

from pathlib import Path

from router.settings import Settings
from support.routing import headers_of, read_all
from tests.integration.gatewaying import request, running_gateway, std_headers, ticket_event, write_sources


def test_event_id_header_must_be_utf8(settings: Settings, tmp_path: Path, name: str) -> None:
    body = ticket_event(None)  # no event_id in the body: the event id is the webhook-id header
    # http.client sends str header values as latin-1: "é" goes out as the single byte 0xE9, which the
    # gateway reads as "\udce9" (surrogateescape) and signs as that byte; so the request is authentic.
    latin1 = {**std_headers(body, msg_id="\udce9"), "webhook-id": "é"}
    # The UTF-8 spelling of "é" (bytes C3 A9) is fine, and is the event id.
    utf8 = {**std_headers(body, msg_id="é"), "webhook-id": "é".encode().decode("latin-1")}
    with running_gateway(settings, write_sources(tmp_path / "sources", name)) as url:
        refused = request(url, "POST", f"/v1/hooks/acme/{name}", body, latin1)
        assert refused.status == 400, refused.body
        assert refused.headers["content-type"] == "application/problem+json"
        problem = refused.json()
        assert (problem["code"], problem["header"]) == ("gateway.invalid_event_id", "webhook-id"), problem
        accepted = request(url, "POST", f"/v1/hooks/acme/{name}", body, utf8)
        assert accepted.status == 202, accepted.body
        assert accepted.json()["event_id"] == "é"
        [record] = read_all(settings.kafka_bootstrap_servers or "", f"ingest.{name}", expect=1, settle_s=1)
    assert headers_of(record)["router-event-id"] == "é"
