"""Fault rules for the partner simulator: parsing and matching, no I/O.

A rule says "deliveries of records like this fail with this status, this many times". Rules
are kept in the order they were added; for each record the first rule that matches and still
has times left fires. How often each rule has fired is kept by the caller (``fired``, one
count per rule), so everything here is a plain function of data and is tested without a
server.

A rule with an ``account`` fires only for requests that carried that account's credential
(see ``accounts.py``): "the partner refuses this tenant's key" without touching the others.

A rule whose status is 2xx does not fail the record: it only adds its delay (a slow success,
used to make a client time out on a request the partner did accept).
"""

from __future__ import annotations

import http
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from services.partner_sim.accounts import NAME_RULE, is_account_name

NO_KEY = "<no-key>"

# Error names for the statuses tests use most; others fall back to the HTTP reason phrase.
ERROR_NAMES = {
    400: "bad_request",
    401: "invalid_token",
    403: "forbidden",
    408: "request_timeout",
    409: "conflict",
    422: "unprocessable",
    429: "rate_limited",
    500: "internal_error",
    502: "bad_gateway",
    503: "unavailable",
    504: "gateway_timeout",
}
_RULE_FIELDS = frozenset({"destination", "account", "match", "status", "times", "retry_after", "delay_ms", "body"})
_MISSING = object()


@dataclass(frozen=True)
class Match:
    """Which records a rule applies to: one key, one field value, or (neither) every record."""

    key: str | None = None
    field: str | None = None
    equals: Any = None

    def to_json(self) -> dict[str, Any]:
        """The rule's ``match`` object as the control API takes it."""
        if self.key is not None:
            return {"key": self.key}
        if self.field is not None:
            return {"field": self.field, "equals": self.equals}
        return {}


@dataclass(frozen=True)
class FaultRule:
    """One parsed rule; ``times=None`` fires forever."""

    status: int
    match: Match = Match()
    destination: str | None = None
    account: str | None = None  # None: requests of any account, or of none
    times: int | None = None
    retry_after: str | None = None
    delay_ms: int = 0
    body: Mapping[str, Any] | None = None

    @property
    def fails(self) -> bool:
        """Whether a record this rule fires on is refused (2xx rules only delay)."""
        return self.status >= 300

    @property
    def error(self) -> str:
        """The short error name for a refused record: the body's ``error`` or one per status."""
        if self.body is not None and isinstance(self.body.get("error"), str):
            return str(self.body["error"])
        return error_name(self.status)

    def error_body(self, key: str) -> dict[str, Any]:
        """The JSON body of a single-record answer refused by this rule."""
        return dict(self.body) if self.body is not None else {"error": self.error, "idempotency_key": key}

    def to_json(self) -> dict[str, Any]:
        """The rule as the control API takes it."""
        return {
            "destination": self.destination,
            "account": self.account,
            "match": self.match.to_json(),
            "status": self.status,
            "times": self.times,
            "retry_after": self.retry_after,
            "delay_ms": self.delay_ms,
            "body": dict(self.body) if self.body is not None else None,
        }


def error_name(status: int) -> str:
    """``rate_limited`` for 429, ``unavailable`` for 503, else the reason phrase in snake case."""
    if status in ERROR_NAMES:
        return ERROR_NAMES[status]
    try:
        return http.HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return f"http_{status}"


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _header_safe(value: object) -> bool:
    return isinstance(value, str) and value.isprintable()


def _parse_match(raw: object) -> Match | str:
    if raw is None:
        return Match()
    if not isinstance(raw, dict):
        return "match must be an object"
    if not raw:
        return Match()
    if set(raw) == {"key"}:
        return Match(key=raw["key"]) if isinstance(raw["key"], str) else "match.key must be a string"
    if set(raw) == {"field", "equals"}:
        if not isinstance(raw["field"], str) or not raw["field"]:
            return "match.field must be a non-empty dotted path"
        return Match(field=raw["field"], equals=raw["equals"])
    return 'match must be {"key": K}, {"field": PATH, "equals": VALUE} or {}'


def parse_rule(raw: object) -> FaultRule | str:
    """A rule from its JSON form, or a message saying what is wrong with it."""
    if not isinstance(raw, dict):
        return "a rule must be an object"
    unknown = sorted(set(raw) - _RULE_FIELDS)
    if unknown:
        return f"unknown rule field(s) {', '.join(unknown)}"
    match = _parse_match(raw.get("match"))
    if isinstance(match, str):
        return match
    status, times, delay_ms = raw.get("status"), raw.get("times"), raw.get("delay_ms")
    destination, retry_after, body = raw.get("destination"), raw.get("retry_after"), raw.get("body")
    account = raw.get("account")
    if not (isinstance(status, int) and not isinstance(status, bool) and 200 <= status <= 599):
        return "status must be an integer from 200 to 599"
    if times is not None and not (_is_int(times) and times >= 0):
        return "times must be a non-negative integer or null"
    if delay_ms is not None and not (_is_int(delay_ms) and delay_ms >= 0):
        return "delay_ms must be a non-negative integer"
    if destination is not None and not isinstance(destination, str):
        return "destination must be a string or null"
    if account is not None and not is_account_name(account):
        return f"account must be null or an account name: {NAME_RULE}"
    if retry_after is not None and not (_is_int(retry_after) or _header_safe(retry_after)):
        return "retry_after must be an integer or a one-line string"
    if body is not None and not isinstance(body, dict):
        return "body must be an object"
    return FaultRule(
        status=status,
        match=match,
        destination=destination,
        account=account,
        times=times,
        retry_after=str(retry_after) if retry_after is not None else None,
        delay_ms=delay_ms or 0,
        body=body,
    )


def parse_rules(raw: object) -> list[FaultRule] | str:
    """The rules of a ``{"rules": [...]}`` request body, or a message naming the first bad one."""
    if not isinstance(raw, dict) or not isinstance(raw.get("rules"), list):
        return 'the body must be {"rules": [rule, ...]}'
    rules: list[FaultRule] = []
    for index, item in enumerate(raw["rules"]):
        rule = parse_rule(item)
        if isinstance(rule, str):
            return f"rules[{index}]: {rule}"
        rules.append(rule)
    return rules


def field_value(record: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path (``customer.tier``, ``items.0.sku``), or ``_MISSING``."""
    value: Any = record
    for part in path.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
    return value


def same_json(a: object, b: object) -> bool:
    """JSON equality: unlike Python's, ``true`` is not ``1`` and ``1.0`` equals ``1``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def matches(rule: FaultRule, destination: str, key: str, record: Mapping[str, Any], *, account: str | None) -> bool:
    """Whether ``rule`` applies to this record, sent by ``account`` (None: no account), ignoring
    how often it has fired."""
    if rule.destination is not None and rule.destination != destination:
        return False
    if rule.account is not None and rule.account != account:
        return False
    if rule.match.key is not None:
        return rule.match.key == key
    if rule.match.field is not None:
        value = field_value(record, rule.match.field)
        return value is not _MISSING and same_json(value, rule.match.equals)
    return True


def firing_rule(
    rules: Sequence[FaultRule],
    fired: Sequence[int],
    destination: str,
    key: str,
    record: Mapping[str, Any],
    *,
    account: str | None,
) -> int | None:
    """The index of the first rule that matches the record and has times left, else None.

    ``fired[i]`` is how many times ``rules[i]`` has fired; the caller adds one when this
    returns ``i``, so the next matching record sees one time fewer.
    """
    for index, rule in enumerate(rules):
        if rule.times is not None and fired[index] >= rule.times:
            continue
        if matches(rule, destination, key, record, account=account):
            return index
    return None


def record_key(record: Mapping[str, Any]) -> str:
    """A batch record's idempotency key (its ``idempotency_key`` field), or ``<no-key>``.

    An integer key is taken as its decimal text, so ``7`` and ``"7"`` are the same key.
    """
    key = record.get("idempotency_key")
    if isinstance(key, int) and not isinstance(key, bool):
        return str(key)
    return key if isinstance(key, str) and key else NO_KEY
