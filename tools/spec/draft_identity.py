"""Guesses, by name, of what identifies an event in a sample payload: its type, its id, the entity
it is about and what orders that entity's events. Every guess is a suggestion that the drafted
spec marks ``# REVIEW:``; a guess is only made when the sample's value would pass the route
worker's validate stage (an id of at most 256 characters, a version that is a number or time).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from router import headers as h
from tools.spec.draft_fields import addressable, is_timestamp

# Where webhook envelopes keep the object an event is about, most specific first
# (Stripe data.object, Intercom data.item, Zendesk/EventBridge detail).
ENVELOPES = ("data.object", "data.item", "detail", "data", "payload", "object", "resource", "body")
# Top-level objects that give an event's context rather than its subject (GitHub's sender, repository).
CONTEXT = frozenset({"sender", "repository", "organization", "installation", "enterprise", "account", "actor",
                     "app", "application", "links", "_links", "meta", "metadata", "owner", "author", "workspace",
                     "team", "project", "context", "client", "source", "changes", "previous_attributes"})
TYPE_KEYS = ("event_type", "eventType", "topic", "type", "event", "action", "event_name")
EVENT_ID_KEYS = ("event_id", "eventId", "delivery_id", "deliveryId", "delivery", "webhook_id", "notification_id",
                 "message_id", "uuid")
ENTITY_KEYS = ("id", "uuid", "key")
# An entity's own change markers first, then the event's time, then the entity's creation time
# (the same for every event of one entity, so the weakest order).
MAIN_VERSIONS = ("updated_at", "updatedAt", "updated", "modified_at", "modified", "last_modified", "version",
                 "sequence", "revision", "seq")
EVENT_VERSIONS = ("sequence", "seq", "version", "updated_at", "updated", "occurred_at", "created", "created_at",
                  "createdAt", "time", "timestamp", "event_time")
LATE_VERSIONS = ("created_at", "createdAt", "created")
HEADER_EVENT_ID = "$event_id"
_SAFE_INT = 2**53


@dataclass
class Identity:
    """The guessed source paths, why each was chosen, and the main object's path."""

    main: tuple[str, ...] = ()
    type_path: str | None = None
    event_type: str | None = None
    event_id: str = HEADER_EVENT_ID
    entity_key: str | None = None
    version: str | None = None
    why: dict[str, str] = field(default_factory=dict)


def guess_identity(payload: dict[str, Any]) -> Identity:
    """Identity paths of a sample payload, each explained for its ``# REVIEW:`` comment."""
    out = Identity(main=main_object(payload))
    main_text = ".".join(out.main)
    main = _at(payload, out.main)
    for key in TYPE_KEYS:
        value = payload.get(key)
        if isinstance(value, str) and value and len(value) <= 200 and value.isprintable():
            out.type_path, out.event_type = key, value
            out.why["type"] = f"REVIEW: the event type, guessed from the key name {key!r}"
            break
    candidates = EVENT_ID_KEYS + (("id",) if out.main else ())
    for key in candidates:
        if _id_like(payload.get(key), h.MAX_EVENT_ID_CHARS):
            out.event_id = key
            out.why["event_id"] = f"REVIEW: the partner's event id (the dedupe key), guessed from the key name {key!r}"
            break
    else:
        out.why["event_id"] = ("REVIEW: no event id in the body: the gateway's (X-GitHub-Delivery, webhook-id, "
                               "..., else the body's sha256)")
    for key in ENTITY_KEYS:
        if isinstance(main, dict) and _id_like(main.get(key), h.MAX_ENTITY_KEY_CHARS) and \
                ".".join((*out.main, key)) != out.event_id:
            out.entity_key = ".".join((*out.main, key))
            what = f"the {main_text} object" if main_text else "the payload's own"
            out.why["entity_key"] = f"REVIEW: the entity key (Kafka key, ordering scope): {what} {key!r}"
            break
    if out.entity_key is not None:
        out.version, out.why["version"] = _version(payload, out.main) or (None, "")
        if out.version is None:
            del out.why["version"]
    return out


def main_object(payload: dict[str, Any]) -> tuple[str, ...]:
    """The path of the object the event is about; ``()`` when the payload is that object itself
    (an envelope names it, else a payload with its own ``id`` is the object, as Shopify's are)."""
    for path in ENVELOPES:
        steps = tuple(path.split("."))
        if isinstance(_at(payload, steps), dict) and any(k in _at(payload, steps) for k in ENTITY_KEYS):
            return steps
    if _id_like(payload.get("id"), h.MAX_ENTITY_KEY_CHARS):
        return ()
    for key, value in payload.items():
        if (isinstance(value, dict) and key not in CONTEXT and addressable(key, first=True)
                and _plain(key) and _id_like(value.get("id"), h.MAX_ENTITY_KEY_CHARS)):
            return (key,)
    return ()


def _version(payload: dict[str, Any], main: tuple[str, ...]) -> tuple[str, str] | None:
    main_obj = _at(payload, main)
    orders = ((main, MAIN_VERSIONS, "the entity's own"), ((), EVENT_VERSIONS, "the event's"),
              (main, LATE_VERSIONS, "the entity's creation time (the same for all its events: prefer a change "
                                    "marker if the partner has one) as"))
    for steps, keys, what in orders:
        obj = main_obj if steps == main else payload
        for key in keys:
            if isinstance(obj, dict) and _orders(key, obj.get(key)):
                path = ".".join((*steps, key))
                return path, f"REVIEW: orders an entity's events: {what} {key!r}"
    return None


def _orders(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return math.isfinite(value) and abs(value) < _SAFE_INT
    return isinstance(value, str) and is_timestamp(key, value)


def _id_like(value: Any, limit: int) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return abs(value) < 2**63
    return isinstance(value, str) and 0 < len(value) <= limit and value.isprintable()


def _plain(key: str) -> bool:
    """A key a probe can rewrite by path (certify's with_value reads all-digit steps as indexes)."""
    return not key.isdigit()


def _at(payload: dict[str, Any], steps: tuple[str, ...]) -> Any:
    value: Any = payload
    for step in steps:
        if not isinstance(value, dict):
            return None
        value = value.get(step)
    return value
