"""Property tests: the compiled hot path is total on any input.

* each shipped integration's mapper returns a record its output schema accepts, or raises
  ``MappingError`` with a stable code: never another exception;
* ``prepare`` never raises, whatever the bytes and headers; every failure carries a stable code;
* a path getter never raises and finds what is at its path.

Inputs are arbitrary JSON-like values, and (because arbitrary JSON almost never reaches the paths
a spec reads) fixture events with arbitrary values put at, or removed from, their paths.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import fastavro
import pytest
from hypothesis import HealthCheck, example, given, reject, settings
from hypothesis import strategies as st

from router import headers as h
from router.errors import MappingError
from router.pipeline.records import Inbound
from router.pipeline.stages import MAGIC, RoutingTable, encode_avro, prepare
from router.spec.load import Catalog, load_catalog
from router.spec.mapping import Meta
from router.spec.paths import MISSING, compile_getter
from tools.spec.certify import load_cases

ROOT = Path(__file__).resolve().parents[2]
CATALOG: Catalog = load_catalog(ROOT / "integrations", ROOT / "schemas" / "avro")
NAMES = sorted(i.name for i in CATALOG.integrations)
TABLE = RoutingTable.build(CATALOG.integrations, {name: n for n, name in enumerate(NAMES, start=1)})
COHORT_SCHEMA_ID = 1  # the id framed test values name; bound to the cohort input schema
_COHORT = CATALOG.schemas.get("router.cohort.CohortMembershipChange")
assert _COHORT is not None
AVRO_INPUTS = {COHORT_SCHEMA_ID: _COHORT.parsed}
META = Meta(tenant="acme", source="src", event_id="evt-1", integration="x", received_at=1_700_000_000_000)

MAPPING_CODES = {"map.required_missing", "map.type_error"}
FAILURE_PREFIXES = ("decode.", "validate.", "map.", "encode.")

PROPERTY = settings(max_examples=300, deadline=None, database=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

# ---- strategies ---------------------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=16,
)
json_objects = st.dictionaries(st.text(max_size=8), json_values, max_size=6)
# What a fixture value is replaced with: any JSON, with numbers (where most coercions live) drawn more often.
replacements = json_values | st.integers() | st.floats(allow_nan=False)


@cache
def sample_events(name: str) -> tuple[dict[str, Any], ...]:
    """The events of an integration's fixtures: they name every path its spec reads."""
    fixtures = CATALOG.by_name(name).fixtures
    assert fixtures is not None
    events = tuple(c.event for c in load_cases(fixtures) if isinstance(c.event, dict))
    assert events, f"{name} has no fixture events"
    return events


def all_paths(value: Any, prefix: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    """Every path in a JSON-like value, parents before children."""
    if isinstance(value, dict):
        for key, child in value.items():
            yield (*prefix, key)
            yield from all_paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield (*prefix, index)
            yield from all_paths(child, (*prefix, index))


def changed(doc: Any, path: tuple[str | int, ...], value: Any, remove: bool) -> Any:
    """A copy of ``doc`` with ``path`` set or removed; unchanged if an earlier change took its parent away."""
    out = copy.deepcopy(doc)
    node = out
    for step in path[:-1]:
        if not has_step(node, step):
            return out
        node = node[step]
    last = path[-1]
    if remove and has_step(node, last):
        del node[last]
    elif not remove and ((isinstance(node, dict) and isinstance(last, str)) or has_step(node, last)):
        node[last] = value
    return out


def has_step(node: Any, step: str | int) -> bool:
    if isinstance(node, dict):
        return step in node
    return isinstance(node, list) and isinstance(step, int) and step < len(node)


@st.composite
def fixture_shaped(draw: st.DrawFn, name: str) -> dict[str, Any]:
    """A fixture event of integration ``name`` with a few of its values replaced by arbitrary JSON or removed."""
    event = draw(st.sampled_from(sample_events(name)))
    paths = list(all_paths(event))
    for path in draw(st.lists(st.sampled_from(paths), min_size=1, max_size=4, unique=True)):
        event = changed(event, path, draw(replacements), remove=draw(st.booleans()))
    return event


def events_for(name: str) -> st.SearchStrategy[Any]:
    shaped = fixture_shaped(name)
    return st.one_of(shaped, shaped, shaped, json_objects, json_values)


named_events = st.sampled_from(NAMES).flatmap(lambda name: st.tuples(st.just(name), events_for(name)))

GITHUB, STRIPE, VIP, ZENDESK = NAMES
STRIPE_EVENT = sample_events(STRIPE)[0]
STRIPE_AMOUNT = ("data", "object", "items", "data", 0, "price", "unit_amount")
# Edge cases pinned as explicit examples, so that the derandomized search cannot miss them.
HUGE_AMOUNT = (STRIPE, changed(STRIPE_EVENT, STRIPE_AMOUNT, 1e30, remove=False))  # decimal overflow
TOO_PRECISE_AMOUNT = (STRIPE, changed(STRIPE_EVENT, STRIPE_AMOUNT, 10**17, remove=False))  # > precision 14
FAR_FUTURE = (ZENDESK, changed(sample_events(ZENDESK)[0], ("occurred_at",), 1e20, remove=False))  # > long
NULL_TAG = (ZENDESK, changed(sample_events(ZENDESK)[0], ("data", "ticket", "tags", 0), None, remove=False))
NULL_USER_ID = (VIP, changed(sample_events(VIP)[0], ("user_ids", 0), None, remove=False))


# ---- the mappers --------------------------------------------------------------------------------


@PROPERTY
@given(case=named_events)
@example(case=HUGE_AMOUNT)
def test_mappers_raise_only_mapping_errors_with_stable_codes(case: tuple[str, Any]) -> None:
    name, event = case
    try:
        CATALOG.by_name(name).mapper(event, META)
    except MappingError as exc:
        assert exc.code in MAPPING_CODES, exc.code


@PROPERTY
@given(case=named_events)
@example(case=TOO_PRECISE_AMOUNT)
@example(case=FAR_FUTURE)
@example(case=NULL_TAG)
@example(case=NULL_USER_ID)
def test_mapped_records_fit_the_output_schema(case: tuple[str, Any]) -> None:
    """Whatever a mapper returns, the encoder can write: a value that does not fit is map.type_error."""
    name, event = case
    integration = CATALOG.by_name(name)
    try:
        record = integration.mapper(event, META)
    except MappingError:
        return
    except Exception:  # a crash is the business of the test above; here only returned records count
        reject()
    encode_avro(record, 1, integration.schema.writer)  # raises EncodeError saying what does not fit


@pytest.mark.parametrize("name", NAMES)
def test_the_fixture_events_map_cleanly(name: str) -> None:
    """The strategies start from these events: make sure they are good starting points."""
    integration = CATALOG.by_name(name)
    mapped = 0
    for event in sample_events(name):
        try:
            record = integration.mapper(event, META)
        except MappingError:
            continue  # fixtures that expect a mapping failure
        assert fastavro.validation.validate(record, integration.schema.parsed)
        mapped += 1
    assert mapped >= 1


# ---- prepare ------------------------------------------------------------------------------------


def inbound(topic: str, value: bytes | None, headers: list[tuple[str, bytes | None]]) -> Inbound:
    return Inbound(topic, 0, 42, 1_700_000_000_000, None, value, headers)


def check_prepared(record: Inbound) -> None:
    prepared = prepare(record, TABLE, AVRO_INPUTS, now_ms=1_700_000_000_000)
    for failure in prepared.failures:
        assert failure.error.code.startswith(FAILURE_PREFIXES), failure.error.code
    for candidate in prepared.candidates:
        assert candidate.value[:1] == MAGIC
    assert prepared.ignored == (not prepared.candidates and not prepared.failures)


def values_for(name: str) -> st.SearchStrategy[bytes | None]:
    as_json = events_for(name).map(lambda e: json.dumps(e).encode())
    framed = st.binary(max_size=64).map(lambda b: MAGIC + COHORT_SCHEMA_ID.to_bytes(4, "big") + b)
    return st.none() | st.binary(max_size=256) | framed | as_json


named_values = st.sampled_from(NAMES).flatmap(lambda name: st.tuples(st.just(name), values_for(name)))


@PROPERTY
@given(case=named_values)
@example(case=(HUGE_AMOUNT[0], json.dumps(HUGE_AMOUNT[1]).encode()))
def test_prepare_never_raises_on_arbitrary_values(case: tuple[str, bytes | None]) -> None:
    name, value = case
    check_prepared(inbound(CATALOG.by_name(name).source.topic, value, [(h.TENANT, b"acme")]))


header_values = st.none() | st.binary(max_size=16) | st.text(max_size=12).map(str.encode)


@PROPERTY
@given(tenant=header_values, received_at=header_values, replay=header_values, only=header_values,
       extra=st.lists(st.tuples(st.text(max_size=12), header_values), max_size=3))
@example(tenant=b"acme", received_at="²".encode(), replay=None, only=None, extra=[])
def test_prepare_never_raises_on_arbitrary_headers(tenant: bytes | None, received_at: bytes | None,
                                                   replay: bytes | None, only: bytes | None,
                                                   extra: list[tuple[str, bytes | None]]) -> None:
    integration = CATALOG.by_name(ZENDESK)
    value = json.dumps(sample_events(ZENDESK)[0]).encode()
    headers = [(h.TENANT, tenant), (h.RECEIVED_AT, received_at), *extra]
    if replay is not None:
        headers += [(h.REPLAY_COUNT, replay), (h.INTEGRATION, only)]
    check_prepared(inbound(integration.source.topic, value, headers))


# ---- path getters -------------------------------------------------------------------------------

dict_keys = st.from_regex(r"[a-z_][a-z0-9_]{0,5}|[0-9]{1,3}", fullmatch=True)
path_steps = st.lists(dict_keys | st.integers(min_value=0, max_value=5).map(str), min_size=1, max_size=5)


@PROPERTY
@given(steps=path_steps, doc=json_values)
def test_getter_never_raises_on_arbitrary_json(steps: list[str], doc: Any) -> None:
    value = compile_getter(".".join(steps))(doc)
    assert value is MISSING or any(value is part for part in parts(doc))


def parts(value: Any) -> Iterator[Any]:
    """``value`` and everything inside it."""
    yield value
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    for child in children:
        yield from parts(child)


@st.composite
def doc_with_path(draw: st.DrawFn) -> tuple[str, Any, Any]:
    """A document holding ``leaf`` at a path written in the dotted syntax, through dicts and lists."""
    leaf = draw(json_scalars)
    doc: Any = leaf
    steps: list[str] = []
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        if draw(st.booleans()):
            key = draw(dict_keys)
            doc = {key: doc, **draw(st.dictionaries(dict_keys.filter(key.__ne__), json_values,
                                                    max_size=2))}
            steps.insert(0, key)
        else:
            index = draw(st.integers(min_value=0, max_value=3))
            doc = [*draw(st.lists(json_values, min_size=index, max_size=index)), doc]
            steps.insert(0, str(index))
    return ".".join(steps), doc, leaf


@PROPERTY
@given(case=doc_with_path())
@example(case=("data.007", {"data": {"007": "bond"}}, "bond"))
def test_getter_finds_the_value_at_its_path(case: tuple[str, Any, Any]) -> None:
    """All-digit steps index lists and still match dict keys, as written (``007`` is not ``7``)."""
    path, doc, leaf = case
    assert compile_getter(path)(doc) == leaf


def test_a_non_ascii_digit_step_is_a_key_not_an_index() -> None:
    from router.spec.paths import compile_getter, split

    assert split("a.²") == ("a", "²")  # int("²") would raise: "²".isdigit() is True
    assert split("items.0") == ("items", 0)
    assert compile_getter("a.²")({"a": {"²": "squared"}}) == "squared"
    assert compile_getter("n.٣.x")({"n": {"٣": {"x": 3}}}) == 3
