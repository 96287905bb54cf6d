"""Pure Avro logic for the registry: parse, decide "same schema", check compatibility.

Nothing here touches a socket; the store and the HTTP layer call these functions with plain
data, and ``tests/unit/test_registry_compat.py`` tests them without services.

Why not Avro's Parsing Canonical Form for identity: PCF drops ``default``, ``doc``,
``aliases`` and ``logicalType``. Two schemas that differ only in a field default would then
share one id, and readers of that id would resolve data with the wrong defaults. Identity is
instead the parsed schema written back as JSON with sorted keys and no whitespace: layout,
key order and namespace spelling do not matter, every attribute that changes meaning does.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import avro.errors
import avro.schema
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

from router import codes
from router.errors import RegistryError


class Compatibility(StrEnum):
    """The Confluent compatibility levels."""

    NONE = "NONE"
    BACKWARD = "BACKWARD"
    BACKWARD_TRANSITIVE = "BACKWARD_TRANSITIVE"
    FORWARD = "FORWARD"
    FORWARD_TRANSITIVE = "FORWARD_TRANSITIVE"
    FULL = "FULL"
    FULL_TRANSITIVE = "FULL_TRANSITIVE"

    @property
    def transitive(self) -> bool:
        """True when a new schema is checked against every live version, not only the latest."""
        return self.value.endswith("_TRANSITIVE")

    @property
    def backward(self) -> bool:
        """True when the new schema must read data written with the old ones."""
        return self.value.startswith(("BACKWARD", "FULL"))

    @property
    def forward(self) -> bool:
        """True when the old schemas must read data written with the new one."""
        return self.value.startswith(("FORWARD", "FULL"))


DEFAULT_COMPATIBILITY = Compatibility.BACKWARD


def parse_compatibility(raw: object) -> Compatibility | None:
    """The level named by ``raw`` (any case), or None when it names no level."""
    if not isinstance(raw, str):
        return None
    try:
        return Compatibility(raw.strip().upper())
    except ValueError:
        return None


class InvalidSchemaError(RegistryError):
    """A schema text that is not valid Avro; the message is the parser's."""

    code = codes.REGISTRY_INVALID_SCHEMA


@dataclass(frozen=True)
class AvroSchema:
    """A parsed Avro schema: ``text`` is the compact JSON to store and serve."""

    text: str
    fingerprint: str
    parsed: avro.schema.Schema


def identity_form(parsed: avro.schema.Schema) -> str:
    """The JSON that decides "same schema": sorted keys, no whitespace, every attribute kept."""
    return json.dumps(parsed.to_json(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def fingerprint(parsed: avro.schema.Schema) -> str:
    """SHA-256 (hex) of :func:`identity_form`; equal for schemas that mean the same."""
    return hashlib.sha256(identity_form(parsed).encode()).hexdigest()


def parse_avro(text: str) -> AvroSchema:
    """Parse ``text`` as Avro; raise InvalidSchemaError with the parser's message."""
    try:
        document = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise InvalidSchemaError(f"Invalid schema: not JSON: {exc}") from None
    try:
        parsed = avro.schema.parse(text)
    except (avro.errors.AvroException, TypeError, ValueError, AttributeError, KeyError) as exc:
        # avro raises SchemaParseException for most mistakes, but a few shapes (a list of
        # fields that are not objects, say) surface as plain Python errors from its walk.
        raise InvalidSchemaError(f"Invalid schema: {exc}") from None
    # Keep the submitter's key order (people read it) but drop the layout.
    compact = json.dumps(document, separators=(",", ":"), ensure_ascii=False)
    return AvroSchema(text=compact, fingerprint=fingerprint(parsed), parsed=parsed)


@dataclass(frozen=True)
class CompatibilityResult:
    """Whether a new schema passed, and why not (one message per failing check)."""

    is_compatible: bool
    messages: tuple[str, ...] = ()


def _can_read(reader: avro.schema.Schema, writer: avro.schema.Schema) -> list[str]:
    """Empty when ``reader`` can resolve every datum ``writer`` writes; else the reasons."""
    result = ReaderWriterCompatibilityChecker().get_compatibility(reader, writer)
    if result.compatibility is SchemaCompatibilityType.compatible:
        return []
    kinds = ", ".join(sorted({kind.value for kind in result.incompatibilities})) or "incompatible"
    locations = ", ".join(sorted(result.locations))
    details = "; ".join(sorted(result.messages))
    return [f"{kinds} at {locations}: {details}" if details else f"{kinds} at {locations}"]


def check_pair(level: Compatibility, new: AvroSchema, old: AvroSchema, *, old_version: int | None = None) -> list[str]:
    """Messages for every direction ``level`` requires that ``new`` fails against ``old``."""
    where = f"version {old_version}" if old_version is not None else "the old schema"
    messages: list[str] = []
    if level.backward:
        reasons = _can_read(new.parsed, old.parsed)
        messages += [f"BACKWARD against {where}: the new schema cannot read its data ({m})" for m in reasons]
    if level.forward:
        reasons = _can_read(old.parsed, new.parsed)
        messages += [f"FORWARD against {where}: it cannot read the new schema's data ({m})" for m in reasons]
    return messages


def check_compatibility(
    level: Compatibility, new: AvroSchema, history: Sequence[tuple[int, AvroSchema]]
) -> CompatibilityResult:
    """Check ``new`` against a subject's live ``history`` of (version, schema), oldest first.

    Non-transitive levels look at the latest version only; ``*_TRANSITIVE`` at all of them;
    NONE and an empty history always pass.
    """
    if level is Compatibility.NONE or not history:
        return CompatibilityResult(True)
    against = history if level.transitive else history[-1:]
    messages: list[str] = []
    for version, old in against:
        messages += check_pair(level, new, old, old_version=version)
    return CompatibilityResult(not messages, tuple(messages))
