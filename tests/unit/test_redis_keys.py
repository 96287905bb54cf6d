"""Key names on a standalone Redis and on a Redis Cluster (docs/redis.md): standalone names are
what they always were; on a cluster, the keys one script or RENAME touches share a slot, whatever
the names they carry."""

from __future__ import annotations

import pytest

from consumers.deliver.delivered import delivered_key
from consumers.deliver.ratelimit import hold_key, scope_key
from producers.cohorts.state import store_base
from router.redisconn import by_slot, slot_of, slot_tag

HOSTILE = ["acme", "a{b}", "}{", "{}", "{", "}", "x{}y", "{{a}}", "a:b", "", "é{✓}"]


def test_standalone_key_names_are_unchanged() -> None:
    assert slot_tag(False, "anything") == ""
    assert hold_key("p:", "pd", None) == "p:rl:pd:hold"
    assert hold_key("p:", "pd", "acme") == "p:rl:pd:acme:hold"
    assert scope_key("p:", "pd", "acme") == "p:rl:pd:acme"
    assert store_base("p:", "vip", None, clustered=False) == "p:cohort:vip:*"
    assert store_base("p:", "vip", "braze", clustered=False) == "p:cohort:vip:braze"


@pytest.mark.parametrize("tenant", HOSTILE)
def test_a_rate_limit_scope_is_one_slot_on_a_cluster_whatever_its_names(tenant: str) -> None:
    for destination in ("pd", "p{d", tenant):
        for who in (tenant, None):
            scope = scope_key("p:", destination, who, clustered=True)
            keys = [f"{scope}:tat", f"{scope}:adapt", hold_key("p:", destination, who, clustered=True)]
            assert keys[2] == f"{scope}:hold"
            assert scope.startswith("p:{") and scope.index("}") == len("p:{") + 16, "the tag comes first"
            assert scope.endswith(f"}}rl:{destination}" + (f":{who}" if who is not None else ""))
            assert len({slot_of(k) for k in keys}) == 1, keys


@pytest.mark.parametrize("name", HOSTILE)
def test_a_cohorts_keys_and_temporary_keys_are_one_slot_on_a_cluster(name: str) -> None:
    for audience, destination in ((name, None), ("vip", name), (name, name)):
        base = store_base("p:", audience, destination, clustered=True)
        keys = [f"{base}:{suffix}" for suffix in ("state", "pending", "pending-unknown", "lock", "version")]
        keys += [f"{base}:pending:tmp:0f0f", f"{base}:pending-unknown:tmp:0f0f"]
        assert len({slot_of(k) for k in keys}) == 1, keys


def test_tags_spread_scopes_over_slots() -> None:
    slots = {slot_of(scope_key("p:", "pd", f"tenant-{i}", clustered=True)) for i in range(200)}
    assert len(slots) > 190, "one tag per scope, not one for everything"
    assert slot_tag(True, "a", "b") != slot_tag(True, "a:b") != slot_tag(True, "ab")


def test_keys_are_grouped_by_hash_slot_only_on_a_cluster() -> None:
    keys = [delivered_key("p:", "pagerduty", f"k{i}") for i in range(50)]
    assert by_slot(keys, clustered=False) == [list(range(50))], "one call per batch on a standalone server"
    groups = by_slot(keys, clustered=True)
    assert sorted(i for g in groups for i in g) == list(range(50))
    for group in groups:
        assert len({slot_of(keys[i]) for i in group}) == 1
