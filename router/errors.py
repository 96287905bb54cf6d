"""One error root with stable codes.

Every failure the router reports to a person or writes into a DLQ header is a
``RouterError``. Its ``code`` is a stable, dotted machine code (``<stage>.<reason>``), declared
once in the catalogue ``router.codes`` (stage, retryable or terminal, meaning),
that becomes the ``router-error-code`` header and a metric label; its message says
what went wrong, where, and what to do. Records skipped on purpose (duplicates,
superseded versions, event types nobody wants) are *outcomes*, never exceptions.

Tree::

    RouterError
    ├── ConfigError            config.*      settings, ports, missing binaries
    ├── SpecError              spec.*        an integration spec that cannot load
    ├── RegistryError          registry.*    schema registry answers
    └── RecordError            (per record; carries the stage that failed)
        ├── DecodeError        decode.*      invalid_json, not_object, avro, too_large
        ├── ValidateError      validate.*    missing_event_id, missing_tenant, bad_version
        ├── OrderError         order.*       stale
        ├── MappingError       map.*         required_missing, type_error
        ├── EncodeError        encode.*      schema_mismatch
        ├── DeliverError       deliver.*     http_4xx, retries_exhausted
        └── InternalError      internal.*    <stage>: an unforeseen exception on one record
"""

from __future__ import annotations

from typing import ClassVar, Literal

from router import codes

Stage = Literal["decode", "validate", "dedupe", "order", "map", "encode", "deliver"]


class RouterError(Exception):
    """Root of every error the router raises on purpose."""

    code: str = codes.ROUTER_ERROR

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.message


class ConfigError(RouterError):
    """Settings, ports, binaries: something about how the router was started."""

    code = codes.CONFIG_INVALID


class SpecError(RouterError):
    """An integration spec that cannot be loaded; ``location`` is ``file:line: yaml.path``."""

    code = codes.SPEC_INVALID

    def __init__(
        self, message: str, *, file: str = "", path: str = "", line: int | None = None, code: str | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.file = file
        self.path = path
        self.line = line

    @property
    def location(self) -> str:
        # One line whatever the file is called: a line break in a name is shown escaped.
        where = self.file.replace("\n", "\\n").replace("\r", "\\r")
        if self.line is not None:
            where += f":{self.line}"
        if self.path:
            where += f": {self.path}"
        return where

    def __str__(self) -> str:
        return f"{self.location}: {self.message}" if self.location else self.message


class RegistryError(RouterError):
    """The schema registry refused or failed a request."""

    code = codes.REGISTRY_ERROR


class RecordError(RouterError):
    """A single record a stage cannot handle: it goes to the DLQ with ``code`` and ``stage``."""

    stage: ClassVar[Stage]
    code = codes.RECORD_ERROR


class DecodeError(RecordError):
    stage = "decode"
    code = codes.DECODE_INVALID_JSON


class ValidateError(RecordError):
    stage = "validate"
    code = codes.VALIDATE_INVALID


class OrderError(RecordError):
    stage = "order"
    code = codes.ORDER_STALE


class MappingError(RecordError):
    stage = "map"
    code = codes.MAP_TYPE_ERROR


class EncodeError(RecordError):
    stage = "encode"
    code = codes.ENCODE_SCHEMA_MISMATCH


class DeliverError(RecordError):
    stage = "deliver"
    code = codes.DELIVER_HTTP_4XX


class InternalError(RecordError):
    """An exception no stage foresaw, raised on one record: that record goes to the DLQ with
    ``internal.<stage>`` and the worker goes on (a record is the unit of failure)."""

    stage: Stage = "map"  # type: ignore[misc]
    code = codes.INTERNAL_MAP
