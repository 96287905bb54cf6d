"""Records in: each consumed message becomes an ``Item`` in its lane, decoded and turned into its
JSON once, or marked for its dead letter (a record is the unit of failure). Runs on the event loop;
schema fetches go to the Kafka thread (``KafkaBridge.consume_call``)."""

from __future__ import annotations

import logging
import re
import time
from typing import TYPE_CHECKING

from confluent_kafka import KafkaError, Message

from consumers.deliver.delivered import delivered_key
from consumers.deliver.lanes import Item, now
from consumers.deliver.payload import idempotency_key, record_json, to_json
from consumers.deliver.tenancy import scope_of
from router import codec, codes
from router import headers as h

if TYPE_CHECKING:
    from consumers.deliver.worker import DeliverWorker

log = logging.getLogger("router.deliver")

_TRACEPARENT = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")  # W3C, version 00
REGISTRY_RETRY_S = 2.0  # a record whose schema the registry could not give (down) is decoded again after this

Unfetched = dict[int, tuple[str, bool]]  # schema id -> (why the registry did not give it, passing?)
_WANTED = frozenset({h.INTEGRATION, h.TENANT, h.EVENT_ID, h.TRACEPARENT, h.RECEIVED_AT})


async def accept(worker: DeliverWorker, messages: list[Message]) -> None:
    """Fetch the schemas a batch names, then add each record to its lane (or skip it: ``others``)."""
    good = []
    unfetched: Unfetched = {}
    for msg in messages:
        err = msg.error()
        if err is not None:
            if err.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer error: %s", err)
            continue
        good.append(msg)
        # The schemas the batch names first (rare I/O, on the Kafka thread); then pure work.
        sid = worker.codec.missing(msg.value())
        if sid is not None and sid not in unfetched:
            try:
                await worker.kafka.consume_call(worker.codec.fetch, sid)
            except Exception as exc:  # unknown id: the record's decode says so; registry down: later
                unfetched[sid] = (f"schema id {sid} could not be fetched: {exc}", _passes(exc))
    for msg in good:
        item = _item(worker, msg, unfetched)
        if item.integration in worker.options.others:
            worker.lanes.skip(item)
            worker.outcomes.add("not_selected", item.tenant, item.integration)
        else:
            worker.lanes.add(item)


def _item(worker: DeliverWorker, msg: Message, unfetched: Unfetched) -> Item:
    """The ``Item`` for one message: identity from its headers, then decoded, or its dead letter set."""
    raw_headers: list[tuple[str, bytes | None]] = msg.headers() or []  # type: ignore[assignment]
    # One pass over the headers, keeping only those read here (last one wins, names in any case):
    # the same values as ``h.to_dict`` and ``h.identity`` give, without decoding every header.
    found: dict[str, bytes | None] = {}
    for key, value in raw_headers:
        if key in _WANTED or (key := key.lower()) in _WANTED:
            found[key] = value
    raw_name = found.get(h.INTEGRATION)
    name = raw_name.decode("utf-8", "replace") if raw_name is not None else ""
    # Identity is never guessed: a replaced byte could make two events one (the second skipped).
    tenant = h.identity_value(found.get(h.TENANT)) or ""
    event_id = h.identity_value(found.get(h.EVENT_ID)) or ""
    ts_type, ts = msg.timestamp()
    item = Item(msg.topic() or "", msg.partition() or 0, msg.offset() or 0, msg.key(), msg.value(),
                raw_headers, name, tenant, event_id,
                idempotency_key(tenant, name, event_id), None, (ts / 1000) if ts_type and ts > 0 else time.time())
    # A junk traceparent is dropped, never a reason to fail the record (it becomes an HTTP header).
    raw_parent = found.get(h.TRACEPARENT)
    traceparent = raw_parent.decode("utf-8", "replace") if raw_parent else None
    item.traceparent = traceparent if traceparent and _TRACEPARENT.fullmatch(traceparent) else None
    raw_received = found.get(h.RECEIVED_AT)
    received = raw_received.decode("utf-8", "replace") if raw_received else ""
    item.received_at_ms = (int(received) if received.isascii() and received.isdigit() and len(received) <= 16
                           else None)
    if name not in worker.targets:
        why = f"no loaded integration {name!r} delivers this record"
        item.dlq = (codes.DELIVER_UNKNOWN_INTEGRATION, why, None, b"")
    elif not event_id or not tenant:
        which = h.EVENT_ID if not event_id else h.TENANT
        if shown := h.to_dict(raw_headers).get(which):
            why = (f"{which} is not an identity: it must be UTF-8 of 1 to {h.MAX_EVENT_ID_CHARS} characters, "
                   f"got {len(shown)} character(s) after decoding")
            item.dlq = (codes.DELIVER_BAD_HEADER, why, None, b"")
        else:
            item.dlq = (codes.DELIVER_MISSING_EVENT_ID if which == h.EVENT_ID else codes.DELIVER_BAD_HEADER,
                        f"the record has no {which} header", None, b"")
    else:
        if worker.targets[name].connection is not None:
            item.scope = scope_of(name, tenant, per_tenant=True)
        _decode_into(worker, item, unfetched)
    return item


def _decode_into(worker: DeliverWorker, item: Item, unfetched: Unfetched) -> None:
    """Decode ``item``'s value and make its JSON, or set its dead letter. A schema the registry
    could not give for a passing reason (down, timing out) is no fault of the record: it is
    marked ``undecoded`` and decoded again later (``redecode``), never dead-lettered."""
    try:
        item.record = worker.codec.decode(item.value)
    except codec.UnknownSchema as exc:
        why, passing = unfetched.get(exc.schema_id, (str(exc), False))
        if passing:
            item.undecoded = True
            item.not_before = now() + REGISTRY_RETRY_S
            return
        item.dlq = (codes.DELIVER_DECODE, why[:500], None, b"")
    except ValueError as exc:  # not framed, corrupt Avro
        item.dlq = (codes.DELIVER_DECODE, str(exc)[:500], None, b"")
    except Exception as exc:  # a record is the unit of failure, never the worker's
        item.dlq = (codes.INTERNAL_DECODE, f"decode failed unexpectedly: {type(exc).__name__}", None, b"")
    else:
        # Its JSON once, here: batches are cut by the size of the body as sent (max_bytes).
        target = worker.targets[item.integration]
        item.delivered_key = delivered_key(worker.prefix, target.destination, item.idempotency_key)
        try:
            item.json = (to_json(item.record) if target.max_records == 1
                         else record_json(item.record, item.idempotency_key, target.id_field))
        except Exception as exc:  # what the JSON body cannot hold: as a failed request was
            item.dlq = (codes.INTERNAL_DELIVER, f"deliver failed unexpectedly: {type(exc).__name__}: "
                        f"{str(exc)[:200]}", None, b"")


async def redecode(worker: DeliverWorker, item: Item) -> None:
    """Fetch the schema of an ``undecoded`` head again; decode it, or try later while the
    registry still fails for a passing reason."""
    sid = codec.schema_id_of(item.value)
    unfetched: Unfetched = {}
    if sid is not None:
        try:
            await worker.kafka.consume_call(worker.codec.fetch, sid)
        except Exception as exc:
            unfetched[sid] = (f"schema id {sid} could not be fetched: {exc}", _passes(exc))
            if unfetched[sid][1]:
                log.warning("schema registry unavailable, %s[%d]@%d waits: %s", item.topic, item.partition,
                            item.offset, exc)
    item.undecoded = False
    _decode_into(worker, item, unfetched)
    worker.lanes.retry(item, item.not_before if item.undecoded else 0.0)


def _passes(exc: BaseException) -> bool:
    """Does a failure to fetch a schema pass by itself (registry down, 5xx, timeout), unlike a
    404 (no such id) or a schema that does not parse?"""
    if isinstance(exc, ValueError):
        return False
    status = getattr(exc, "http_status_code", None)
    return status is None or status == -1 or status >= 500 or status == 429
