"""Identity from the record's headers (issue 21, finding 1): a partner whose event id arrives in
an HTTP header (GitHub's X-GitHub-Delivery, Standard Webhooks' webhook-id) reaches the route
worker as ``router-event-id``, and a spec reads it with ``event_id: $event_id``; any ingest
header with ``$header.<name>``. A ``$`` name that means nothing is a spec error."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest

from router import headers as h
from router.errors import SpecError
from router.pipeline.records import Inbound
from router.pipeline.stages import RoutingTable, prepare
from router.spec.load import SpecErrors, load_catalog

ROOT = Path(__file__).resolve().parents[2]
SPEC = (ROOT / "integrations" / "zendesk-escalations-to-pagerduty.yaml").read_text()


def catalog_with(tmp_path: Path, old: str, new: str) -> Any:
    folder = tmp_path / "integrations"
    folder.mkdir()
    assert old in SPEC
    shutil.copytree(ROOT / "integrations" / "fixtures", folder / "fixtures")
    (folder / "z.yaml").write_text(SPEC.replace(old, new))
    return load_catalog(folder, ROOT / "schemas" / "avro")


def run(catalog: Any, event: dict[str, Any], headers: list[tuple[str, bytes | None]]) -> Any:
    table = RoutingTable.build(catalog.integrations, {i.name: 1 for i in catalog.integrations})
    inbound = Inbound("ingest.zendesk", 0, 7, 1_700_000_000_000, b"1", orjson.dumps(event),
                      [(h.TENANT, b"acme"), *headers])
    return prepare(inbound, table, now_ms=1_700_000_000_000)


EVENT = {"type": "ticket.escalated", "sequence": 1, "occurred_at": "2026-11-20T10:15:00Z",
         "data": {"ticket": {"id": 9, "title": "down", "priority": "high"}}}


def test_event_id_from_the_header_the_gateway_wrote(tmp_path: Path) -> None:
    catalog = catalog_with(tmp_path, "  event_id: event_id\n", "  event_id: $event_id\n")
    routed = run(catalog, EVENT, [(h.EVENT_ID, b"72d4c6a0-gh-delivery")])
    assert not routed.failures
    assert [c.event_id for c in routed.candidates] == ["72d4c6a0-gh-delivery"]
    missing = run(catalog, {**EVENT, "event_id": "in-body-but-not-asked-for"}, [])
    assert [f.error.code for f in missing.failures] == ["validate.missing_event_id"]


def test_entity_key_from_any_ingest_header(tmp_path: Path) -> None:
    catalog = catalog_with(tmp_path, "  entity_key: data.ticket.id\n", "  entity_key: $header.x-account\n")
    routed = run(catalog, {**EVENT, "event_id": "e1"}, [("x-account", b"acct-7")])
    assert [c.entity_key for c in routed.candidates] == ["acct-7"]


def test_an_unknown_dollar_name_is_a_spec_error_naming_the_forms(tmp_path: Path) -> None:
    with pytest.raises((SpecError, SpecErrors)) as raised:
        catalog_with(tmp_path, "  event_id: event_id\n", "  event_id: $delivery\n")
    text = str(raised.value)
    assert "source.event_id" in text and "$event_id" in text and "$header.<name>" in text


def test_the_shipped_specs_read_headers_only_where_the_payload_has_no_id() -> None:
    catalog = load_catalog(ROOT / "integrations", ROOT / "schemas" / "avro")
    assert {i.name: i.source.from_headers for i in catalog.integrations if i.source.from_headers} == {
        "github-issues-to-jira": {"event_id": h.EVENT_ID}}
