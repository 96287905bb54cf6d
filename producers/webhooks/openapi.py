"""The gateway's OpenAPI 3.1 document, built once at start-up from the loaded sources."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from producers.webhooks import problems as p
from producers.webhooks.verify import (
    GITHUB_SIGNATURE,
    STANDARD_ID,
    STANDARD_SIGNATURE,
    STANDARD_TIMESTAMP,
    STRIPE_SIGNATURE,
)
from router.spec.sources import TENANT_PATTERN, WebhookSource

_SIGNATURE_HEADERS = {
    STANDARD_ID: "Standard Webhooks message id (also the event id when the body has none).",
    STANDARD_TIMESTAMP: "Standard Webhooks: Unix seconds, at most the source's tolerance from now.",
    STANDARD_SIGNATURE: "Standard Webhooks: space-separated v1,<base64> HMAC-SHA256 of id.timestamp.body.",
    STRIPE_SIGNATURE: "Stripe-style: t=<unix>,v1=<hex> HMAC-SHA256 of t.body.",
    GITHUB_SIGNATURE: "GitHub-style: sha256=<hex> HMAC-SHA256 of the body.",
    "traceparent": "W3C trace context; when valid, the event continues this trace.",
}


def _problem_response(description: str, codes: list[str], headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": f"{description} Codes: {', '.join(codes)}.",
        "content": {p.PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
    if headers:
        response["headers"] = headers
    return response


def openapi_document(sources: Mapping[str, WebhookSource], *, version: str = "0.1.0") -> dict[str, Any]:
    """The OpenAPI 3.1 description of the gateway serving ``sources``."""
    names = sorted(sources)
    media_types = sorted({t for s in sources.values() for t in s.content_types} or {"application/json"})
    source_schema: dict[str, Any] = {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,100}$"}
    if names:
        source_schema["examples"] = names
    hook = {
        "post": {
            "operationId": "receiveWebhook",
            "summary": "Receive one partner webhook",
            "description": (
                "Checks source and tenant, content type and size before reading the body, then the signature "
                "(the source's scheme), JSON, nesting depth, event id, entity key and the Kafka record's size; "
                "answers 202 only after the broker acknowledged the record on ingest.<source>. Configured "
                "sources: " + (", ".join(names) or "none") + "."
            ),
            "parameters": [
                {"name": "tenant", "in": "path", "required": True, "description": "Tenant name; others are 404.",
                 "schema": {"type": "string", "pattern": f"^{TENANT_PATTERN}$"}},
                {"name": "source", "in": "path", "required": True, "schema": source_schema},
                *({"name": name, "in": "header", "required": False, "description": text, "schema": {"type": "string"}}
                  for name, text in _SIGNATURE_HEADERS.items()),
            ],
            "requestBody": {
                "required": True,
                "description": "The partner's JSON event, stored byte for byte.",
                "content": {t: {"schema": {}} for t in media_types},
            },
            "responses": {
                "202": {"description": "Stored durably.",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}}},
                "400": _problem_response("Not JSON, nested deeper than the source's max_depth, or no usable "
                                         "event id / entity key (missing, wrong type, too long).",
                                         [p.INVALID_JSON, p.TOO_DEEP, p.MISSING_EVENT_ID, p.INVALID_EVENT_ID,
                                          p.EVENT_ID_TOO_LONG, p.INVALID_ENTITY_KEY, p.ENTITY_KEY_TOO_LONG,
                                          p.INCOMPLETE_BODY]),
                "401": _problem_response("Signature missing, malformed, wrong, or timestamp out of tolerance.",
                                         [p.BAD_SIGNATURE, p.STALE_TIMESTAMP]),
                "404": _problem_response("Unknown source, a tenant name outside the pattern, or a tenant the "
                                         "source does not allow.",
                                         [p.UNKNOWN_SOURCE, p.INVALID_TENANT, p.UNKNOWN_TENANT]),
                "405": _problem_response("Only POST is allowed.", [p.METHOD_NOT_ALLOWED]),
                "413": _problem_response("Body over the source's max_bytes or the topics' record size (refused "
                                         "before it is read when declared), or a Kafka record (body, key and "
                                         "headers) over the topics' maximum message size.", [p.TOO_LARGE]),
                "415": _problem_response("Content type not accepted by the source.", [p.UNSUPPORTED_MEDIA_TYPE]),
                "503": _problem_response(
                    "The broker did not acknowledge in time, or the producer queue is full: send again later.",
                    [p.UNAVAILABLE],
                    {"Retry-After": {"description": "Seconds to wait before retrying.",
                                     "schema": {"type": "integer", "minimum": 0}}},
                ),
            },
        }
    }
    status = {"application/json": {"schema": {"$ref": "#/components/schemas/Status"}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "event-router webhook gateway", "version": version,
                 "description": "Partner webhooks in, verified, onto ingest.<source> (docs/gateway.md)."},
        "paths": {
            "/v1/hooks/{tenant}/{source}": hook,
            "/healthz": {"get": {"operationId": "healthz", "summary": "The process is up",
                                 "responses": {"200": {"description": "Up.", "content": status}}}},
            "/readyz": {"get": {"operationId": "readyz", "summary": "The broker is reachable and topics exist",
                                "responses": {"200": {"description": "Ready.", "content": status},
                                              "503": {"description": "Not ready.", "content": status}}}},
            "/metrics": {"get": {"operationId": "metrics", "summary": "Prometheus metrics of this process",
                                 "responses": {"200": {"description": "Prometheus text exposition.",
                                                       "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
            "/openapi.json": {"get": {"operationId": "openapi", "summary": "This document",
                                      "responses": {"200": {"description": "OpenAPI 3.1 document.",
                                                            "content": {"application/json": {"schema": {}}}}}}},
        },
        "components": {"schemas": {
            "Accepted": {
                "type": "object", "required": ["event_id", "topic", "partition", "offset"],
                "properties": {"event_id": {"type": "string"}, "topic": {"type": "string"},
                               "partition": {"type": "integer"}, "offset": {"type": "integer"}},
            },
            "Problem": {
                "type": "object", "required": ["type", "title", "status", "detail", "code"],
                "description": "RFC 9457 problem details with a stable code.",
                "properties": {"type": {"type": "string"}, "title": {"type": "string"},
                               "status": {"type": "integer"}, "detail": {"type": "string"},
                               "code": {"type": "string"}, "field": {"type": "string"},
                               "header": {"type": "string"}, "max_bytes": {"type": "integer"},
                               "max_record_bytes": {"type": "integer"}, "max_depth": {"type": "integer"},
                               "max_length": {"type": "integer"}},
            },
            "Status": {"type": "object", "required": ["status"],
                       "properties": {"status": {"type": "string"}, "detail": {"type": "string"}}},
        }},
    }
