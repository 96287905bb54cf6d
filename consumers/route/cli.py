"""`router route`: run one route worker (scale out by running more in the same group)."""

from __future__ import annotations

import argparse
import signal
import threading
from contextlib import ExitStack, closing

from confluent_kafka.schema_registry import SchemaRegistryClient

from consumers.route.state_redis import RedisState
from consumers.route.worker import RouteWorker, WorkerOptions
from router import ready as ready_line
from router import redisconn, runtime, telemetry
from router.errors import ConfigError
from router.kafka import admin_client, ensure_topics, wait_for_broker
from router.pipeline.stages import RoutingTable
from router.schemas import register_all
from router.settings import Settings
from router.spec.args import add_spec_dirs
from router.spec.load import load_catalog


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("route", help="run a route worker: ingest/cohort topics -> delivery topics")
    add_spec_dirs(p)
    p.add_argument("--group", default=None, help="consumer group (default: ROUTER_ROUTE_GROUP or router.route)")
    p.add_argument("--batch-size", type=int, default=2000,
                   help="records per batch: one Redis call, one flush and one commit each (default 2000)")
    p.set_defaults(handler=run)


def build_worker(settings: Settings, args: argparse.Namespace, clients: ExitStack) -> RouteWorker:
    """Load specs, check services, register schemas, create topics; return a ready worker. The
    Redis and registry clients it opens are entered into ``clients``, for the caller to close
    once the worker has stopped (or at once, if building it fails)."""
    catalog = load_catalog(args.integrations, args.schemas)
    if not catalog.integrations:
        raise ConfigError(f"no integrations in {args.integrations}: nothing to route")
    if not settings.redis_url:
        raise ConfigError("REDIS_URL is not set; the route worker keeps dedupe keys and watermarks in Redis")
    if not settings.schema_registry_url:
        raise ConfigError("SCHEMA_REGISTRY_URL is not set; outputs are encoded with registered schema ids")
    wait_for_broker(settings)
    client = clients.enter_context(closing(redisconn.connect(settings.redis_url, socket_timeout=5,
                                                             socket_connect_timeout=5)))
    registry = clients.enter_context(SchemaRegistryClient(settings.registry_conf()))
    schema_ids = register_all(registry, catalog)
    ensure_topics(admin_client(settings), catalog.all_topics(), partitions=settings.topic_partitions,
                  replication_factor=settings.replication_factor, min_insync_replicas=settings.topic_min_insync())
    table = RoutingTable.build(catalog.integrations, schema_ids, settings.redis_key_prefix,
                               hash_tags=redisconn.clustered(client))
    options = WorkerOptions(group=args.group or settings.route_group, batch_size=args.batch_size)
    return RouteWorker(settings, table, RedisState(client), registry, options, health_client=client)


def run(args: argparse.Namespace) -> int:
    """Entry point of `router route`: SIGTERM/SIGINT finish the batch, commit and leave the group."""
    telemetry.setup("route")
    settings = Settings.from_env()
    with ExitStack() as clients:
        worker = build_worker(settings, args, clients)
        telemetry.maybe_serve_metrics(worker.verdict)
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        ready_line.announce(route=worker.options.group)
        runtime.settle_heap()
        worker.run(stop)
    totals = dict(worker.outcomes.totals)
    print(f"stopped route outcomes={totals}", flush=True)
    return 0
