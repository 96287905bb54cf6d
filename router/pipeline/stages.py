"""decode → validate → select → map → encode, as pure functions of plain data.

``prepare`` turns one inbound record into candidates (one per integration that wants it) or
failures with stable codes; it never raises for a bad record. ``claim_for`` turns a candidate
into the state-store question. Decisions are applied by the caller (the loop owns I/O).
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from router import codec, codes
from router import headers as h
from router.codes import InternalStage
from router.deadletters import error_headers
from router.errors import DecodeError, EncodeError, InternalError, MappingError, RecordError, ValidateError
from router.pipeline.records import Candidate, Claim, Failure, Inbound, Prepared
from router.spec.avro_writer import Writer
from router.spec.coerce import version_number
from router.spec.mapping import Meta
from router.spec.model import Integration, Source
from router.spec.paths import MISSING, Getter

MAGIC = codec.MAGIC  # kept here for the fixtures and tests that frame inputs


@dataclass(frozen=True)
class RoutingTable:
    """Integrations by source topic, with each one's registered output schema id."""

    by_topic: Mapping[str, tuple[Integration, ...]]
    schema_ids: Mapping[str, int]  # integration name -> registry id of its output schema
    key_prefix: str = "router:"
    hash_tags: bool = False  # Redis Cluster: each claim's keys carry one hash tag (claim_for)

    @classmethod
    def build(cls, integrations: tuple[Integration, ...], schema_ids: Mapping[str, int], key_prefix: str = "router:",
              *, hash_tags: bool = False) -> RoutingTable:
        by_topic: dict[str, list[Integration]] = {}
        for integration in integrations:
            by_topic.setdefault(integration.source.topic, []).append(integration)
        return cls({t: tuple(v) for t, v in by_topic.items()}, dict(schema_ids), key_prefix, hash_tags)


AvroDecoder = Callable[[bytes], Any]


def decode_json(value: bytes | None, max_bytes: int) -> dict[str, Any]:
    """Parse a JSON object body; DecodeError with a stable code otherwise."""
    if value is None:
        raise DecodeError("the record has no value (tombstone); expected a JSON object", code=codes.DECODE_EMPTY)
    if len(value) > max_bytes:
        raise DecodeError(f"{len(value)} bytes is over the source's max_bytes {max_bytes}", code=codes.DECODE_TOO_LARGE)
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"invalid JSON: {exc}", code=codes.DECODE_INVALID_JSON) from None
    if not isinstance(doc, dict):
        raise DecodeError(f"expected a JSON object, got {type(doc).__name__}", code=codes.DECODE_NOT_OBJECT)
    return doc


def decode_avro(value: bytes | None, max_bytes: int, schemas: Mapping[int, Any]) -> dict[str, Any]:
    """Decode a Confluent-framed Avro value with a schema the loop has already fetched
    (``schemas``: a :class:`router.codec.Codec`, or parsed schemas by id)."""
    if value is None:
        raise DecodeError("the record has no value (tombstone); expected registry-framed Avro", code=codes.DECODE_EMPTY)
    if len(value) > max_bytes:
        raise DecodeError(f"{len(value)} bytes is over the source's max_bytes {max_bytes}", code=codes.DECODE_TOO_LARGE)
    try:
        doc = codec.decode(value, schemas)
    except codec.UnknownSchema as exc:
        raise DecodeError(str(exc), code=codes.DECODE_UNKNOWN_SCHEMA) from None
    except ValueError as exc:  # not framed, or corrupt Avro
        raise DecodeError(str(exc)[:300], code=codes.DECODE_AVRO) from None
    if not isinstance(doc, dict):
        raise DecodeError("the Avro value is not a record", code=codes.DECODE_NOT_OBJECT)
    return doc


def internal_error(stage: InternalStage, exc: BaseException) -> RecordError:
    """An unforeseen exception on one record, as that record's error: ``internal.<stage>``, with
    the exception's type in the message (its text is cut: it may quote the record)."""
    error = InternalError(f"{stage} failed unexpectedly: {type(exc).__name__}: {str(exc)[:200]}",
                          code=codes.internal(stage))
    error.stage = stage
    return error


def encode_avro(record: dict[str, Any], schema_id: int, write: Writer) -> bytes:
    """Confluent wire format: magic 0, 4-byte big-endian schema id, Avro binary (``write`` comes
    from router.spec.avro_writer: fastavro's bytes, compiled per schema)."""
    try:
        body = write(record)
    except (ValueError, TypeError) as exc:
        message = f"record does not fit the output schema: {exc}"[:300]
        raise EncodeError(message, code=codes.ENCODE_SCHEMA_MISMATCH) from None
    return codec.frame(schema_id, body)


def prepare(inbound: Inbound, table: RoutingTable, avro_schemas: Mapping[int, Any] | None = None,
            now_ms: int | None = None) -> Prepared:
    """Run the pure stages over one record; never raises for bad input."""
    hdrs = h.to_dict(inbound.headers)
    result = Prepared(inbound, tenant=hdrs.get(h.TENANT, ""))
    integrations = table.by_topic.get(inbound.topic, ())
    if not integrations:
        result.ignored = True
        return result
    source = integrations[0].source
    try:
        if source.format == "avro":
            event = decode_avro(inbound.value, source.max_bytes, avro_schemas or {})
        else:
            event = decode_json(inbound.value, source.max_bytes)
        tenant = result.tenant
        if not tenant:
            raise ValidateError(f"header {h.TENANT} is missing; the gateway sets it",
                                code=codes.VALIDATE_MISSING_TENANT)
        received_at = _received_at(hdrs, inbound, now_ms)
    except RecordError as exc:
        result.failures.append(Failure(exc))
        return result
    except Exception as exc:  # a record is the unit of failure: never the worker's
        result.failures.append(Failure(internal_error("decode", exc)))
        return result
    # A replayed record that names its integration goes back to that one only.
    only = hdrs.get(h.INTEGRATION) if h.REPLAY_COUNT in hdrs else None
    for integration in integrations:
        if only and integration.name != only:
            continue
        src = integration.source
        event_type = _read(src, "type", src.get_type, event, hdrs) if src.get_type is not None else None
        if not src.wants(event_type if isinstance(event_type, str) else None, tenant):
            continue
        try:
            result.candidates.append(_candidate(integration, event, inbound, hdrs, tenant, received_at, table))
        except RecordError as exc:
            result.failures.append(Failure(exc, integration.name))
        except Exception as exc:  # unforeseen (e.g. RecursionError on hostile nesting): this record's DLQ entry
            result.failures.append(Failure(internal_error("map", exc), integration.name))
    result.ignored = not result.candidates and not result.failures
    return result


def _read(src: Source, field: str, get: Getter, event: dict[str, Any], hdrs: dict[str, str]) -> Any:
    """A source field's value: from the record's header when the spec names one (``$event_id``),
    else from the body; MISSING when absent or empty."""
    header = src.from_headers.get(field) if src.from_headers else None
    if header is None:
        return get(event)
    return hdrs.get(header) or MISSING


def _candidate(integration: Integration, event: dict[str, Any], inbound: Inbound, hdrs: dict[str, str],
               tenant: str, received_at: int, table: RoutingTable) -> Candidate:
    src = integration.source
    event_id = _read(src, "event_id", src.get_event_id, event, hdrs)
    if type(event_id) is not str:
        if event_id is MISSING or event_id is None or isinstance(event_id, _CONTAINERS):
            raise ValidateError(f"event id missing at {src.event_id_path}", code=codes.VALIDATE_MISSING_EVENT_ID)
        event_id = str(event_id)
    elif not event_id:
        raise ValidateError(f"event id missing at {src.event_id_path}", code=codes.VALIDATE_MISSING_EVENT_ID)
    if "\ufffd" in event_id and "event_id" in src.from_headers:  # an undecodable header: never guess an id
        raise ValidateError(f"{src.from_headers['event_id']} is not UTF-8 text", code=codes.VALIDATE_BAD_HEADER)
    if len(event_id) > h.MAX_EVENT_ID_CHARS:
        raise ValidateError(f"event id at {src.event_id_path} has {len(event_id)} characters; at most "
                            f"{h.MAX_EVENT_ID_CHARS} are accepted", code=codes.VALIDATE_EVENT_ID_TOO_LONG)
    entity_key: str | None = None
    if src.get_entity_key is not None:
        raw_key = _read(src, "entity_key", src.get_entity_key, event, hdrs)
        if type(raw_key) is str:
            entity_key = raw_key or None
        elif raw_key is not MISSING and raw_key is not None and not isinstance(raw_key, _CONTAINERS):
            entity_key = str(raw_key)
        if entity_key is not None and len(entity_key) > h.MAX_ENTITY_KEY_CHARS:
            raise ValidateError(f"entity key at {src.entity_key_path} has {len(entity_key)} characters; at most "
                                f"{h.MAX_ENTITY_KEY_CHARS} are accepted", code=codes.VALIDATE_ENTITY_KEY_TOO_LONG)
    version: float | None = None
    if src.get_version is not None:
        raw_version = _read(src, "version", src.get_version, event, hdrs)
        if raw_version is MISSING or raw_version is None:
            raise ValidateError(f"version missing at {src.version_path}", code=codes.VALIDATE_MISSING_VERSION)
        try:
            version = version_number(raw_version)
        except MappingError as exc:
            raise ValidateError(f"version at {src.version_path}: {exc}", code=codes.VALIDATE_BAD_VERSION) from None
        if entity_key is None:
            raise ValidateError(f"entity key missing at {src.entity_key_path}; ordering needs it",
                                code=codes.VALIDATE_MISSING_ENTITY_KEY)
    record = integration.mapper(event, Meta(tenant, src.name, event_id, integration.name, received_at))
    try:
        value = encode_avro(record, table.schema_ids.get(integration.name, 0), integration.schema.writer)
    except RecordError:
        raise
    except Exception as exc:
        raise internal_error("encode", exc) from None
    fixed = _FIXED_HEADERS.get((tenant, integration.name))
    if fixed is None:
        fixed = _fixed_headers(tenant, integration)
    out_headers = [fixed[0], fixed[1], (h.EVENT_ID, event_id.encode()), fixed[2],
                   (h.RECEIVED_AT, str(received_at).encode())]
    trace = hdrs.get(h.TRACEPARENT)
    if trace is not None:
        out_headers.append((h.TRACEPARENT, trace.encode()))
    key = entity_key.encode() if entity_key is not None else inbound.key
    return Candidate(integration, tenant, event_id, entity_key, version, key, value, out_headers, record)


Header = tuple[str, bytes]
# The output headers that are the same for every record of a (tenant, integration): made once and
# shared (tuples are immutable; a record's list of headers is its own). Tenants come from a header,
# so the cache is bounded: past the bound it starts afresh.
_FIXED_HEADERS: dict[tuple[str, str], tuple[Header, Header, Header]] = {}
_FIXED_HEADERS_MAX = 4096


def _fixed_headers(tenant: str, integration: Integration) -> tuple[Header, Header, Header]:
    """``router-tenant``, ``router-source`` and ``router-integration`` of (tenant, integration)."""
    if len(_FIXED_HEADERS) >= _FIXED_HEADERS_MAX:
        _FIXED_HEADERS.clear()
    fixed = ((h.TENANT, tenant.encode()), (h.SOURCE, integration.source.name_bytes),
             (h.INTEGRATION, integration.name_bytes))
    _FIXED_HEADERS[tenant, integration.name] = fixed
    return fixed


_EPOCH_MS_DIGITS = 16  # epoch ms fit in 13 digits until the year 2286
_CONTAINERS = (dict, list)  # a tuple: ``dict | list`` in isinstance builds a union object per call


def _received_at(hdrs: dict[str, str], inbound: Inbound, now_ms: int | None) -> int:
    raw = hdrs.get(h.RECEIVED_AT)
    if raw is not None:
        if not (raw.isascii() and raw.isdigit() and len(raw) <= _EPOCH_MS_DIGITS):
            raise ValidateError(f"header {h.RECEIVED_AT} is not epoch milliseconds: {raw[:40]!r}",
                                code=codes.VALIDATE_BAD_HEADER)
        return int(raw)
    if inbound.timestamp > 0:
        return inbound.timestamp
    return now_ms if now_ms is not None else int(time.time() * 1000)


def claim_for(candidate: Candidate, coords: str, prefix: str, hash_tags: bool = False) -> Claim:
    """The dedupe + ordering question for one candidate (see router.pipeline.state).

    With ``hash_tags`` (Redis Cluster) both keys carry one tag right after the prefix, before any
    text from the record, so one script call on one node can read and write both: the tag is a
    bucket of the watermark key when the integration orders (a re-send is deduped when it names
    the same entity, as it does), else of the dedupe key (docs/redis.md)."""
    integration = candidate.integration
    version = candidate.version
    dedupe = (f"dk:{candidate.tenant}:{integration.source.name}:{candidate.event_id}"
              if integration.dedupe_enabled else None)
    order = f"wm:{candidate.tenant}:{integration.name}:{candidate.entity_key}" if version is not None else None
    if hash_tags:
        prefix = f"{prefix}{hash_tag(order or dedupe or '')}"
    return Claim(
        f"{prefix}{dedupe}" if dedupe is not None else None,
        integration.name, coords, integration.dedupe_ttl_ms,
        f"{prefix}{order}" if order is not None else None,
        version, integration.ordering_ttl_ms)


TAG_BUCKETS = 4096  # spread over a cluster's 16384 slots: no master above ~35% even with 3


def hash_tag(anchor: str) -> str:
    """``{r<bucket>}``: a Redis Cluster hash tag chosen by ``anchor`` (stable across processes)."""
    return f"{{r{zlib.crc32(anchor.encode('utf-8', 'surrogatepass')) % TAG_BUCKETS}}}"


def dlq_headers(inbound: Inbound, error: RecordError, *, group: str, integration: str | None,
                now_ms: int) -> list[tuple[str, bytes | None]]:
    """A route-stage dead letter's headers (``router.deadletters.error_headers``)."""
    return error_headers(inbound.headers, topic=inbound.topic, partition=inbound.partition, offset=inbound.offset,
                         timestamp_ms=inbound.timestamp, code=error.code, message=error.message, stage=error.stage,
                         group=group, integration=integration, now_ms=now_ms)
