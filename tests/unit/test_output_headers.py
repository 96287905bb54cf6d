"""A routed output's headers (DESIGN §2): the same names, order and values for every record, though
the parts fixed per (tenant, integration) are made once and shared."""

from __future__ import annotations

from pathlib import Path

import orjson

from router import headers as h
from router.pipeline.records import Inbound
from router.pipeline.stages import RoutingTable, prepare
from router.spec.load import load_catalog

ROOT = Path(__file__).resolve().parents[2]
CATALOG = load_catalog(ROOT / "integrations", ROOT / "schemas" / "avro")
TABLE = RoutingTable.build(CATALOG.integrations, {i.name: n for n, i in enumerate(CATALOG.integrations, start=1)})
NAME = "zendesk-escalations-to-pagerduty"


def _routed(event_id: str, tenant: bytes, offset: int, trace: bytes | None = None) -> list[tuple[str, bytes]]:
    event = {"event_id": event_id, "type": "ticket.escalated", "sequence": 1, "occurred_at": "2026-11-20T10:15:00Z",
             "data": {"ticket": {"id": 1, "title": "down", "priority": "high"}}}
    headers: list[tuple[str, bytes | None]] = [(h.TENANT, tenant)]
    if trace is not None:
        headers.append((h.TRACEPARENT, trace))
    inbound = Inbound("ingest.zendesk", 0, offset, 1_700_000_000_000 + offset, b"1", orjson.dumps(event), headers)
    [candidate] = [c for c in prepare(inbound, TABLE).candidates if c.integration.name == NAME]
    return candidate.headers


def test_each_output_has_the_design_headers_in_order_and_a_list_of_its_own() -> None:
    trace = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    first = _routed("e1", b"acme", 1, trace)
    second = _routed("e2", b"acme", 2)
    other = _routed("e3", b"globex", 3)
    assert first == [(h.TENANT, b"acme"), (h.SOURCE, b"zendesk"), (h.EVENT_ID, b"e1"), (h.INTEGRATION, NAME.encode()),
                     (h.RECEIVED_AT, b"1700000000001"), (h.TRACEPARENT, trace)]
    assert second == [(h.TENANT, b"acme"), (h.SOURCE, b"zendesk"), (h.EVENT_ID, b"e2"),
                      (h.INTEGRATION, NAME.encode()), (h.RECEIVED_AT, b"1700000000002")]
    assert other[0] == (h.TENANT, b"globex") and other[2] == (h.EVENT_ID, b"e3")
    first[-1] = (h.TRACEPARENT, b"replaced")  # the route span's traceparent replaces the last header
    assert second[-1] == (h.RECEIVED_AT, b"1700000000002") and _routed("e4", b"acme", 4)[0] == (h.TENANT, b"acme")
