"""Fault-rule parsing and matching for the partner simulator: plain data, no server."""

from __future__ import annotations

from typing import Any

import pytest

from services.partner_sim.rules import (
    NO_KEY,
    FaultRule,
    Match,
    error_name,
    field_value,
    firing_rule,
    parse_rule,
    parse_rules,
    record_key,
    same_json,
)


def rule(**raw: Any) -> FaultRule:
    parsed = parse_rule(raw)
    assert isinstance(parsed, FaultRule), parsed
    return parsed


Delivery = tuple[str, str, dict[str, Any]]


def fire_all(rules: list[FaultRule], deliveries: list[Delivery], account: str | None = None) -> list[int | None]:
    """Which rule fires for each delivery in turn (all sent by ``account``), counting firings as
    the simulator does."""
    fired = [0] * len(rules)
    chosen: list[int | None] = []
    for destination, key, record in deliveries:
        index = firing_rule(rules, fired, destination, key, record, account=account)
        if index is not None:
            fired[index] += 1
        chosen.append(index)
    return chosen


def test_a_full_rule_parses_and_round_trips() -> None:
    raw = {
        "destination": "crm",
        "account": "acme",
        "match": {"field": "customer.tier", "equals": "gold"},
        "status": 503,
        "times": 2,
        "retry_after": 2,
        "delay_ms": 50,
        "body": {"error": "maintenance"},
    }
    parsed = rule(**raw)
    assert parsed.match == Match(field="customer.tier", equals="gold")
    assert parsed.retry_after == "2" and parsed.fails and parsed.error == "maintenance"
    assert parsed.to_json() == {**raw, "retry_after": "2"}
    assert rule(status=500) == FaultRule(status=500)


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ({"status": 500, "match": {"key": 1}}, "match.key"),
        ({"status": 500, "match": {"field": "a"}}, "match must be"),
        ({"status": 500, "match": {"key": "a", "field": "b", "equals": 1}}, "match must be"),
        ({"status": "500"}, "status"),
        ({"status": True}, "status"),
        ({"status": 700}, "status"),
        ({"status": 500, "times": -1}, "times"),
        ({"status": 500, "delay_ms": 1.5}, "delay_ms"),
        ({"status": 500, "destination": 3}, "destination"),
        ({"status": 500, "account": 3}, "account must be null or an account name"),
        ({"status": 500, "account": ""}, "account must be null or an account name"),
        ({"status": 500, "account": "a" * 10_000}, "account must be null or an account name"),
        ({"status": 500, "account": "acme\n"}, "account must be null or an account name"),
        ({"status": 500, "acount": "acme"}, "unknown rule field(s) acount"),
        ({"status": 500, "body": []}, "body"),
        ({"status": 500, "retry_after": 1.5}, "retry_after"),
        ({"status": 500, "retry_after": "1\r\nX-Evil: 1"}, "retry_after"),
        ({"status": 500, "stauts": 503}, "unknown rule field(s) stauts"),
        ([], "must be an object"),
    ],
)
def test_bad_rules_are_named(raw: object, problem: str) -> None:
    parsed = parse_rule(raw)
    assert isinstance(parsed, str) and problem in parsed


def test_parse_rules_names_the_bad_index() -> None:
    assert parse_rules({"rules": [{"status": 500}, {"status": "x"}]}) == (
        "rules[1]: status must be an integer from 200 to 599"
    )
    assert isinstance(parse_rules({"rule": []}), str)
    assert parse_rules({"rules": []}) == []


def test_first_matching_rule_with_times_left_fires() -> None:
    rules = [rule(match={"key": "a"}, status=503, times=2), rule(status=500, times=1)]
    deliveries: list[Delivery] = [
        ("crm", "a", {}),
        ("crm", "a", {}),
        ("crm", "a", {}),
        ("crm", "b", {}),
        ("crm", "a", {}),
    ]
    assert fire_all(rules, deliveries) == [0, 0, 1, None, None]


def test_times_null_fires_forever_and_zero_never() -> None:
    assert fire_all([rule(status=500, times=0), rule(status=503)], [("d", "k", {})] * 3) == [1, 1, 1]


def test_destination_scope() -> None:
    rules = [rule(destination="crm", status=500)]
    assert fire_all(rules, [("crm", "k", {}), ("billing", "k", {})]) == [0, None]


def test_account_scope() -> None:
    """An account rule fires only for requests of that account; one without, for any or none."""
    rules = [rule(account="acme", status=401), rule(status=503, times=1)]
    delivery: list[Delivery] = [("crm", "k", {})]
    assert fire_all(rules, delivery, account="acme") == [0]
    assert fire_all(rules, delivery * 2, account="globex") == [1, None]
    assert fire_all(rules, delivery, account=None) == [1]  # no accounts configured: only unscoped rules
    assert rule(account="acme", status=401).account == "acme" and rule(status=500).to_json()["account"] is None


def test_field_match_uses_dotted_paths_and_json_equality() -> None:
    rules = [rule(match={"field": "customer.flags.0", "equals": True}, status=400)]
    deliveries: list[Delivery] = [
        ("d", "k1", {"customer": {"flags": [True]}}),
        ("d", "k2", {"customer": {"flags": [1]}}),  # 1 is not true in JSON
        ("d", "k3", {"customer": {}}),
        ("d", "k4", {"customer": "flat"}),
    ]
    assert fire_all(rules, deliveries) == [0, None, None, None]
    null_rule = [rule(match={"field": "closed_at", "equals": None}, status=400)]
    assert fire_all(null_rule, [("d", "k", {"closed_at": None}), ("d", "k", {})]) == [0, None]


def test_field_value_and_same_json() -> None:
    record = {"a": {"b": [{"c": 1}]}}
    assert field_value(record, "a.b.0.c") == 1
    assert field_value(record, "a.b.1") is not None  # missing, not None
    assert field_value({"x": None}, "x") is None
    assert same_json(1, 1.0) and not same_json(1, True) and not same_json(False, 0)
    assert same_json({"a": [1, {"b": True}]}, {"a": [1.0, {"b": True}]})
    assert not same_json({"a": 1}, {"a": 1, "b": 2})


def test_record_keys() -> None:
    assert record_key({"idempotency_key": "k"}) == "k"
    assert record_key({"idempotency_key": 7}) == "7"
    assert record_key({}) == NO_KEY == "<no-key>"
    assert record_key({"idempotency_key": ""}) == NO_KEY


def test_two_hundred_rules_delay_without_failing() -> None:
    slow = rule(status=200, delay_ms=100)
    assert not slow.fails and rule(status=503).fails


def test_error_names_and_bodies() -> None:
    assert error_name(429) == "rate_limited"
    assert error_name(418) == "i'm_a_teapot"
    assert error_name(599) == "http_599"
    assert rule(status=503).error_body("k") == {"error": "unavailable", "idempotency_key": "k"}
    assert rule(status=503, body={"message": "down"}).error_body("k") == {"message": "down"}
    assert rule(status=401).error == "invalid_token"
