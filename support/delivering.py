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
from consumers.deliver.tenancy import Tenancy
from consumers.deliver.worker import DeliverOptions, DeliverWorker
from router import headers as h
from router.connections.keyring import KeyRing, generate_key
from router.connections.store import ConnectionStore, ConnectionWriter
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

    def accounts(self, credentials: dict[str, str]) -> None:
        """Replace the partner's accounts (name -> credential); ``{}`` clears them."""
        self.call("PUT", "/_control/accounts", credentials)

    def revoke(self, account: str) -> None:
        """The partner revokes one account: its credential gets 401 from now on."""
        self.call("POST", f"/_control/accounts/{account}/revoke")

    def revoke_grant(self, account: str) -> None:
        """The partner revokes the account's OAuth grants: refresh -> invalid_grant, access tokens -> 401."""
        self.call("POST", "/_control/oauth/revoke_grant", {"account": account})

    def fail_token(self, times: int, status: int = 503) -> None:
        """The token endpoint answers ``status`` to the next ``times`` requests."""
        self.call("POST", "/_control/oauth/fail_token", {"times": times, "status": status})


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
              max_age: str = "4h", auth: str = "{type: none}", base: str = "10ms", max_bytes: int | None = None,
              connection: str | None = None) -> str:
    """A Zendesk → partner spec delivering to ``url`` (with each tenant's connection, given
    ``connection``: the spec's ``connection`` section as YAML flow, in place of ``auth``)."""
    auth_line = f"connection: {connection}" if connection is not None else f"auth: {auth}"
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
    {auth_line}
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
                      only: list[str] | None = None, tenancy: Tenancy | None = None,
                      **options: Any) -> Iterator[DeliverWorker]:
    """A DeliverWorker (of ``only`` those integrations, else all) on its own thread and event loop
    for the block; stopped cleanly on exit. ``tenancy``: connections, for per-tenant integrations."""
    targets = targets_for(topology.catalog, only)
    with SchemaRegistryClient({"url": registry_url}) as registry:  # closed after the worker stopped
        worker = DeliverWorker(settings, targets, registry, DeliverOptions(group=group, **options), tenancy)
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
        finally:  # asyncio.to_thread's threads, as asyncio.run does (on this thread: the caller may run a loop)
            loop.run_until_complete(loop.shutdown_default_executor())

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


@contextmanager
def tenancy_for(settings: Settings, topic: str, ring: KeyRing | None = None
                ) -> Iterator[tuple[Tenancy, ConnectionWriter]]:
    """A Tenancy on its own connections topic (under ``ring``, else a fresh key), and a writer for
    the test to connect tenants with."""
    ring = ring or KeyRing.parse(generate_key(), "test key")
    store = ConnectionStore(settings, ring, topic)
    store.start()
    assert store.wait_caught_up(30), "the connections topic was read"
    tenancy = Tenancy(store, ConnectionWriter(settings, ring, topic))
    writer = ConnectionWriter(settings, ring, topic)
    try:
        yield tenancy, writer
    finally:
        writer.close()
        tenancy.close()
