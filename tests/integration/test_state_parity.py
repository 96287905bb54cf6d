"""The Redis/Lua state store answers exactly like the reference MemoryState (DESIGN §4, §5), on a
standalone Redis and on a Redis Cluster (keys tagged as ``claim_for`` tags them there)."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumers.route.state_redis import RedisState
from router import redisconn
from router.pipeline.records import Claim, Decision
from router.pipeline.stages import hash_tag
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


def _claims(prefix: str, rows: list, tagged: bool) -> list[Claim]:  # type: ignore[type-arg]
    out = []
    for eid, field, coord, entity, v in rows:
        dedupe, order = f"dd:{eid}", f"wm:{field}:{entity}" if v is not None else None
        at = f"{prefix}{hash_tag(order or dedupe)}" if tagged else prefix
        out.append(Claim(f"{at}{dedupe}", field, coord, 60_000, f"{at}{order}" if order else None, v, 60_000))
    return out


def _delete(client: redisconn.Sync, keys: set[str]) -> None:
    for key in keys:  # one by one: a cluster refuses a DEL across slots
        client.delete(key)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops)
def test_redis_state_matches_memory_state(each_redis: str, program: list) -> None:  # type: ignore[type-arg]
    client = redisconn.connect(each_redis)
    prefix = f"parity-{uuid.uuid4().hex[:8]}:"
    real, reference = RedisState(client), MemoryState()
    written: set[str] = set()  # exactly the keys this example could have written (SCAN is slow)
    try:
        for op, rows in program:
            claims = _claims(prefix, rows, redisconn.clustered(client))
            written.update(k for c in claims for k in (f"{c.dedupe_key}|{c.field}", c.order_key) if k)
            if op == "decide":
                assert real.decide(claims) == reference.decide(claims)
            else:
                real.release(claims)
                reference.release(claims)
    finally:
        _delete(client, written)
        client.close()


@pytest.mark.parametrize("layout", ["junk text", "wrong type"])
def test_unreadable_stored_state_is_treated_as_absent_not_a_stall(each_redis: str, layout: str) -> None:
    client = redisconn.connect(each_redis)
    prefix = f"junk-{uuid.uuid4().hex[:8]}:"
    if redisconn.clustered(client):
        prefix += hash_tag("k1")
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
        assert client.exists(slot) == client.exists(mark) == 0
    finally:
        _delete(client, {slot, mark})
        client.close()
