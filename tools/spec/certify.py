"""`router spec test`: the self-serve certification a partner runs before going live.

A partner writes fixture cases (input event → expected record, or expected failure); the
certification adds probes derived from the spec itself, so every integration is checked for
the same six things: mapping fixtures, required-field failure, duplicate event, out-of-order
event, oversized payload, unknown event type. Cases run through the same pure stages and the
same dedupe/ordering semantics as the route worker (``MemoryState``), so a pass here means
the worker will do the same.
"""

from __future__ import annotations

import decimal
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from router import codec, codes
from router import headers as h
from router.errors import SpecError
from router.pipeline.records import Decision, Inbound
from router.pipeline.stages import RoutingTable, claim_for, prepare
from router.pipeline.state import MemoryState
from router.spec.load import Catalog, validate_against
from router.spec.model import Integration
from router.spec.paths import MISSING, compile_getter, with_value, without
from router.spec.yamlsrc import load_yaml_file

CHECKS = ("mapping fixtures", "required-field failure", "duplicate event", "out-of-order event",
          "oversized payload", "unknown event type")
COHORT_SCHEMA = "router.cohort.CohortMembershipChange"
_FIXTURE_SCHEMA_ID = 1


@dataclass
class Case:
    """One fixture file: an input and what must come of it."""

    name: str
    file: str
    event: Any = None
    raw: bytes | None = None
    tenant: str = "acme"
    headers: dict[str, str] = field(default_factory=dict)
    expect: dict[str, Any] = field(default_factory=dict)


@dataclass
class CheckResult:
    """One line of the checklist."""

    check: str
    passed: bool | None  # None: not applicable to this spec
    detail: str = ""


@dataclass
class Outcome:
    """What the pipeline did with one input for one integration."""

    kind: str  # routed | duplicate | stale | ignored | dlq
    record: dict[str, Any] | None = None
    code: str | None = None

    def describe(self) -> str:
        return f"dlq {self.code}" if self.kind == "dlq" else self.kind


class Harness:
    """Runs inputs through prepare + MemoryState for one integration, as the worker would."""

    def __init__(self, integration: Integration, catalog: Catalog) -> None:
        self.integration = integration
        self.table = RoutingTable.build((integration,), {integration.name: _FIXTURE_SCHEMA_ID})
        self.state = MemoryState()
        self.offset = 0
        self.avro_schemas: dict[int, Any] = {}
        if integration.source.format == "avro":
            schema = catalog.schemas.get(COHORT_SCHEMA)
            if schema is None:
                raise SpecError(f"avro sources need {COHORT_SCHEMA}.avsc in the schema folder")
            self.avro_schemas[_FIXTURE_SCHEMA_ID] = schema.parsed

    def encode_input(self, event: Any) -> bytes:
        if self.integration.source.format == "json":
            return orjson.dumps(event)
        return codec.encode(event, _FIXTURE_SCHEMA_ID, codec.writer_of(self.avro_schemas[_FIXTURE_SCHEMA_ID]))

    def run(self, value: bytes, tenant: str = "acme", extra_headers: dict[str, str] | None = None) -> Outcome:
        self.offset += 1
        hdrs = {h.TENANT: tenant, **(extra_headers or {})} if tenant else dict(extra_headers or {})
        inbound = Inbound(self.integration.source.topic, 0, self.offset, 1_700_000_000_000, None, value,
                          h.encode(hdrs))  # type: ignore[arg-type]
        prepared = prepare(inbound, self.table, self.avro_schemas)
        if prepared.failures:
            return Outcome("dlq", code=prepared.failures[0].error.code)
        if not prepared.candidates:
            return Outcome("ignored")
        candidate = prepared.candidates[0]
        claim = claim_for(candidate, inbound.coords, "cert:")
        decision = self.state.decide([claim])[0]
        if decision is Decision.DUPLICATE:
            return Outcome("duplicate")
        if decision is Decision.STALE:
            policy = self.integration.on_stale
            if policy == "deliver":
                return Outcome("routed", candidate.record)
            if policy == "dlq":
                self.state.release([claim])
                return Outcome("dlq", code=codes.ORDER_STALE)
            return Outcome("stale")
        return Outcome("routed", candidate.record)


# What a fixture case may hold (docs/spec.md, "Certification"): a misspelt key (`tennant:`) is an
# error naming the allowed keys, never silently the default.
FIXTURE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["expect"],
    "properties": {
        "name": {"type": "string"},
        "tenant": {"type": "string", "description": "the router-tenant header (\"\" = none)"},
        "headers": {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}},
        "event": {},
        "raw": {"type": "string"},
        "expect": {
            "type": "object", "additionalProperties": False, "minProperties": 1, "maxProperties": 1,
            "properties": {"record": {"type": "object"}, "error": {"type": "string"},
                           "outcome": {"enum": ["routed", "ignored", "duplicate", "stale"]}},
        },
    },
}


def load_cases(directory: Path) -> list[Case]:
    """Every ``*.yaml`` case in a fixtures folder, sorted by file name."""
    cases: list[Case] = []
    for file in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
        doc = load_yaml_file(file)
        problems = validate_against(doc, FIXTURE_SCHEMA)
        if problems:
            first = problems[0]
            raise SpecError(first.message, file=first.file, path=first.path, line=first.line, code=codes.SPEC_FIXTURE)
        spec = doc.value
        if not isinstance(spec, dict) or "expect" not in spec or ("event" not in spec and "raw" not in spec):
            raise doc.error((), "a fixture case needs `event` (or `raw`) and `expect`", codes.SPEC_FIXTURE)
        expect = spec["expect"]
        if not isinstance(expect, dict) or len({"record", "error", "outcome"} & set(expect)) != 1:
            raise doc.error(("expect",), "expect needs exactly one of record, error, outcome", codes.SPEC_FIXTURE)
        raw = spec.get("raw")
        cases.append(Case(
            name=str(spec.get("name", file.stem)), file=str(file), event=spec.get("event"),
            raw=raw.encode() if isinstance(raw, str) else None, tenant=str(spec.get("tenant", "acme")),
            headers={str(k): str(v) for k, v in (spec.get("headers") or {}).items()}, expect=expect,
        ))
    return cases


def certify(integration: Integration, catalog: Catalog) -> list[CheckResult]:
    """Run every check for one integration; the list is the checklist to print."""
    cases = load_cases(integration.fixtures) if integration.fixtures else []
    mapping_cases = [c for c in cases if "record" in c.expect]
    results = [_mapping_fixtures(integration, catalog, mapping_cases)]
    sample = mapping_cases[0] if mapping_cases else None
    for probe in (_required_field, _duplicate, _out_of_order, _oversized, _unknown_type):
        if sample is None:
            results.append(CheckResult(probe.__doc__ or "", False, "needs at least one mapping fixture to probe"))
        else:
            results.append(probe(integration, catalog, sample))
    explicit = [c for c in cases if "record" not in c.expect]
    if explicit:
        results.append(_explicit(integration, catalog, explicit))
    return results


def _mapping_fixtures(integration: Integration, catalog: Catalog, cases: list[Case]) -> CheckResult:
    if not cases:
        return CheckResult("mapping fixtures", False, f"no fixture with expect.record in {integration.fixtures}")
    problems = []
    for case in cases:
        got = _run_case(Harness(integration, catalog), case)
        want = case.expect["record"]
        if got.kind != "routed":
            problems.append(f"{case.name}: expected a record, got {got.describe()}")
        elif normalize(got.record) != normalize(want):
            problems.append(f"{case.name}: {_diff(normalize(want), normalize(got.record))}")
    return CheckResult("mapping fixtures", not problems, "; ".join(problems) or f"{len(cases)}/{len(cases)} cases")


def _required_field(integration: Integration, catalog: Catalog, sample: Case) -> CheckResult:
    """required-field failure"""
    fields = integration.raw["mapping"]["fields"]
    src = integration.source
    # Identity paths fail earlier, in validate (missing event id / entity key / version): not a mapping probe.
    identity = {src.event_id_path, src.entity_key_path, src.version_path, src.type_path}
    inferred = _required_by_schema(integration)
    paths = [(name, spec["from"]) for name, spec in ((n, {"from": f} if isinstance(f, str) else f)
                                                     for n, f in fields.items())
             if isinstance(spec, dict) and (spec.get("required") or (name in inferred and "default" not in spec))
             and isinstance(spec.get("from"), str) and not spec["from"].startswith("$")
             and spec["from"] not in identity]
    if not paths:
        return CheckResult("required-field failure", None, "no required `from` field to probe")
    problems = []
    for _name, path in paths:
        if compile_getter(path)(sample.event) in (MISSING, None):
            problems.append(f"the sample fixture {sample.name!r} has no value at {path}: add one so the probe "
                            "can remove it")
            continue
        # A list item is blanked, not deleted: deleting would shift the next item into its place.
        last = path.rsplit(".", 1)[-1]
        probe = with_value(sample.event, path, None) if last.isdigit() else without(sample.event, path)
        harness = Harness(integration, catalog)
        got = harness.run(harness.encode_input(probe), sample.tenant, sample.headers)
        if (got.kind, got.code) != ("dlq", codes.MAP_REQUIRED_MISSING):
            problems.append(f"without {path}: expected dlq map.required_missing, got {got.describe()}")
    names = ", ".join(n for n, _ in paths)
    return CheckResult("required-field failure", not problems, "; ".join(problems) or names)


def _required_by_schema(integration: Integration) -> set[str]:
    """Output fields the Avro schema makes required: not nullable and without a default (the
    mapping infers `required`, docs/spec.md)."""
    out = set()
    for avro_field in integration.schema.raw.get("fields", []):
        kind = avro_field.get("type")
        nullable = kind == "null" or (isinstance(kind, list) and "null" in kind)
        if not nullable and "default" not in avro_field:
            out.add(avro_field["name"])
    return out


def _duplicate(integration: Integration, catalog: Catalog, sample: Case) -> CheckResult:
    """duplicate event"""
    if not integration.dedupe_enabled:
        return CheckResult("duplicate event", None, "dedupe disabled in the spec")
    harness = Harness(integration, catalog)
    first, second = _run_case(harness, sample), _run_case(harness, sample)
    ok = first.kind == "routed" and second.kind == "duplicate"
    return CheckResult("duplicate event", ok, "" if ok else f"sent twice: got {first.describe()}, "
                       f"then {second.describe()} (expected routed, then duplicate)")


def _out_of_order(integration: Integration, catalog: Catalog, sample: Case) -> CheckResult:
    """out-of-order event"""
    src = integration.source
    if src.version_path is None or src.get_version is None:
        return CheckResult("out-of-order event", None, "no source.version: events are not ordered")
    current = src.get_version(sample.event)
    newer = _bump(current)
    harness = Harness(integration, catalog)
    newer_event = with_value(sample.event, src.version_path, newer)
    newer_headers = dict(sample.headers)
    if (id_header := src.from_headers.get("event_id")) is not None:  # `event_id: $event_id`: a new id there
        newer_headers[id_header] = f"{sample.headers.get(id_header, '')}-newer"
    else:
        eid_path = src.event_id_path
        newer_event = with_value(newer_event, eid_path, f"{compile_getter(eid_path)(sample.event)}-newer")
    first = harness.run(harness.encode_input(newer_event), sample.tenant, newer_headers)
    late = _run_case(harness, sample)
    expected = {"drop": "stale", "deliver": "routed", "dlq": "dlq"}[integration.on_stale]
    ok = first.kind == "routed" and late.kind == expected
    return CheckResult("out-of-order event", ok, f"on_stale: {integration.on_stale}" if ok else
                       f"newer then older: got {first.describe()}, {late.describe()} (expected routed, {expected})")


def _oversized(integration: Integration, catalog: Catalog, sample: Case) -> CheckResult:
    """oversized payload"""
    harness = Harness(integration, catalog)
    limit = integration.source.max_bytes
    value = harness.encode_input(sample.event)
    value = value + b" " * (limit + 1 - len(value)) if integration.source.format == "json" else value + b"\0" * limit
    got = harness.run(value, sample.tenant, sample.headers)
    ok = (got.kind, got.code) == ("dlq", codes.DECODE_TOO_LARGE)
    return CheckResult("oversized payload", ok, f"> {limit} bytes" if ok else
                       f"{len(value)} bytes: expected dlq decode.too_large, got {got.describe()}")


def _unknown_type(integration: Integration, catalog: Catalog, sample: Case) -> CheckResult:
    """unknown event type"""
    src = integration.source
    if src.types is None or src.type_path is None:
        return CheckResult("unknown event type", None, "the spec takes every event type")
    harness = Harness(integration, catalog)
    got = harness.run(harness.encode_input(with_value(sample.event, src.type_path, "certification.unknown_type")),
                      sample.tenant, sample.headers)
    ok = got.kind == "ignored"
    return CheckResult("unknown event type", ok, "" if ok else f"expected ignored, got {got.describe()}")


def _explicit(integration: Integration, catalog: Catalog, cases: list[Case]) -> CheckResult:
    problems = []
    for case in cases:
        got = _run_case(Harness(integration, catalog), case)
        if "error" in case.expect:
            if (got.kind, got.code) != ("dlq", case.expect["error"]):
                problems.append(f"{case.name}: expected dlq {case.expect['error']}, got {got.describe()}")
        elif got.kind != case.expect["outcome"]:
            problems.append(f"{case.name}: expected {case.expect['outcome']}, got {got.describe()}")
    return CheckResult("explicit cases", not problems, "; ".join(problems) or f"{len(cases)}/{len(cases)} cases")


def _run_case(harness: Harness, case: Case) -> Outcome:
    value = case.raw if case.raw is not None else harness.encode_input(case.event)
    return harness.run(value, case.tenant, case.headers)


def _bump(version: Any) -> Any:
    if isinstance(version, int | float) and not isinstance(version, bool):
        return version + 1
    return "9999-12-31T23:59:59Z"  # an ISO time later than any real one


def normalize(value: Any) -> Any:
    """Comparable form: Decimals as strings (fixtures write "49.00"), recursively."""
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, dict):
        return {k: normalize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalize(v) for v in value]
    return value


def _diff(want: Any, got: Any) -> str:
    if isinstance(want, dict) and isinstance(got, dict):
        parts = [f"{k}: expected {want.get(k)!r}, got {got.get(k)!r}"
                 for k in sorted(set(want) | set(got)) if want.get(k) != got.get(k)]
        return "; ".join(parts)
    return f"expected {want!r}, got {got!r}"


def iter_results(catalog: Catalog) -> Iterator[tuple[Integration, list[CheckResult]]]:
    """Certification results for every integration of a catalog."""
    for integration in catalog.integrations:
        yield integration, certify(integration, catalog)
