"""The partner simulator: an aiohttp server that answers deliveries like a partner API.

Delivery workers POST records to ``/v1/{destination}``; the simulator authenticates them
(optional bearer token or API key, or one credential per partner account), rate-limits them
per destination (optional token bucket), fails them when a fault rule says so, and accepts
each idempotency key once per destination.
Everything it did is in the ledger (``GET /_ledger``); tests steer it through ``/_control``.
It is the partner's OAuth 2.0 authorization server too: ``oauth_routes`` (endpoints),
``oauth_requests`` (their checks) and ``oauth`` (codes, grants and their tokens).

State lives in one ``PartnerSim`` held under ``SIM``. Its methods never await, so each runs
to completion on the event loop without interleaving: a delivery's decisions (auth, bucket,
rules, idempotency, ledger) are taken in one step and need no lock. Only the answer waits
(a rule's ``delay_ms``), after everything is recorded.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
import secrets
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from router.errors import ConfigError
from router.webapp import ErrorAnswers, error_middleware, healthz, json_response
from services.partner_sim.accounts import Accounts, parse_accounts, presented_credentials
from services.partner_sim.oauth import AuthorizationServer
from services.partner_sim.oauth_requests import RegisteredClient
from services.partner_sim.rules import NO_KEY, FaultRule, firing_rule, parse_rules, record_key

log = logging.getLogger("router.partner_sim")

SIM_CONTENT_TYPE = "application/json"
MAX_BODY_BYTES = 64 * 1024 * 1024  # benchmarks send large batches


@dataclass(frozen=True)
class SimConfig:
    """How the simulator starts; defaults: no rate limit, no auth."""

    host: str = "127.0.0.1"
    port: int = 0
    rate: int | None = None  # requests per ``per`` seconds and destination; None: unlimited
    per: float = 1.0
    require_token: bool = False
    token_ttl: float = 3600.0
    client_id: str = "sim-client"
    client_secret: str = "sim-secret"  # noqa: S105 - a test double's well-known default
    api_key: str | None = None
    # account name -> credential (checked with accounts.parse_accounts); any account replaces
    # the api_key and token checks: each delivery must carry one account's credential
    accounts: Mapping[str, str] = field(default_factory=dict, repr=False)


@dataclass
class TokenBucket:
    """``capacity`` requests at once, refilled continuously at ``per_second``."""

    capacity: float
    per_second: float
    tokens: float
    updated: float

    def take(self, now: float) -> float:
        """Take one token: 0.0 if there was one, else the seconds until there will be."""
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.per_second)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.per_second


@dataclass
class DestinationLedger:
    """What one destination received."""

    accepted: dict[str, int] = field(default_factory=dict)
    duplicates: dict[str, int] = field(default_factory=dict)
    requests: int = 0
    by_status: Counter[int] = field(default_factory=Counter)
    by_account: Counter[str] = field(default_factory=Counter)  # requests that carried an account's credential
    bodies: list[tuple[int, int]] = field(default_factory=list)  # (body bytes, records) of each parsed request


@dataclass(frozen=True)
class RecordOutcome:
    """The answer for one record: 200 (accepted or duplicate) or the status of the rule that fired."""

    key: str
    status: int
    rule: FaultRule | None = None
    duplicate: bool = False

    @property
    def ok(self) -> bool:
        """Accepted now or before."""
        return self.status == 200


class PartnerSim:
    """All of the simulator's state: ledger, rules, accounts, tokens and rate buckets."""

    def __init__(self, config: SimConfig, clock: Callable[[], float] = time.monotonic) -> None:
        problem = parse_accounts(dict(config.accounts))
        if isinstance(problem, str):
            raise ConfigError(f"accounts: {problem}")
        self.config = config
        self.clock = clock
        self.oauth_client = RegisteredClient(config.client_id, config.client_secret)
        self.reset()

    def reset(self) -> None:
        """Back to how it started: empty ledger, no rules or tokens, the start-up rate limit and accounts."""
        self.rate, self.per = self.config.rate, self.config.per
        self.accounts = Accounts.of(self.config.accounts)
        self.buckets: dict[str, TokenBucket] = {}
        self.rules: list[FaultRule] = []
        self.fired: list[int] = []
        self.tokens: dict[str, float] = {}  # token -> expiry on self.clock
        self.tokens_issued = 0
        self.token_requests = 0
        self.token_faults: list[int] = []  # statuses the token endpoint answers next, one per request
        self.oauth = AuthorizationServer(self, self.clock)  # authorization-code grants (oauth.py)
        self.ledgers: dict[str, DestinationLedger] = {}
        self.records: list[dict[str, Any]] = []

    # -- auth -----------------------------------------------------------------------------

    def issue_token(self) -> str:
        """A new bearer token valid for ``token_ttl`` seconds."""
        token = secrets.token_urlsafe(24)
        self.tokens[token] = self.clock() + self.config.token_ttl
        self.tokens_issued += 1
        return token

    def token_valid(self, token: str) -> bool:
        """Issued, not expired, not revoked."""
        expiry = self.tokens.get(token)
        return expiry is not None and self.clock() < expiry

    def revoke(self, token: str | None) -> None:
        """Make one token invalid (a 401 rule does this to the token it was sent with)."""
        if token is not None:
            self.tokens.pop(token, None)

    def expire_tokens(self) -> int:
        """Make every issued token invalid; returns how many were still known."""
        count = len(self.tokens)
        self.tokens.clear()
        return count

    def set_accounts(self, credentials: Mapping[str, str]) -> None:
        """Replace every account (checked with ``parse_accounts``); none: auth as configured at start."""
        self.accounts = Accounts.of(credentials)

    def revoke_account(self, name: str) -> bool:
        """The account's credential stops working (401), even if it was the last; False if unknown."""
        if name not in self.accounts.credentials:
            return False
        self.accounts = self.accounts.without(name)
        return True

    # -- rate limit -----------------------------------------------------------------------

    def set_rate(self, rate: int | None, per: float) -> None:
        """Change the limit; buckets start full under the new one."""
        self.rate, self.per = rate, per
        self.buckets.clear()

    def wait_for_slot(self, destination: str) -> float:
        """Take a request slot: 0.0 if allowed, else seconds until the bucket has one."""
        if self.rate is None:
            return 0.0
        now = self.clock()
        bucket = self.buckets.get(destination)
        if bucket is None:
            bucket = self.buckets[destination] = TokenBucket(self.rate, self.rate / self.per, self.rate, now)
        return bucket.take(now)

    # -- rules and the ledger -------------------------------------------------------------

    def add_rules(self, rules: Sequence[FaultRule]) -> None:
        """Append rules; they are checked after the ones already there."""
        self.rules.extend(rules)
        self.fired.extend(0 for _ in rules)

    def clear_rules(self) -> None:
        """Drop every rule."""
        self.rules, self.fired = [], []

    def ledger(self, destination: str) -> DestinationLedger:
        """The destination's ledger, created on first use."""
        found = self.ledgers.get(destination)
        if found is None:
            found = self.ledgers[destination] = DestinationLedger()
        return found

    def decide(self, destination: str, key: str, record: Mapping[str, Any], account: str | None) -> RecordOutcome:
        """Fire the first matching rule; unless it fails the record, accept the key once.

        ``account`` is the account whose credential the request carried (None: no accounts).
        Rules come before idempotency: an outage does not spare records it already has.
        """
        index = firing_rule(self.rules, self.fired, destination, key, record, account=account)
        rule = None
        if index is not None:
            self.fired[index] += 1
            rule = self.rules[index]
            if rule.fails:
                return RecordOutcome(key, rule.status, rule)
        ledger = self.ledger(destination)
        if key in ledger.accepted:
            ledger.duplicates[key] = ledger.duplicates.get(key, 0) + 1
            return RecordOutcome(key, 200, rule, duplicate=True)
        ledger.accepted[key] = 1
        self.records.append({
            "destination": destination,
            "idempotency_key": key,
            "record": record,
            "account": account,
            "at": time.time_ns() // 1_000_000,
        })
        return RecordOutcome(key, 200, rule)

    def count_request(
        self, destination: str, status: int, body: tuple[int, int] | None = None, account: str | None = None
    ) -> None:
        """Record one delivery request, the status it was answered with, the account it came
        from (if it carried one's credential) and, when its body was read, the body's size in
        bytes and how many records it held."""
        ledger = self.ledger(destination)
        ledger.requests += 1
        ledger.by_status[status] += 1
        if account is not None:
            ledger.by_account[account] += 1
        if body is not None:
            ledger.bodies.append(body)

    def ledger_json(self, destination: str | None = None) -> dict[str, Any]:
        """The ``GET /_ledger`` body, for one destination or summed over all of them."""
        if destination is None:
            ledgers, records = list(self.ledgers.values()), self.records
        else:
            ledgers = [self.ledgers[destination]] if destination in self.ledgers else []
            records = [r for r in self.records if r["destination"] == destination]
        accepted: Counter[str] = Counter()
        duplicates: Counter[str] = Counter()
        by_status: Counter[int] = Counter()
        by_account: Counter[str] = Counter()
        bodies: list[tuple[int, int]] = []
        for ledger in ledgers:
            accepted.update(ledger.accepted)
            duplicates.update(ledger.duplicates)
            by_status.update(ledger.by_status)
            by_account.update(ledger.by_account)
            bodies.extend(ledger.bodies)
        return {
            "accepted": dict(accepted),
            "duplicates": dict(duplicates),
            "records": records,
            "requests": sum(ledger.requests for ledger in ledgers),
            "by_status": {str(status): count for status, count in sorted(by_status.items())},
            "requests_by_account": dict(sorted(by_account.items())),
            "bodies": bodies,
            "tokens_issued": self.tokens_issued,
            "token_requests": self.token_requests,
            "revocations": self.oauth.revocations,
        }


SIM = web.AppKey("partner_sim", PartnerSim)


def answer(body: object, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    """A JSON response."""
    return json_response(body, status, content_type=SIM_CONTENT_TYPE, headers=headers)


def refuse(status: int, error: str, message: str | None = None) -> web.Response:
    """An error answer: ``{"error": ...}`` plus a message when there is more to say."""
    body = {"error": error} if message is None else {"error": error, "message": message}
    headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'} if error == "invalid_token" else None
    return answer(body, status, headers)


async def read_json(request: web.Request) -> Any:
    """The request body as JSON, or a 400 ``invalid_json`` answer."""
    try:
        return orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return refuse(400, "invalid_json")


def _bearer(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _same_secret(presented: str, expected: str) -> bool:
    return hmac.compare_digest(presented.encode(), expected.encode())


def _authenticate(sim: PartnerSim, request: web.Request) -> tuple[str | None, web.Response | None]:
    """(the request's account, a 401 refusal or None).

    With accounts, the request must carry one account's credential, or a live access token
    granted (authorization-code grant) for an account that still exists; the api_key and token
    settings are not checked. Without, it must carry what the config requires (both, when both
    are set), and its account is the one its access token was granted for, if any.
    """
    granted = sim.oauth.account_of(_bearer(request))
    if sim.accounts.enforced:
        headers = request.headers
        presented = presented_credentials(headers.get("Authorization", ""), headers.get("X-Api-Key", ""))
        account = sim.accounts.identify(presented)
        if account is None and granted in sim.accounts.credentials:
            account = granted
        return account, (refuse(401, "invalid_api_key") if account is None else None)
    refusal = _auth_refusal(sim, request)
    return (granted if refusal is None else None), refusal


def _auth_refusal(sim: PartnerSim, request: web.Request) -> web.Response | None:
    """401 unless the request carries what the config requires (both, when both are set)."""
    if sim.config.api_key is not None:
        presented = request.headers.get("X-Api-Key") or request.headers.get("Authorization") or ""
        if not _same_secret(presented, sim.config.api_key):
            return refuse(401, "invalid_api_key")
    if sim.config.require_token:
        token = _bearer(request)
        if token is None or not sim.token_valid(token):
            return refuse(401, "invalid_token")
    return None


def _rule_headers(rule: FaultRule | None) -> dict[str, str]:
    headers: dict[str, str] = {}
    if rule is not None and rule.retry_after is not None:
        headers["Retry-After"] = rule.retry_after
    if rule is not None and rule.status == 401:
        headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    return headers


def _single(
    sim: PartnerSim, destination: str, key: str, record: Mapping[str, Any], account: str | None
) -> tuple[web.Response, RecordOutcome]:
    outcome = sim.decide(destination, key, record, account)
    if not outcome.ok and outcome.rule is not None:
        return answer(outcome.rule.error_body(key), outcome.status, _rule_headers(outcome.rule)), outcome
    body: dict[str, Any] = {"status": "accepted", "idempotency_key": key}
    if outcome.duplicate:
        body["duplicate"] = True
    return answer(body), outcome


def _result(index: int, outcome: RecordOutcome) -> dict[str, Any]:
    result: dict[str, Any] = {"index": index, "status": outcome.status, "idempotency_key": outcome.key}
    if outcome.duplicate:
        result["duplicate"] = True
    if not outcome.ok and outcome.rule is not None:
        result["error"] = outcome.rule.error
        if outcome.rule.retry_after is not None:
            result["retry_after"] = outcome.rule.retry_after
    return result


def _batch(
    sim: PartnerSim, destination: str, records: Sequence[Mapping[str, Any]], account: str | None
) -> tuple[web.Response, list[RecordOutcome]]:
    """200 if every record is fine, the shared status if every record failed with one, else 207."""
    outcomes = [sim.decide(destination, record_key(record), record, account) for record in records]
    results = [_result(index, outcome) for index, outcome in enumerate(outcomes)]
    failed = [outcome.rule for outcome in outcomes if not outcome.ok and outcome.rule is not None]
    if not failed:
        return answer({"status": "accepted", "results": results}), outcomes
    if len(failed) == len(outcomes) and len({rule.status for rule in failed}) == 1:
        retry = next((rule for rule in failed if rule.retry_after is not None), failed[0])
        body = {"error": failed[0].error, "results": results}
        return answer(body, failed[0].status, _rule_headers(retry)), outcomes
    return answer({"results": results}, 207), outcomes


def _deliver(
    sim: PartnerSim, request: web.Request, destination: str, body: Any, account: str | None
) -> tuple[web.Response, int]:
    """The answer to a parsed delivery, and how long to hold it back (the longest fired delay)."""
    if isinstance(body, dict) and isinstance(body.get("records"), list):
        records = body["records"]
        bad = next((i for i, record in enumerate(records) if not isinstance(record, dict)), None)
        if bad is not None:
            return refuse(400, "invalid_record", f"records[{bad}] is not a JSON object"), 0
        response, outcomes = _batch(sim, destination, records, account)
    elif isinstance(body, dict):
        key = request.headers.get("Idempotency-Key") or NO_KEY
        response, outcome = _single(sim, destination, key, body, account)
        outcomes = [outcome]
    else:
        return refuse(400, "invalid_record", 'the body must be a JSON object or {"records": [...]}'), 0
    fired = [outcome.rule for outcome in outcomes if outcome.rule is not None]
    if any(rule.status == 401 for rule in fired):
        # Token expiry: the token this request carried stops working, so a client that does
        # not fetch a new one keeps failing instead of passing on its next retry.
        sim.revoke(_bearer(request))
    return response, max((rule.delay_ms for rule in fired), default=0)


routes = web.RouteTableDef()


@routes.put("/v1/{destination}")
@routes.patch("/v1/{destination}")
@routes.post("/v1/{destination}")
async def deliver(request: web.Request) -> web.Response:
    """A delivery: one record (``Idempotency-Key`` header) or ``{"records": [...]}``."""
    sim, destination = request.app[SIM], request.match_info["destination"]
    delay_ms = 0
    size: tuple[int, int] | None = None
    account, response = _authenticate(sim, request)
    if response is None:
        wait_s = sim.wait_for_slot(destination)
        if wait_s > 0:
            headers = {"Retry-After": str(max(1, math.ceil(wait_s)))}
            response = answer({"error": "rate_limited"}, 429, headers)
    if response is None:
        body = await read_json(request)
        if not isinstance(body, web.Response):
            records = body.get("records") if isinstance(body, dict) else None
            size = (len(await request.read()), len(records) if isinstance(records, list) else 1)
        # Nothing awaits between here and count_request (read() returns the body already read):
        # the delivery is decided in one step.
        if isinstance(body, web.Response):
            response, delay_ms = body, 0
        else:
            response, delay_ms = _deliver(sim, request, destination, body, account)
    sim.count_request(destination, response.status, size, account)
    if delay_ms:
        await asyncio.sleep(delay_ms / 1000)
    return response


@routes.get("/_control/rules")
async def list_rules(request: web.Request) -> web.Response:
    """The rules in order, each with how often it has fired."""
    sim = request.app[SIM]
    return answer({"rules": [{**rule.to_json(), "fired": n} for rule, n in zip(sim.rules, sim.fired, strict=True)]})


@routes.post("/_control/rules")
async def add_rules(request: web.Request) -> web.Response:
    """Append ``{"rules": [...]}``; all or nothing."""
    body = await read_json(request)
    if isinstance(body, web.Response):
        return body
    rules = parse_rules(body)
    if isinstance(rules, str):
        return refuse(400, "invalid_rule", rules)
    sim = request.app[SIM]
    sim.add_rules(rules)
    return answer({"rules": len(sim.rules)})


@routes.delete("/_control/rules")
async def clear_rules(request: web.Request) -> web.Response:
    """Drop every rule."""
    request.app[SIM].clear_rules()
    return answer({"rules": 0})


@routes.get("/_control/accounts")
async def list_accounts(request: web.Request) -> web.Response:
    """The account names, sorted (credentials are never shown), and whether one is required."""
    accounts = request.app[SIM].accounts
    return answer({"accounts": accounts.names, "enforced": accounts.enforced})


@routes.put("/_control/accounts")
async def set_accounts(request: web.Request) -> web.Response:
    """Replace every account: ``{"acme": "key-a", "globex": "key-b"}``; ``{}`` clears them."""
    body = await read_json(request)
    if isinstance(body, web.Response):
        return body
    credentials = parse_accounts(body)
    if isinstance(credentials, str):
        return refuse(400, "invalid_accounts", credentials)
    sim = request.app[SIM]
    sim.set_accounts(credentials)
    return answer({"accounts": sim.accounts.names, "enforced": sim.accounts.enforced})


@routes.post("/_control/accounts/{name}/revoke")
async def revoke_account(request: web.Request) -> web.Response:
    """The partner revoked this account's credential: requests carrying it get 401 from now on."""
    sim = request.app[SIM]
    if not sim.revoke_account(request.match_info["name"]):
        return refuse(404, "unknown_account")
    return answer({"accounts": sim.accounts.names, "enforced": sim.accounts.enforced})


@routes.post("/_control/expire_tokens")
async def expire_tokens(request: web.Request) -> web.Response:
    """Every issued token stops working."""
    return answer({"expired": request.app[SIM].expire_tokens()})


@routes.post("/_control/reset")
async def reset(request: web.Request) -> web.Response:
    """Ledger, rules, tokens and buckets cleared; the rate limit and accounts back to the start-up ones."""
    request.app[SIM].reset()
    return answer({"status": "reset"})


def _positive_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0


@routes.put("/_control/rate")
async def set_rate(request: web.Request) -> web.Response:
    """``{"rate": N | null, "per": seconds}``: the new limit; ``per`` defaults to 1."""
    body = await read_json(request)
    if isinstance(body, web.Response):
        return body
    if not isinstance(body, dict) or "rate" not in body:
        return refuse(400, "invalid_rate", 'the body must be {"rate": N | null, "per": seconds}')
    rate, per = body["rate"], body.get("per", 1.0)
    if rate is not None and not (isinstance(rate, int) and not isinstance(rate, bool) and rate >= 1):
        return refuse(400, "invalid_rate", "rate must be a positive integer or null")
    if not _positive_number(per):
        return refuse(400, "invalid_rate", "per must be a positive number of seconds")
    sim = request.app[SIM]
    sim.set_rate(rate, float(per))
    return answer({"rate": sim.rate, "per": sim.per})


@routes.get("/_ledger")
async def ledger(request: web.Request) -> web.Response:
    """What was received: ``?destination=NAME`` for one destination."""
    return answer(request.app[SIM].ledger_json(request.query.get("destination")))


def _http_error(request: web.Request, exc: web.HTTPException) -> web.Response:
    """aiohttp's own answers (404, 405, 413) in the simulator's ``{"error": ...}`` shape."""
    detail = exc.text if exc.text and not exc.text.startswith(f"{exc.status}: ") else None  # not "404: Not Found"
    return refuse(exc.status, exc.reason.lower().replace(" ", "_"), detail)


# A partner answers errors as JSON; an unexpected failure is logged, never sent as a stack trace.
_errors = error_middleware(ErrorAnswers(
    http=_http_error, internal=lambda request, exc: refuse(500, "internal_error", type(exc).__name__)), log)


def create_app(config: SimConfig | None = None) -> web.Application:
    """The simulator application; its state is ``app[SIM]``."""
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[_errors])
    from services.partner_sim.oauth_routes import routes as oauth_routes  # it imports SIM from here

    app[SIM] = PartnerSim(config or SimConfig())
    app.add_routes(routes)
    app.add_routes(oauth_routes)
    app.router.add_get("/healthz", healthz)  # 200 while serving
    return app
