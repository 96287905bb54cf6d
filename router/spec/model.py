"""A compiled integration: everything the hot path needs, as plain values and callables."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from router.spec.avro import AvroSchema
from router.spec.generated import GeneratedCode
from router.spec.mapping import RecordMapper
from router.spec.paths import Getter

OnStale = Literal["drop", "deliver", "dlq"]

DEFAULT_DEDUPE_TTL_S = 24 * 3600.0
DEFAULT_ORDERING_TTL_S = 30 * 24 * 3600.0
DEFAULT_MAX_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Source:
    """Where an integration's events come from and how to read their identity."""

    topic: str
    format: Literal["json", "avro"]
    type_path: str | None
    get_type: Getter | None
    types: frozenset[str] | None  # None: every type
    tenants: frozenset[str] | None  # None: every tenant
    event_id_path: str
    get_event_id: Getter
    entity_key_path: str | None
    get_entity_key: Getter | None
    version_path: str | None
    get_version: Getter | None
    max_bytes: int
    # Identity read from the record's Kafka headers instead of its body (`event_id: $event_id`,
    # `entity_key: $header.<name>`): field ("event_id", "entity_key", "version", "type") -> header.
    from_headers: dict[str, str] = field(default_factory=dict)

    @cached_property
    def name(self) -> str:
        """``zendesk`` for ``ingest.zendesk``; ``vip`` for ``cohort.vip``."""
        return self.topic.split(".", 1)[1]

    @cached_property
    def name_bytes(self) -> bytes:
        return self.name.encode()

    def wants(self, event_type: str | None, tenant: str) -> bool:
        """Does this source take an event of ``event_type`` for ``tenant``?"""
        if self.tenants is not None and tenant not in self.tenants:
            return False
        return self.types is None or event_type in self.types


@dataclass(frozen=True)
class Destination:
    """Where mapped records go: ``delivery.<name>``, and how the delivery worker calls the partner."""

    name: str
    http: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def topic(self) -> str:
        return f"delivery.{self.name}"

    @property
    def subject(self) -> str:
        """Confluent TopicNameStrategy subject of the delivery topic's values (DESIGN §3)."""
        return f"{self.topic}-value"


@dataclass(frozen=True)
class Integration:
    """One integration spec, validated and compiled."""

    name: str
    version: int
    file: Path
    source: Source
    on_stale: OnStale
    ordering_ttl_s: float
    dedupe_enabled: bool
    dedupe_ttl_s: float
    schema: AvroSchema
    mapper: RecordMapper
    destination: Destination
    fixtures: Path | None
    raw: dict[str, Any] = field(repr=False, default_factory=dict)
    # The mapping's generated functions (nested records first), for `router spec show-code`.
    generated: tuple[GeneratedCode, ...] = field(repr=False, compare=False, default=())

    @cached_property
    def name_bytes(self) -> bytes:
        return self.name.encode()

    @cached_property
    def dedupe_ttl_ms(self) -> int:
        return int(self.dedupe_ttl_s * 1000)

    @cached_property
    def ordering_ttl_ms(self) -> int:
        return int(self.ordering_ttl_s * 1000)
