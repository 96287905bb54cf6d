"""The Redis/Lua state store answers exactly like the reference MemoryState (DESIGN §4, §5)."""

from __future__ import annotations

import uuid

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumers.route.state_redis import RedisState
from router.pipeline.records import Claim, Decision
from router.pipeline.state import MemoryState

ids = st.sampled_from(["e1", "e2", "e3"])
fields = st.sampled_from(["int-a", "int-b"])
coords = st.sampled_from(["t:0:1", "t:0:2", "t:1:7", "r:0:9"])
entities = st.sampled_from(["k1", "k2"])
versions = st.one_of(st.none(), st.integers(0, 5).map(float))
ops = st.lists(
    st.one_of(
        st.tuples(st.just("decide"), st.lists(st.tuples(ids, fields, coords, entities, versions), min_size=1,
                                               max_size=6)),
        st.tuples(st.just("release"), st.lists(st.tuples(ids, fields, coords, entities, versions), min_size=1,
                                                max_size=3)),
    ),
    min_size=1, max_size=12,
)


def _claims(prefix: str, rows: list) -> list[Claim]:  # type: ignore[type-arg]
    return [Claim(f"{prefix}dd:{eid}", field, coord, 60_000, f"{prefix}wm:{field}:{entity}" if v is not None else None,
                  v, 60_000) for eid, field, coord, entity, v in rows]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops)
def test_redis_state_matches_memory_state(redis_url: str, program: list) -> None:  # type: ignore[type-arg]
    client = redis.Redis.from_url(redis_url)
    prefix = f"parity-{uuid.uuid4().hex[:8]}:"
    real, reference = RedisState(client), MemoryState()
    try:
        for op, rows in program:
            claims = _claims(prefix, rows)
            if op == "decide":
                assert real.decide(claims) == reference.decide(claims)
            else:
                real.release(claims)
                reference.release(claims)
    finally:
        # Delete exactly the keys this example could have written (SCAN over a shared Redis is slow).
        keys = [f"{prefix}dd:{e}|{f}" for e in ("e1", "e2", "e3") for f in ("int-a", "int-b")]
        keys += [f"{prefix}wm:{f}:{k}" for f in ("int-a", "int-b") for k in ("k1", "k2")]
        client.delete(*keys)
        client.close()


@pytest.mark.parametrize("layout", ["junk text", "wrong type"])
def test_unreadable_stored_state_is_treated_as_absent_not_a_stall(redis_url: str, layout: str) -> None:
    client = redis.Redis.from_url(redis_url)
    prefix = f"junk-{uuid.uuid4().hex[:8]}:"
    claim = Claim(f"{prefix}dd:e1", "int-a", "t:0:1", 60_000, f"{prefix}wm:int-a:k1", 3.0, 60_000)
    slot, mark = f"{prefix}dd:e1|int-a", f"{prefix}wm:int-a:k1"
    if layout == "junk text":
        client.set(slot, "not-a-claim")
        client.set(mark, "garbage")
    else:  # e.g. keys left by an older layout, or by another program sharing the prefix
        client.hset(slot, "int-a", "r||t:0:9")
        client.rpush(mark, "9|t:0:9")
    state = RedisState(client)
    try:
        assert state.decide([claim]) == MemoryState().decide([claim]) == [Decision.ROUTE]
        assert client.get(slot) == b"r||t:0:1"  # replaced by a readable claim
        assert client.get(mark) == b"3.0|t:0:1"
        state.release([claim])
        assert client.exists(slot, mark) == 0
    finally:
        client.delete(slot, mark)
        client.close()
