"""The gateway's bounds as pure functions: nesting depth, tenant names, record size, the body-digest event id."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from producers.webhooks.limits import (
    HEADER_FRAMING_BYTES,
    RECORD_FRAMING_BYTES,
    nesting_exceeds,
    record_size,
)
from router.spec.sources import TENANT_PATTERN, body_digest_event_id, is_tenant_name

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet="ab[]{}\"\\", max_size=6),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner, max_size=4),
    max_leaves=40,
)


def depth(value: Any) -> int:
    """The reference: containers nested, the top one counting 1 (recursive; hypothesis values are shallow)."""
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


@given(JSON, st.integers(0, 12))
def test_nesting_exceeds_agrees_with_the_recursive_depth(doc: Any, limit: int) -> None:
    expected = depth(doc) > limit
    assert nesting_exceeds(doc, limit) is expected
    # The bracket-count shortcut (brackets in strings included) never changes the answer.
    body = orjson.dumps(doc)
    assert nesting_exceeds(orjson.loads(body), limit, body) is expected


def test_nesting_walk_is_iterative_and_stops_early() -> None:
    doc: Any = "x"
    for _ in range(200_000):  # far beyond Python's recursion limit
        doc = [doc]
    assert nesting_exceeds(doc, 64) and nesting_exceeds({"a": doc}, 1000)
    wide = [[1]] * 100_000  # many containers, none deep: fine, and the shortcut does not apply
    assert not nesting_exceeds(wide, 2) and nesting_exceeds(wide, 1)


@given(st.text(max_size=80))
def test_tenant_names_are_the_documented_pattern(name: str) -> None:
    assert is_tenant_name(name) is (re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,62}", name) is not None)


def test_tenant_name_examples() -> None:
    assert TENANT_PATTERN == "[a-z0-9][a-z0-9_-]{0,62}"
    for good in ("acme", "globex", "not-this-one", "t_1", "0", "a" * 63):
        assert is_tenant_name(good), good
    for bad in ("", "..", "a/b", "acme\n", "acme\x00", "<script>", "Acme", "-acme", "_a", "a" * 64, "é", "a b"):
        assert not is_tenant_name(bad), bad


@given(st.none() | st.binary(max_size=50), st.binary(max_size=200),
       st.lists(st.tuples(st.text(max_size=20), st.binary(max_size=50)), max_size=6))
def test_record_size_counts_every_byte_and_the_framing(key: bytes | None, value: bytes,
                                                       headers: list[tuple[str, bytes]]) -> None:
    payload = len(value) + len(key or b"") + sum(len(n.encode()) + len(v) for n, v in headers)
    assert record_size(key, value, headers) == RECORD_FRAMING_BYTES + payload + HEADER_FRAMING_BYTES * len(headers)


@given(st.binary(max_size=500))
def test_body_digest_event_id(body: bytes) -> None:
    event_id = body_digest_event_id(body)
    assert event_id == "sha256:" + hashlib.sha256(body).hexdigest() and len(event_id) == 71
