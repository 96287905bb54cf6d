"""Plain data passed between the loop and the pure stages."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, NamedTuple

from router.errors import RecordError
from router.spec.model import Integration


@dataclass(slots=True)
class Inbound:
    """One consumed Kafka record, copied out of librdkafka's Message."""

    topic: str
    partition: int
    offset: int
    timestamp: int  # ms
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)

    @property
    def coords(self) -> str:
        """``topic:partition:offset``: what makes a redelivery of the *same* record recognisable."""
        return f"{self.topic}:{self.partition}:{self.offset}"


@dataclass(slots=True)
class Candidate:
    """A mapped, encoded output waiting for its dedupe and ordering decision."""

    integration: Integration
    tenant: str
    event_id: str
    entity_key: str | None
    version: float | None
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    record: dict[str, Any]  # the mapped record before encoding (certification compares it)


@dataclass(slots=True)
class Failure:
    """A record (or one integration's share of it) that goes to the DLQ."""

    error: RecordError
    integration: str | None = None


@dataclass(slots=True)
class Prepared:
    """What the pure stages made of one inbound record."""

    inbound: Inbound
    candidates: list[Candidate] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    ignored: bool = False
    tenant: str = ""  # from the router-tenant header ("" when absent)


class Decision(Enum):
    """Outcome of the dedupe + ordering check for one candidate."""

    ROUTE = "r"
    DUPLICATE = "d"
    STALE = "s"


class Claim(NamedTuple):
    """What the state store needs to decide one candidate (one Redis round trip per batch).

    A NamedTuple: one is built per routed record, so it must be cheap to make.
    """

    dedupe_key: str | None
    field: str  # the integration: dedupe is per (tenant, source, event id, integration)
    coords: str
    dedupe_ttl_ms: int
    order_key: str | None
    version: float | None
    order_ttl_ms: int
