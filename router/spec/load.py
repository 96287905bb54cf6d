"""Load a folder of integration specs: YAML → JSON Schema → semantic checks → compiled Integrations.

Every problem in every file is collected and reported with file, line and YAML path, so a
partner engineer fixes them all in one pass. Nothing is half-loaded: any error fails the load.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import jsonschema
from jsonschema.exceptions import ValidationError, best_match

from router import codes
from router import headers as h
from router.errors import RouterError, SpecError
from router.spec.avro import AvroCatalog
from router.spec.connection_use import problems as connection_problems
from router.spec.durations import parse_duration
from router.spec.mapping import _Collector, compile_record
from router.spec.model import (
    DEFAULT_DEDUPE_TTL_S,
    DEFAULT_MAX_BYTES,
    DEFAULT_ORDERING_TTL_S,
    Destination,
    Integration,
    Source,
)
from router.spec.paths import MISSING, compile_getter
from router.spec.yamlsrc import SourceDoc, format_path, load_yaml_file

T = TypeVar("T")


class SpecErrors(RouterError):
    """Several spec problems at once; ``str()`` lists them one per line.

    Its code is the problems' code when they share one (a lone alias bomb is ``spec.yaml_aliases``
    wherever it is reported); else it is ``spec.invalid`` and each line ends with its own ``[code]``.
    """

    code = codes.SPEC_INVALID

    def __init__(self, errors: list[SpecError]) -> None:
        self.errors = errors
        distinct = {e.code for e in errors}
        if len(distinct) == 1:
            super().__init__("\n".join(str(e) for e in errors), code=distinct.pop())
        else:
            super().__init__("\n".join(f"{e}  [{e.code}]" for e in errors))


@dataclass(frozen=True)
class Catalog:
    """Every loaded integration plus the Avro schemas they use."""

    integrations: tuple[Integration, ...]
    schemas: AvroCatalog

    def source_topics(self) -> list[str]:
        return sorted({i.source.topic for i in self.integrations})

    def delivery_topics(self) -> list[str]:
        return sorted({i.destination.topic for i in self.integrations})

    def all_topics(self) -> list[str]:
        """Every data topic the integrations name, each with its DLQ beside it (DESIGN §2)."""
        base = self.source_topics() + self.delivery_topics()
        return sorted(set(base) | {f"{t}.dlq" for t in base})

    def by_name(self, name: str) -> Integration:
        for integration in self.integrations:
            if integration.name == name:
                return integration
        raise SpecError(f"no integration named {name!r}; known: {', '.join(i.name for i in self.integrations)}")


@cache
def json_schema() -> dict[str, Any]:
    """The spec's JSON Schema (draft 2020-12), shipped inside the package."""
    text = resources.files("router.spec").joinpath("integration.schema.json").read_text()
    return dict(json.loads(text))


def load_catalog(integrations_dir: Path, schemas_dir: Path) -> Catalog:
    """Load and compile every ``*.yaml``/``*.yml`` in ``integrations_dir``; raise SpecErrors listing all problems."""
    if not integrations_dir.is_dir():  # checked first: a missing folder is one clear line, not a schema error
        raise SpecError(f"integration folder {integrations_dir} does not exist; pass --integrations DIR",
                        file=str(integrations_dir))
    schemas = AvroCatalog.load(schemas_dir)
    loaded = load_folder(integrations_dir, "integration", "--integrations", json_schema(),
                         lambda doc, file: compile_integration(doc, file, schemas), lambda i: i.name)
    return Catalog(tuple(loaded), schemas)


def load_folder(folder: Path, kind: str, flag: str, schema: dict[str, Any],
                compile_one: Callable[[SourceDoc, Path], tuple[T | None, list[SpecError]]],
                name_of: Callable[[T], str]) -> list[T]:
    """Every ``*.yaml``/``*.yml`` spec in ``folder``: YAML → JSON Schema → ``compile_one``, names unique.

    Every problem in every file is collected (file, line, YAML path, code) and raised together as
    SpecErrors, so a spec author fixes them all in one pass; nothing is half-loaded.
    """
    if not folder.is_dir():
        raise SpecError(f"{kind} folder {folder} does not exist; pass {flag} DIR", file=str(folder))
    errors: list[SpecError] = []
    loaded: list[T] = []
    seen: dict[str, str] = {}
    for file in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
        try:
            doc = load_yaml_file(file)  # bounded: size, depth, aliases; every failure a located SpecError
        except SpecError as exc:
            errors.append(exc)
            continue
        file_errors = validate_against(doc, schema)
        if file_errors:
            errors.extend(file_errors)
            continue
        item, compile_errors = compile_one(doc, file)
        errors.extend(compile_errors)
        if item is None:
            continue
        name = name_of(item)
        if name in seen:
            errors.append(doc.error(("name",), f"duplicate {kind} name {name!r} (also in {seen[name]}); "
                                    "names must be unique", codes.SPEC_DUPLICATE_NAME))
            continue
        seen[name] = str(file)
        loaded.append(item)
    if errors:
        raise SpecErrors(errors)
    return loaded


def validate_against(doc: SourceDoc, schema: dict[str, Any]) -> list[SpecError]:
    """JSON Schema problems of one document, each located and phrased for a person."""
    validator = jsonschema.Draft202012Validator(schema)
    out: list[SpecError] = []
    for error in sorted(validator.iter_errors(doc.value), key=lambda e: list(map(str, e.absolute_path))):
        out.extend(explain_schema_error(doc, error))
    return out


def validate_document(doc: SourceDoc) -> list[SpecError]:
    """JSON Schema problems of one integration spec."""
    return validate_against(doc, json_schema())


def _schema_of(error: ValidationError) -> Mapping[str, Any]:
    return error.schema if isinstance(error.schema, Mapping) else {}


def explain_schema_error(doc: SourceDoc, error: ValidationError) -> list[SpecError]:
    path = tuple(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = sorted(_schema_of(error).get("properties", {}))
        extra = [k for k in error.instance if k not in allowed and not str(k).startswith("x-")]
        return [doc.error((*path, k), f"unknown key {k!r}; allowed here: {', '.join(allowed)}", codes.SPEC_UNKNOWN_KEY)
                for k in extra]
    if error.validator == "oneOf" and error.context:
        # A field given as a mapping: explain the mapping branch's problem, not "not valid under any".
        branch = 1 if isinstance(error.instance, dict) else 0
        sub = [e for e in error.context if e.schema_path and e.schema_path[0] == branch] or list(error.context)
        out: list[SpecError] = []
        for e in sub:
            out.extend(explain_schema_error(doc, e))  # e.absolute_path already includes the parent's path
        return out[:3]
    if error.validator == "required":
        return [doc.error(path, f"missing required key: {error.message.split(' is a required')[0]}",
                          codes.SPEC_MISSING_KEY)]
    if error.validator == "enum":
        choices = ", ".join(map(str, list(error.validator_value)))  # type: ignore[arg-type]
        return [doc.error(path, f"{error.instance!r} is not one of: {choices}", codes.SPEC_INVALID_VALUE)]
    if error.validator == "type":
        return [doc.error(path, f"expected {error.validator_value}, got {type(error.instance).__name__} "
                                f"{error.instance!r}"[:200], codes.SPEC_WRONG_TYPE)]
    if error.validator == "pattern":
        hint = _schema_of(error).get("description", "")
        return [doc.error(path, f"{error.instance!r} is not in the expected form" + (f" ({hint})" if hint else ""),
                          codes.SPEC_INVALID_VALUE)]
    best = best_match([error])
    return [doc.error(path, best.message, codes.SPEC_INVALID_VALUE)]


def compile_integration(doc: SourceDoc, file: Path, schemas: AvroCatalog) -> tuple[Integration | None, list[SpecError]]:
    """Semantic checks and compilation of a schema-valid spec."""
    spec = doc.value
    col = _Collector(doc)
    src = spec["source"]
    try:
        source = _source(src)
    except ValueError as exc:
        return None, [doc.error(("source",), str(exc))]
    if source.format == "avro" and not source.topic.startswith("cohort."):
        col.error(("source", "format"), "format avro is for registry-framed topics such as cohort.<audience>")
    mapping = spec["mapping"]
    schema = schemas.get(mapping["schema"])
    mapper = None
    if schema is None:
        known = ", ".join(schemas.names()) or "none"
        col.error(("mapping", "schema"), f"no Avro schema {mapping['schema']!r} in the schema folder "
                  f"(expected file {mapping['schema']}.avsc; known: {known})", codes.SPEC_UNKNOWN_SCHEMA)
    else:
        mapper = compile_record(mapping["fields"], schema.raw, ("mapping", "fields"), col, {})
    durations: dict[str, float] = {}
    for section, key, default in (("dedupe", "ttl", DEFAULT_DEDUPE_TTL_S), ("ordering", "ttl", DEFAULT_ORDERING_TTL_S)):
        try:
            durations[section] = parse_duration(spec.get(section, {}).get(key, default))
        except ValueError as exc:
            col.error((section, key), str(exc))
    auth = spec.get("destination", {}).get("http", {}).get("auth", {})
    for key in SECRET_AUTH_KEYS:
        value = auth.get(key)
        if isinstance(value, str) and not value.startswith(("env:", "file:")):  # the value is never echoed
            col.error(("destination", "http", "auth", key), f"a secret is written in the spec: give {key} as a "
                      "reference, env:NAME (an environment variable) or file:/path (e.g. a mounted secret)",
                      codes.SPEC_PLAIN_SECRET)
    for where, message in connection_problems(spec.get("destination", {}).get("http") or {}):
        col.error(("destination", "http", *where), message, codes.SPEC_INVALID_VALUE)
    fixtures = spec.get("fixtures")
    fixtures_dir = (file.parent / fixtures).resolve() if fixtures else None
    if fixtures_dir is not None and not fixtures_dir.is_dir():
        col.error(("fixtures",), f"fixtures folder {fixtures} does not exist next to {file.name}")
    if col.errors or schema is None or mapper is None:
        return None, [e for e in col.errors if isinstance(e, SpecError)]
    dest = spec["destination"]
    integration = Integration(
        name=spec["name"],
        version=spec["version"],
        file=file,
        source=source,
        on_stale=spec.get("ordering", {}).get("on_stale", "drop"),
        ordering_ttl_s=durations["ordering"],
        dedupe_enabled=spec.get("dedupe", {}).get("enabled", True),
        dedupe_ttl_s=durations["dedupe"],
        schema=schema,
        mapper=mapper,
        destination=Destination(name=dest["name"], http=dest.get("http", {})),
        fixtures=fixtures_dir,
        raw=spec,
        generated=tuple(col.generated),
    )
    return integration, []


# destination.http.auth keys that hold secrets: references only (docs/spec.md), checked at load.
SECRET_AUTH_KEYS = ("token", "key", "password", "client_secret", "secret")

# Names a source field may use instead of a body path: the headers the gateway writes on ingest records.
HEADER_NAMES = {"$event_id": h.EVENT_ID, "$tenant": h.TENANT, "$received_at": h.RECEIVED_AT}
_HEADER_PATH = re.compile(r"\$header\.([a-z0-9][a-z0-9-]{0,63})")


def header_of(path: str) -> str | None:
    """The Kafka header a ``$``-path names (``$event_id``, ``$header.<name>``), None for a body path;
    ValueError for a ``$`` name that means nothing."""
    if not path.startswith("$"):
        return None
    if path in HEADER_NAMES:
        return HEADER_NAMES[path]
    if (match := _HEADER_PATH.fullmatch(path)) is not None:
        return match.group(1)
    raise ValueError(f"unknown name {path!r}: use a dotted body path (data.id), $event_id (the event id the gateway "
                     f"wrote in router-event-id, e.g. from a webhook-id or X-GitHub-Delivery header), $tenant, "
                     f"$received_at, or $header.<name> (a header of the ingest record, lowercase)")


def _no_body_value(_doc: Any) -> Any:
    return MISSING


def _source(src: dict[str, Any]) -> Source:
    from_headers: dict[str, str] = {}

    def getter(key: str) -> Any:
        path = src.get(key)
        if path is None:
            return None
        try:
            header = header_of(path)
            if header is not None:
                from_headers[key] = header
                return _no_body_value
            return compile_getter(path)
        except ValueError as exc:
            raise ValueError(f"source.{key}: {exc}") from None

    types = src.get("types", ["*"])
    tenants = src.get("tenants", ["*"])
    return Source(
        topic=src["topic"],
        format=src.get("format", "json"),
        type_path=src.get("type"),
        get_type=getter("type"),
        types=None if "*" in types else frozenset(types),
        tenants=None if "*" in tenants else frozenset(tenants),
        event_id_path=src["event_id"],
        get_event_id=getter("event_id"),
        entity_key_path=src.get("entity_key"),
        get_entity_key=getter("entity_key"),
        version_path=src.get("version"),
        get_version=getter("version"),
        max_bytes=int(src.get("max_bytes", DEFAULT_MAX_BYTES)),
        from_headers=from_headers,
    )


__all__ = ["Catalog", "SpecErrors", "format_path", "json_schema", "load_catalog", "validate_document"]
