"""The gateway as an aiohttp application: ``create_app(settings, sources, options)``.

Shared state lives under typed ``web.AppKey``s. The producer starts and stops in
``cleanup_ctx``: on start it creates ``ingest.<source>`` (and its DLQ) for every source —
retried in the background while the broker does not answer, ``/readyz`` says 503 until it
is done — and on stop, which aiohttp runs after in-flight requests have finished, it flushes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field

import orjson
from aiohttp import web
from confluent_kafka import KafkaException

from producers.webhooks.ingest import GATEWAY, Gateway, expect_continue, receive
from producers.webhooks.openapi import openapi_document
from producers.webhooks.options import GatewayOptions
from producers.webhooks.problems import problem_details
from producers.webhooks.produce import DurableProducer
from producers.webhooks.tenants import TenantKeys, connections_ctx
from producers.webhooks.tracing import Tracing
from router.connections.store import ConnectionStore
from router.errors import ConfigError
from router.kafka import admin_client, dlq_topic, ensure_topics
from router.settings import Settings
from router.spec.sources import WebhookSource
from router.webapp import healthz, json_response, metrics

log = logging.getLogger("router.gateway")

TOPIC_RETRY_S = 2.0
TOPIC_TIMEOUT_S = 5.0
READY_CACHE_S = 1.0


@dataclass
class Readiness:
    """Topics created, and the broker's last answer (cached briefly so probes do not hammer it)."""

    topics_ready: bool = False
    topics_error: str = ""
    checked_at: float = 0.0
    reachable: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


READINESS = web.AppKey("gateway_readiness", Readiness)
OPENAPI = web.AppKey("gateway_openapi", bytes)


async def readyz(request: web.Request) -> web.Response:
    """200 only when the topics exist and the broker answers a metadata request now."""
    readiness, gateway = request.app[READINESS], request.app[GATEWAY]
    if not readiness.topics_ready:
        return json_response({"status": "not_ready",
                              "detail": f"topics not created yet: {readiness.topics_error}"}, 503)
    if gateway.tenant_keys is not None and not gateway.tenant_keys.ready:
        return json_response({"status": "not_ready", "detail": "connections not loaded yet"}, 503)
    async with readiness.lock:
        if time.monotonic() - readiness.checked_at > READY_CACHE_S:
            readiness.reachable = await gateway.producer.reachable(gateway.options.ready_timeout_s)
            readiness.checked_at = time.monotonic()
    if not readiness.reachable:
        return json_response({"status": "not_ready", "detail": "the Kafka broker does not answer"}, 503)
    return json_response({"status": "ready"})


async def openapi(request: web.Request) -> web.Response:
    """The OpenAPI 3.1 document (built once)."""
    return web.Response(body=request.app[OPENAPI], content_type="application/json")


def source_topics(sources: Mapping[str, WebhookSource]) -> list[str]:
    """Every topic the gateway writes, each with its DLQ beside it (DESIGN §2)."""
    topics = [s.topic for s in sources.values()]
    return sorted({*topics, *(dlq_topic(t) for t in topics)})


async def _create_topics(app: web.Application, settings: Settings) -> None:
    """Create the source topics; retry every TOPIC_RETRY_S while the broker does not answer."""
    readiness, topics = app[READINESS], source_topics(app[GATEWAY].sources)
    loop = asyncio.get_running_loop()
    while True:
        try:
            await loop.run_in_executor(None, lambda: ensure_topics(
                admin_client(settings), topics, partitions=settings.topic_partitions,
                replication_factor=settings.replication_factor, timeout=TOPIC_TIMEOUT_S,
                min_insync_replicas=settings.topic_min_insync()))
        except (ConfigError, KafkaException) as exc:
            readiness.topics_error = str(exc)
            log.warning("cannot create topics %s yet (retrying in %.0fs): %s", ", ".join(topics), TOPIC_RETRY_S, exc)
            await asyncio.sleep(TOPIC_RETRY_S)
            continue
        readiness.topics_ready, readiness.topics_error = True, ""
        return


def _producer_ctx(settings: Settings) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        gateway = app[GATEWAY]
        gateway.producer.start()
        topics = asyncio.create_task(_create_topics(app, settings))
        # Let the first attempt finish (it gives up after TOPIC_TIMEOUT_S), so a healthy start is
        # ready when it says READY; a broker that is down does not hold the start-up longer.
        await asyncio.wait([topics], timeout=TOPIC_TIMEOUT_S + 1)
        yield
        topics.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await topics
        await gateway.producer.stop(gateway.options.flush_timeout_s)

    return ctx


def create_app(settings: Settings, sources: Mapping[str, WebhookSource],
               options: GatewayOptions | None = None, connections: ConnectionStore | None = None) -> web.Application:
    """The gateway application for ``sources`` on the Kafka cluster of ``settings``.

    With ``connections`` (not started: the app starts and stops it) each request is verified with
    the URL tenant's connection (producers/webhooks/tenants.py); without, with the spec's secrets.
    """
    options = options or GatewayOptions()
    producer = DurableProducer(settings, deadline_s=options.ack_deadline_s, linger_ms=options.linger_ms,
                               queue_max_messages=options.queue_max_messages,
                               max_record_bytes=options.max_record_bytes)
    # Bodies are read by the handler up to each source's max_bytes; aiohttp's own cap only must not be lower.
    max_bytes = max((s.max_bytes for s in sources.values()), default=1)
    app = web.Application(middlewares=[problem_details], client_max_size=max_bytes + 1)
    app[GATEWAY] = Gateway(dict(sources), producer, options, Tracing(),
                           TenantKeys(connections) if connections is not None else None)
    app[READINESS] = Readiness()
    app[OPENAPI] = orjson.dumps(openapi_document(sources))
    app.cleanup_ctx.append(_producer_ctx(settings))
    if connections is not None:
        app.cleanup_ctx.append(connections_ctx(connections))
    app.router.add_post("/v1/hooks/{tenant}/{source}", receive, expect_handler=expect_continue)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/openapi.json", openapi)
    app.router.add_get("/metrics", metrics)
    return app
