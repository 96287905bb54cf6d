"""`router deliver` (a delivery worker) and `router integrations pause|resume|status`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal

import orjson
from confluent_kafka.schema_registry import SchemaRegistryClient

from consumers.deliver.config import HttpTarget, compile_target
from consumers.deliver.tenancy import Tenancy
from consumers.deliver.worker import DeliverOptions, DeliverWorker
from router import ready as ready_line
from router import redisconn, telemetry
from router.controls import read_states, set_state
from router.errors import ConfigError
from router.kafka import wait_for_broker
from router.settings import Settings
from router.spec.args import add_spec_dirs
from router.spec.load import Catalog, load_catalog

log = logging.getLogger("router.deliver")
CATCH_UP_S = 30.0  # connections read before the first record goes (else held until they are)


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("deliver", help="run a delivery worker: delivery topics -> partner APIs")
    add_spec_dirs(p)
    p.add_argument("--group", default=DEFAULT_GROUP, help=f"consumer group (default {DEFAULT_GROUP})")
    p.add_argument("--only", action="append", default=None, metavar="INTEGRATION",
                   help="deliver only these integrations (repeatable); default: every one with destination.http")
    p.add_argument("--concurrency", type=int, default=8, help="requests in flight per integration")
    p.set_defaults(handler=run)

    q = subparsers.add_parser("integrations", help="pause, resume or show integrations (shared by every replica)")
    sub = q.add_subparsers(dest="integrations_command", metavar="ACTION")
    sub.required = True
    for action, text in (("pause", "stop sending; records wait in Kafka"),
                         ("resume", "send again (also clears needs_reconnect)"), ("status", "show each state")):
        a = sub.add_parser(action, help=text)
        if action != "status":
            a.add_argument("name", help="integration name")
        else:
            a.add_argument("--json", action="store_true", help="one JSON object per integration and line")
        add_spec_dirs(a)
        a.set_defaults(handler=_control, action=action)


DEFAULT_GROUP = "router.deliver"


def sharing_topics(catalog: Catalog, chosen: dict[str, HttpTarget]) -> frozenset[str]:
    """Integrations left out by ``--only`` whose records travel on a topic the chosen ones read."""
    topics = {t.destination for t in chosen.values()}
    return frozenset(i.name for i in catalog.integrations
                     if i.destination.http and i.name not in chosen and i.destination.name in topics)


def targets_for(catalog: Catalog, only: list[str] | None) -> dict[str, HttpTarget]:
    """Compiled HTTP targets of the integrations this worker delivers."""
    chosen = [i for i in catalog.integrations if i.destination.http and (not only or i.name in only)]
    if only:
        unknown = sorted(set(only) - {i.name for i in chosen})
        if unknown:
            raise ConfigError(f"--only names integrations without destination.http or unknown: {', '.join(unknown)}")
    if not chosen:
        raise ConfigError("no integration has destination.http: nothing to deliver")
    return {i.name: compile_target(i) for i in chosen}


def run(args: argparse.Namespace) -> int:
    """Entry point of `router deliver`: SIGTERM waits for requests in flight, commits, leaves."""
    telemetry.setup("deliver")
    settings = Settings.from_env()
    if not settings.redis_url or not settings.schema_registry_url:
        raise ConfigError("REDIS_URL and SCHEMA_REGISTRY_URL must be set for `router deliver`")
    catalog = load_catalog(args.integrations, args.schemas)
    targets = targets_for(catalog, args.only)
    others = sharing_topics(catalog, targets)
    if others and args.group == DEFAULT_GROUP:
        # In the shared group this worker would take partitions away from the workers that deliver
        # the others, and could only skip or dead-letter their records.
        raise ConfigError(f"--only leaves out {', '.join(sorted(others))}, which share(s) a delivery topic with the "
                          f"chosen integration(s): give this worker its own --group (their records are then "
                          f"skipped here and delivered by the group that runs them)")
    wait_for_broker(settings)
    return asyncio.run(_main(settings, targets, args, others))


def _tenancy(settings: Settings, targets: dict[str, HttpTarget]) -> Tenancy | None:
    """The connections of integrations that deliver with each tenant's, read before the first
    record goes (None when no integration does)."""
    if all(t.connection is None for t in targets.values()):
        return None
    from router.connections.keyring import KeyRing
    from router.connections.store import DEFAULT_TOPIC, TOPIC_ENV, ConnectionStore, ConnectionWriter

    ring = KeyRing.required()
    topic = os.environ.get(TOPIC_ENV) or DEFAULT_TOPIC
    store = ConnectionStore(settings, ring, topic)
    store.start()
    if not store.wait_caught_up(CATCH_UP_S):
        log.warning("connections not all read after %.0fs: per-tenant records wait until they are", CATCH_UP_S)
    return Tenancy(store, ConnectionWriter(settings, ring, topic))


async def _main(settings: Settings, targets: dict[str, HttpTarget], args: argparse.Namespace,
                others: frozenset[str]) -> int:
    tenancy = await asyncio.to_thread(_tenancy, settings, targets)
    try:
        with SchemaRegistryClient(settings.registry_conf()) as registry:  # its HTTP pool is closed after the worker
            worker = DeliverWorker(settings, targets, registry,
                                   DeliverOptions(group=args.group, concurrency=args.concurrency, others=others),
                                   tenancy)
            telemetry.maybe_serve_metrics(worker.verdict)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            ready_line.announce(deliver=args.group)
            await worker.run(stop)
    finally:
        if tenancy is not None:
            tenancy.close()
    print(f"stopped deliver outcomes={dict(worker.outcomes.totals)}", flush=True)
    return 0


def _control(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    if not settings.redis_url:
        raise ConfigError("REDIS_URL is not set: integration state lives in Redis")
    catalog = load_catalog(args.integrations, args.schemas)
    if args.action != "status":
        catalog.by_name(args.name)  # a clear error for an unknown name, before Redis is asked
    client = redisconn.connect(settings.redis_url, socket_timeout=5)
    try:
        if args.action == "status":
            names = [i.name for i in catalog.integrations]
            for name, state in read_states(client, settings.redis_key_prefix, names).items():
                print(orjson.dumps({"integration": name, "state": state.state, "reason": state.reason,
                                    "since_ms": state.since_ms or None}).decode() if args.json
                      else f"{name}\t{state.state}\t{state.reason}")
            return 0
        state = set_state(client, settings.redis_key_prefix, args.name,
                          "paused" if args.action == "pause" else "active",
                          reason="paused by `router integrations pause`" if args.action == "pause" else "")
        print(f"{state.name}\t{state.state}")
        return 0
    finally:
        client.close()
