"""``POST /v1/hooks/{tenant}/{source}``: check, verify, parse, produce durably, answer.

The order of checks is the contract (docs/gateway.md): source and tenant (404), content type
(415) and declared size (413) before a byte of the body is read — also in the answer to
``Expect: 100-continue`` — then the body, read up to the limit (413), the signature (401),
JSON, nesting depth, event id and entity key (400), the size of the Kafka record (413), and
only then one produce whose broker ack is awaited (202, or 503 with Retry-After). Every refusal
happens before the produce, so nothing is half-written, and nothing a worker could choke on
(``limits``) is ever answered 202.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

# aiohttp's own "100 Continue" writer: sent only once the pre-body checks pass.
from aiohttp.web_urldispatcher import _default_expect_handler
from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation

from producers.webhooks import problems as p
from producers.webhooks.limits import (
    HEADER_FRAMING_BYTES,
    PARSER_DEPTH_MESSAGE,
    nesting_exceeds,
    record_size,
)
from producers.webhooks.options import GatewayOptions
from producers.webhooks.produce import DurableProducer, TooLarge, Unavailable
from producers.webhooks.tenants import TenantKeys
from producers.webhooks.tracing import Tracing
from producers.webhooks.verify import verify
from router import headers as h
from router.headers import MAX_ENTITY_KEY_CHARS, MAX_EVENT_ID_CHARS
from router.spec.paths import MISSING
from router.spec.sources import TENANT_PATTERN, WebhookSource, body_digest_event_id, is_tenant_name

log = logging.getLogger("router.gateway")

# github sources: the partner's (unsigned) delivery id, kept beside the body-digest event id.
DELIVERY_ID = "router-delivery-id"
# A traceparent (W3C, version 00) is always 55 characters: its header's size is known before it is made.
_TRACEPARENT_BYTES = HEADER_FRAMING_BYTES + len(h.TRACEPARENT) + 55

# Requests by (source, tenant, status, code), counted in a plain dict on the hot path (an SDK
# counter add costs ~10 µs, this ~0.2 µs) and read by an observable counter when metrics are
# collected. dict.copy() is atomic under the GIL, so the collecting thread needs no lock.
_counts: dict[tuple[str, str, int, str], int] = {}


def _count(source: str, tenant: str, status: int, code: str) -> None:
    key = (source, tenant, status, code)
    _counts[key] = _counts.get(key, 0) + 1


def _observe(options: CallbackOptions) -> Iterable[Observation]:
    for (source, tenant, status, code), n in _counts.copy().items():
        yield Observation(n, {"source": source, "tenant": tenant, "status": status, "code": code})


metrics.get_meter("router.gateway").create_observable_counter(
    "router_gateway_requests", callbacks=[_observe], unit="1",
    description="webhook requests by source, tenant (once verified), status and code")


@dataclass(frozen=True)
class Gateway:
    """What the handler needs, shared through the app (``GATEWAY`` key)."""

    sources: dict[str, WebhookSource]
    producer: DurableProducer
    options: GatewayOptions
    tracing: Tracing
    tenant_keys: TenantKeys | None = None  # per-tenant secrets from connections; None: the spec's secrets

    def keys(self, source: WebhookSource, tenant: str) -> tuple[bytes, ...] | None:
        """What verifies ``tenant``'s requests to ``source``; None when it has no active connection."""
        return source.keys if self.tenant_keys is None else self.tenant_keys.keys(source, tenant)


GATEWAY = web.AppKey("gateway", Gateway)


def _refuse(code: str, detail: str, source: str = "", tenant: str = "", *, verified: bool = False,
            close: bool = False, **members: Any) -> web.Response:
    """Count, log and answer a refusal. The tenant labels the metric only once the signature verified:
    before that it is whatever a stranger wrote in the URL (unbounded label values)."""
    _count(source, tenant if verified else "", p.CODES[code][0], code)
    log.info("refused %s source=%s tenant=%r: %s", code, source or "-", tenant, detail,
             extra={"tenant": tenant, "code": code, "source": source})
    return p.problem(code, detail, close=close, **members)


def precheck(request: web.Request) -> WebhookSource | web.Response:
    """The checks made before any of the body is read: the source to go on with, or the refusal."""
    gateway = request.app[GATEWAY]
    tenant, name = request.match_info["tenant"], request.match_info["source"]
    source = gateway.sources.get(name)
    if source is None:
        return _refuse(p.UNKNOWN_SOURCE, f"no webhook source named {name!r}", close=True)
    if not is_tenant_name(tenant):
        # Not echoed (answer, log or metric): it is whatever a stranger put in the URL.
        return _refuse(p.INVALID_TENANT, f"the tenant in the URL is not a tenant name: tenant names match "
                       f"^{TENANT_PATTERN}$", name, close=True)
    if not source.allows_tenant(tenant):
        return _refuse(p.UNKNOWN_TENANT, f"tenant {tenant!r} may not post to source {name!r}", name, close=True)
    if gateway.tenant_keys is not None and not gateway.tenant_keys.ready:
        return p.problem(p.UNAVAILABLE, "connections are still loading; send it again",
                         retry_after_s=gateway.options.retry_after_s, close=True)
    if gateway.keys(source, tenant) is None:
        return _no_connection(name)
    if request.content_type not in source.content_types:
        sent = request.headers.get("Content-Type", "nothing")
        return _refuse(p.UNSUPPORTED_MEDIA_TYPE, f"Content-Type {sent!r} is not accepted by source {name!r}; "
                       f"send one of: {', '.join(sorted(source.content_types))}", name, tenant, close=True)
    length = request.content_length
    if length is not None and length > body_limit(source, gateway.options):
        return _too_large(source, tenant, gateway.options)
    return source


def _no_connection(name: str) -> web.Response:
    # Exactly the unknown-source answer: a stranger learns nothing about which tenants are connected.
    return _refuse(p.UNKNOWN_SOURCE, f"no webhook source named {name!r}", close=True)


def body_limit(source: WebhookSource, options: GatewayOptions) -> int:
    """The largest body worth reading: the source's max_bytes, and no body alone may outgrow a Kafka record."""
    return min(source.max_bytes, options.max_record_bytes)


def _too_large(source: WebhookSource, tenant: str, options: GatewayOptions) -> web.Response:
    limit = body_limit(source, options)
    return _refuse(p.TOO_LARGE, f"source {source.name!r} accepts bodies of at most {limit} bytes", source.name,
                   tenant, close=True, max_bytes=limit, max_record_bytes=options.max_record_bytes)


async def expect_continue(request: web.Request) -> web.StreamResponse | None:
    """``Expect: 100-continue``: refuse at once what would be refused before reading the body."""
    checked = precheck(request)
    if isinstance(checked, web.Response):
        return checked
    await _default_expect_handler(request)
    return None


async def _read_limited(request: web.Request, limit: int) -> bytes | None:
    """The whole body, or None as soon as more than ``limit`` bytes have arrived (chunked bodies)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _is_utf8(header_value: str) -> bool:
    """Were this header's bytes UTF-8? aiohttp decodes with surrogateescape: other bytes become lone surrogates."""
    if header_value.isascii():
        return True
    try:
        header_value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _event_id(source: WebhookSource, doc: object, body: bytes, request: web.Request) -> str | web.Response:
    tenant = request.match_info["tenant"]
    value = source.get_event_id(doc) if source.get_event_id is not None else MISSING
    header: str | None = None
    if (value is MISSING or value is None or value == "") and source.event_id_header:
        header = source.event_id_header
        value = request.headers.get(header) or MISSING
        if isinstance(value, str) and not _is_utf8(value):
            # The event id becomes the router-event-id Kafka header, which is UTF-8 (DESIGN §2).
            return _refuse(p.INVALID_EVENT_ID, f"header {header} must be UTF-8 text", source.name,
                           tenant, verified=True, header=header)
    if (value is MISSING or value is None or value == "") and source.digest_event_id:
        # The scheme signs no id and no time: only the body is authentic, so it is the identity.
        return body_digest_event_id(body)
    if value is MISSING or value is None or value == "":
        where = " or ".join(x for x in (source.event_id_path and f"body field {source.event_id_path}",
                                        source.event_id_header and f"header {source.event_id_header}") if x)
        return _refuse(p.MISSING_EVENT_ID, f"the event id is missing: expected {where}", source.name, tenant,
                       verified=True,
                       field=source.event_id_path, header=source.event_id_header)
    if isinstance(value, bool) or not isinstance(value, str | int):
        return _refuse(p.INVALID_EVENT_ID, f"body field {source.event_id_path} must be a string or an integer, "
                       f"not {type(value).__name__}", source.name, tenant, verified=True, field=source.event_id_path)
    text = str(value)
    if len(text) > MAX_EVENT_ID_CHARS:
        where = f"header {header}" if header else f"body field {source.event_id_path}"
        return _refuse(p.EVENT_ID_TOO_LONG, f"the event id ({where}) is {len(text)} characters; at most "
                       f"{MAX_EVENT_ID_CHARS} are accepted", source.name, tenant, verified=True,
                       header=header, field=None if header else source.event_id_path, max_length=MAX_EVENT_ID_CHARS)
    return text


def _entity_key(source: WebhookSource, doc: object, tenant: str) -> bytes | web.Response | None:
    if source.get_entity_key is None:
        return None
    value = source.get_entity_key(doc)
    if value is MISSING or value is None:
        return None  # null key: DESIGN §2 allows it; ordering then holds per partition only
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return _refuse(p.INVALID_ENTITY_KEY, f"body field {source.entity_key_path} must be a string or a number, "
                       f"not {type(value).__name__}", source.name, tenant, verified=True,
                       field=source.entity_key_path)
    text = str(value)
    if len(text) > MAX_ENTITY_KEY_CHARS:
        return _refuse(p.ENTITY_KEY_TOO_LONG, f"the entity key (body field {source.entity_key_path}) is {len(text)} "
                       f"characters; at most {MAX_ENTITY_KEY_CHARS} are accepted", source.name, tenant,
                       verified=True, field=source.entity_key_path, max_length=MAX_ENTITY_KEY_CHARS)
    return text.encode()


def _delivery_id(source: WebhookSource, request: web.Request) -> bytes | None:
    """github: the delivery header's value for router-delivery-id, when it is short UTF-8 text (else left out:
    it is unsigned metadata, not the event's identity)."""
    if source.delivery_id_header is None:
        return None
    value = request.headers.get(source.delivery_id_header)
    if not value or len(value) > MAX_EVENT_ID_CHARS or not _is_utf8(value):
        return None
    return value.encode()


async def receive(request: web.Request) -> web.Response:
    """Accept one webhook: 202 with where it was stored, once the broker acknowledged it."""
    source = precheck(request)
    if isinstance(source, web.Response):
        return source
    gateway = request.app[GATEWAY]
    tenant = request.match_info["tenant"]
    received_ms = time.time_ns() // 1_000_000
    try:
        body = await _read_limited(request, body_limit(source, gateway.options))
    except (ConnectionError, asyncio.IncompleteReadError, HttpProcessingError) as exc:
        return _refuse(p.INCOMPLETE_BODY, f"the body could not be read: {type(exc).__name__}", source.name, tenant,
                       close=True)
    if body is None:
        return _too_large(source, tenant, gateway.options)
    keys = gateway.keys(source, tenant)  # again: the connection may have changed while the body was read
    if keys is None:
        return _no_connection(source.name)
    rejection = verify(source.scheme, keys, request.headers, body, now=received_ms / 1000,
                       tolerance_s=source.tolerance_s)
    if rejection is not None:
        return _refuse(rejection.code, rejection.detail, source.name, tenant, header=rejection.header or None)
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if PARSER_DEPTH_MESSAGE in str(exc):
            return _too_deep(source, tenant)
        return _refuse(p.INVALID_JSON, f"the body is not valid JSON: {exc}", source.name, tenant, verified=True)
    if nesting_exceeds(doc, source.max_depth, body):
        return _too_deep(source, tenant)
    event_id = _event_id(source, doc, body, request)
    if isinstance(event_id, web.Response):
        return event_id
    key = _entity_key(source, doc, tenant)
    if isinstance(key, web.Response):
        return key
    headers = [(h.TENANT, tenant.encode()), (h.SOURCE, source.name.encode()), (h.EVENT_ID, event_id.encode()),
               (h.RECEIVED_AT, str(received_ms).encode())]
    delivery_id = _delivery_id(source, request)
    if delivery_id is not None:
        headers.append((DELIVERY_ID, delivery_id))
    size = record_size(key, body, headers) + _TRACEPARENT_BYTES
    if size > gateway.options.max_record_bytes:
        return _record_too_large(source, tenant, gateway.options, f"the Kafka record (body, key and headers) would "
                                 f"be {size} bytes; topics take at most {gateway.options.max_record_bytes}")
    return await _produce(gateway, request, source, tenant, event_id, key, body, headers, doc)


def _too_deep(source: WebhookSource, tenant: str) -> web.Response:
    return _refuse(p.TOO_DEEP, f"the body nests objects and arrays more than {source.max_depth} levels deep; "
                   f"source {source.name!r} accepts at most {source.max_depth}", source.name, tenant, verified=True,
                   max_depth=source.max_depth)


def _record_too_large(source: WebhookSource, tenant: str, options: GatewayOptions, detail: str) -> web.Response:
    return _refuse(p.TOO_LARGE, detail, source.name, tenant, verified=True,
                   max_bytes=body_limit(source, options), max_record_bytes=options.max_record_bytes)


async def _produce(gateway: Gateway, request: web.Request, source: WebhookSource, tenant: str, event_id: str,
                   key: bytes | None, body: bytes, headers: list[tuple[str, bytes]], doc: object) -> web.Response:
    traceparent, span = gateway.tracing.start(request.headers.get(h.TRACEPARENT), f"webhook {source.name}", {
        "router.tenant": tenant, "router.source": source.name, "router.event_id": event_id})
    if span is not None and source.get_event_type is not None:
        event_type = source.get_event_type(doc)
        if isinstance(event_type, str):
            span.set_attribute("router.event_type", event_type)
    headers = [*headers, (h.TRACEPARENT, traceparent.encode())]
    try:
        outcome = await gateway.producer.send(source.topic, key, body, headers)
        if isinstance(outcome, TooLarge):
            if span is not None:
                span.set_status(trace.StatusCode.ERROR, outcome.reason)
            return _record_too_large(source, tenant, gateway.options, f"{outcome.reason}; the topic takes smaller "
                                     "records than the gateway was told (ROUTER_GATEWAY_MAX_RECORD_BYTES)")
        if isinstance(outcome, Unavailable):
            if span is not None:
                span.set_status(trace.StatusCode.ERROR, outcome.reason)
            log.warning("unavailable source=%s tenant=%r event_id=%r: %s", source.name, tenant, event_id,
                        outcome.reason, extra={"tenant": tenant, "event_id": event_id, "code": p.UNAVAILABLE,
                                               "topic": source.topic})
            _count(source.name, tenant, 503, p.UNAVAILABLE)
            return p.problem(p.UNAVAILABLE, f"{outcome.reason}; the event is not confirmed stored: send it again "
                             "(a copy that did get stored is removed downstream by its event id)",
                             retry_after_s=gateway.options.retry_after_s)
    finally:
        if span is not None:
            span.end()
    _count(source.name, tenant, 202, "")
    return web.Response(status=202, content_type="application/json", body=orjson.dumps(
        {"event_id": event_id, "topic": outcome.topic, "partition": outcome.partition, "offset": outcome.offset}))
