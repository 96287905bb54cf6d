"""Helpers for delivery tests: the partner simulator process, delivery records, a worker thread."""

from __future__ import annotations

import asyncio
import sys
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka.schema_registry import SchemaRegistryClient

from consumers.deliver.cli import targets_for
from consumers.deliver.worker import DeliverOptions, DeliverWorker
from router import headers as h
from router.pipeline.records import Inbound
from router.pipeline.stages import RoutingTable, prepare
from router.settings import Settings
from support.routing import Topology, prepare_services, produce
from tools.dev.embedded.procs import ChildProcess


class Partner:
    """`router sim partner` as a process, driven through its control API."""

    def __init__(self, url: str) -> None:
        self.url = url

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = orjson.dumps(body) if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            text = resp.read()
        return orjson.loads(text) if text else None

    def rules(self, *rules: dict[str, Any]) -> None:
        self.call("POST", "/_control/rules", {"rules": list(rules)})

    def ledger(self, destination: str | None = None) -> dict[str, Any]:
        return dict(self.call("GET", "/_ledger" + (f"?destination={destination}" if destination else "")))


@contextmanager
def partner_sim(tmp_path: Path, *args: str) -> Iterator[Partner]:
    log = tmp_path / f"partner-{len(list(tmp_path.glob('partner-*')))}.log"
    child = ChildProcess("the partner simulator", [sys.executable, "-m", "router", "sim", "partner", "--port", "0",
                                                   *args], log=log)
    try:
        line = child.wait_for_line("READY", deadline_s=30)
        yield Partner(line.split("partner=", 1)[1].strip())
    finally:
        child.stop(grace_s=10)


def http_spec(name: str, source: str, destination: str, url: str, *, batch: int = 1, rate: str = "",
              max_age: str = "4h", auth: str = "{type: none}", base: str = "10ms", max_bytes: int | None = None) -> str:
    """A Zendesk → partner spec delivering to ``url``."""
    rate_line = f"    rate_limit: {rate}\n" if rate else ""
    max_bytes_item = f", max_bytes: {max_bytes}" if max_bytes is not None else ""
    return f"""name: {name}
version: 1
source:
  topic: ingest.{source}
  type: type
  types: [ticket.escalated]
  event_id: event_id
  entity_key: data.ticket.id
ordering: {{on_stale: deliver}}
mapping:
  schema: com.example.pagerduty.Incident
  fields:
    incident_key: {{template: "{{tenant}}:{{data.ticket.id}}", required: true}}
    title: {{from: data.ticket.title, required: true}}
    severity: {{from: data.ticket.priority, map: {{low: 3, med: 2, high: 1}}, default: 2}}
    occurred_at: {{from: occurred_at, as: timestamp_ms, required: true}}
destination:
  name: {destination}
  http:
    url: "{url}"
    batch: {{max_records: {batch}{max_bytes_item}}}
    timeout: 5s
    auth: {auth}
{rate_line}    retry: {{max_age: {max_age}, base: {base}, cap: 2s}}
"""


def delivery_records(topology: Topology, schema_ids: dict[str, int], events: list[dict[str, Any]],
                     tenant: str = "acme") -> list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]]:
    """What the route worker would write to delivery.<destination> for ``events`` (same pure stages)."""
    table = RoutingTable.build(topology.catalog.integrations, schema_ids)
    out = []
    for i, event in enumerate(events):
        inbound = Inbound(topology.source_topic, 0, i, 0, None, orjson.dumps(event), [(h.TENANT, tenant.encode())])
        prepared = prepare(inbound, table)
        assert prepared.candidates, prepared.failures
        for c in prepared.candidates:
            out.append((c.key, c.value, c.headers))
    return out


@contextmanager
def running_deliverer(settings: Settings, registry_url: str, topology: Topology, group: str,
                      only: list[str] | None = None, **options: Any) -> Iterator[DeliverWorker]:
    """A DeliverWorker (of ``only`` those integrations, else all) on its own thread and event loop
    for the block; stopped cleanly on exit."""
    targets = targets_for(topology.catalog, only)
    with SchemaRegistryClient({"url": registry_url}) as registry:  # closed after the worker stopped
        worker = DeliverWorker(settings, targets, registry, DeliverOptions(group=group, **options))
        with _deliverer_thread(worker):
            yield worker


@contextmanager
def _deliverer_thread(worker: DeliverWorker) -> Iterator[None]:
    """``worker.run`` on its own thread and event loop for the block; stopped cleanly on exit."""
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    errors: list[BaseException] = []

    def target() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(worker.run(stop))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    try:
        yield
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(60)
    assert not thread.is_alive(), "delivery worker did not stop within 60s"
    loop.close()
    assert not errors, f"delivery worker crashed: {errors[0]!r}"


def publish(settings: Settings, registry_url: str, topology: Topology, events: list[dict[str, Any]],
            tenant: str = "acme") -> int:
    ids = prepare_services(settings, registry_url, topology)
    topic = f"delivery.{topology.catalog.integrations[0].destination.name}"
    return produce(settings.kafka_bootstrap_servers or "", topic, delivery_records(topology, ids, events, tenant))
