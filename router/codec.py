"""Registry-framed Avro, the one codec every reader and writer uses (DESIGN §2, §6).

The Confluent wire format: magic byte 0, the schema's registry id as 4 bytes big-endian, then the
Avro binary body. :func:`decode` is pure: it reads with schemas already fetched (a mapping from
id to fastavro's parsed schema), so a loop fetches what a batch needs first (:meth:`Codec.missing`,
:meth:`Codec.fetch`) and then decodes without I/O. Each failure is a :class:`ValueError` subclass
with a precise message; callers map it to their own DLQ code.

Reading goes to fastavro's compiled reader below ``schemaless_reader`` (``_read_data``) with the
schema's named types and the options made once per schema id; ``schemaless_reader`` re-parses the
schema and rebuilds both on every call. Measured (``python -m bench.codec_bench``, Incident
records, interleaved best of 15 x 20,000, three runs on a shared 2-core VM): schemaless_reader
4.9-5.6 µs per record, with ``return_record_name`` off 4.9-5.4, on a BytesIO positioned past the
header 4.9-5.2, ``_read_data`` 4.5-5.1 (8-10% less). The record's own reading dominates; the
public function stays the fallback for a fastavro release without the private one, and for
plain mappings of parsed schemas (fixtures).
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable, Mapping
from typing import Any

import fastavro
import orjson

MAGIC = b"\x00"
HEADER = struct.Struct(">bI")
HEADER_SIZE = HEADER.size  # 5

try:  # fastavro's compiled reader below schemaless_reader (fastavro 1.13; checked at import)
    from fastavro._read import _default_named_schemas, _read_data  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - a fastavro without them: the public reader
    _read_data = _default_named_schemas = None

_OPTIONS = {"return_record_name": False, "return_record_name_override": False, "handle_unicode_errors": "strict",
            "return_named_type": False, "return_named_type_override": False}
Reader = Callable[[io.BytesIO], Any]


class NotFramed(ValueError):
    """The value is not registry-framed Avro (no value, too short, or no magic byte 0)."""


class UnknownSchema(ValueError):
    """The value's schema id is not known (not in the registry, or it could not be fetched)."""

    def __init__(self, message: str, schema_id: int) -> None:
        super().__init__(message)
        self.schema_id = schema_id


class InvalidAvro(ValueError):
    """The body does not decode with the schema its id names."""


def schema_id_of(value: bytes | None) -> int | None:
    """The registry id in a framed value, or None if it is not framed."""
    if value is None or len(value) < HEADER_SIZE or value[0] != 0:
        return None
    return int(HEADER.unpack_from(value)[1])


def frame(schema_id: int, body: bytes) -> bytes:
    """The framed value of an Avro ``body`` written with registry schema ``schema_id``."""
    return HEADER.pack(0, schema_id) + body


def encode(record: Any, schema_id: int, write: Callable[[Any], bytes]) -> bytes:
    """Frame ``write(record)``: ``write`` is a compiled writer (``router.spec.avro_writer``) or
    :func:`writer_of`; its exceptions (ValueError, TypeError for a record that does not fit) pass."""
    return HEADER.pack(0, schema_id) + write(record)


def writer_of(parsed: Any) -> Callable[[Any], bytes]:
    """``write(record) -> bytes`` with fastavro's writer and a parsed schema (fixtures, tools)."""

    def write(record: Any) -> bytes:
        out = io.BytesIO()
        fastavro.schemaless_writer(out, parsed, record)
        return out.getvalue()

    return write


def parse(schema_str: str | None) -> Any:
    """fastavro's parsed schema of a registry answer's ``schema_str`` (fastavro's errors if invalid)."""
    return fastavro.parse_schema(orjson.loads(schema_str or "null"))


def decode(value: bytes | None, schemas: Mapping[int, Any]) -> Any:
    """Decode a framed value with a schema already fetched (``schemas``: id → fastavro parsed
    schema). Raises :class:`NotFramed`, :class:`UnknownSchema` or
    :class:`InvalidAvro`; never anything else."""
    if value is None or len(value) < HEADER_SIZE or value[0] != 0:
        raise NotFramed("not Confluent-framed Avro (no magic byte 0 + 4-byte schema id)")
    schema_id = HEADER.unpack_from(value)[1]
    schema = schemas.get(schema_id)
    if schema is None:
        raise UnknownSchema(f"schema id {schema_id} is not in the registry", schema_id)
    body = io.BytesIO(value)
    body.seek(HEADER_SIZE)
    try:
        if type(schemas) is Codec:
            return schemas._readers[schema_id](body)
        return fastavro.schemaless_reader(body, schema, None)
    except Exception as exc:  # fastavro raises many types on corrupt input
        raise InvalidAvro(f"invalid Avro for schema id {schema_id}: {exc}") from None


class Codec(Mapping[int, Any]):
    """Schemas by registry id, each fetched and parsed once, and decoding with them.

    ``fetch(schema_id) -> schema_str`` asks the registry (e.g. :func:`registry_fetch`); it is
    called only by :meth:`fetch` and :meth:`decode_fetching`, so an event loop can run it on
    another thread and keep :meth:`decode` free of I/O."""

    def __init__(self, fetch: Callable[[int], str | None] | None = None) -> None:
        self._fetch = fetch
        self._schemas: dict[int, Any] = {}
        self._readers: dict[int, Reader] = {}

    def __getitem__(self, schema_id: int) -> Any:
        return self._schemas[schema_id]

    def __iter__(self) -> Any:
        return iter(self._schemas)

    def __len__(self) -> int:
        return len(self._schemas)

    def add(self, schema_id: int, parsed: Any) -> None:
        """Hold a schema known without the registry (fixtures: a parsed fastavro schema)."""
        self._schemas[schema_id] = parsed
        self._readers[schema_id] = reader_of(parsed)

    def missing(self, value: bytes | None) -> int | None:
        """The schema id ``value`` names when it is framed and that schema is not held yet."""
        schema_id = schema_id_of(value)
        return schema_id if schema_id is not None and schema_id not in self._schemas else None

    def fetch(self, schema_id: int) -> Any:
        """Fetch and parse ``schema_id`` if it is not held. The registry's own exceptions pass
        (callers tell a 404 from an outage); a schema that does not parse raises ValueError."""
        schema = self._schemas.get(schema_id)
        if schema is None:
            if self._fetch is None:
                raise UnknownSchema(f"schema id {schema_id} is not known and no registry is configured", schema_id)
            schema = parse(self._fetch(schema_id))
            self.add(schema_id, schema)
        return schema

    def decode(self, value: bytes | None) -> Any:
        """:func:`decode` with the schemas held; no I/O."""
        return decode(value, self)

    def decode_fetching(self, value: bytes | None) -> Any:
        """:func:`decode`, fetching the schema first if needed; a failed fetch is :class:`UnknownSchema`
        with the registry's reason."""
        schema_id = self.missing(value)
        if schema_id is not None:
            try:
                self.fetch(schema_id)
            except Exception as exc:  # unknown id, registry down, unparsable schema: all say "unknown"
                raise UnknownSchema(f"schema id {schema_id} could not be fetched: {exc}", schema_id) from None
        return decode(value, self)


def reader_of(parsed: Any) -> Reader:
    """``read(body) -> datum`` for a parsed schema, reading from ``body``'s position."""
    if _read_data is None or _default_named_schemas is None:  # pragma: no cover
        return lambda body: fastavro.schemaless_reader(body, parsed, None)
    named = _default_named_schemas()
    fastavro.parse_schema(parsed, named["writer"])  # registers its named types, as schemaless_reader does
    return lambda body: _read_data(body, parsed, named, None, _OPTIONS)


def registry_fetch(registry: Any) -> Callable[[int], str | None]:
    """``fetch`` for :class:`Codec` from a ``confluent_kafka.schema_registry.SchemaRegistryClient``."""

    def fetch(schema_id: int) -> str | None:
        return registry.get_schema(schema_id).schema_str  # type: ignore[no-any-return]

    return fetch
