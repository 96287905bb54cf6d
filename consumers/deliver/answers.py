"""Partner answers, on the event loop: a delivered batch writes its delivered keys and finishes its
records; a 207 is applied record by record; a retry backs off (a Retry-After or a 503 holds the
whole destination, here and on every replica); refused credentials or a 403 hold the integration;
anything else dead-letters the records with the partner's status and body."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import orjson

from consumers.deliver.config import HttpTarget
from consumers.deliver.deadletter import dead_letter
from consumers.deliver.failures import RETRYABLE_REDIS
from consumers.deliver.lanes import Item, now
from consumers.deliver.status import Answer, Verdict, backoff_s, classify_status
from router import codes, deadletters
from router.controls import HOLD_UNLESS_CHANGED, state_key
from router.redact import redact_text

if TYPE_CHECKING:
    from consumers.deliver.worker import DeliverWorker

log = logging.getLogger("router.deliver")

RESPONSE_BODY_LIMIT = deadletters.RESPONSE_BODY_LIMIT
HOLD_CAP_S = 3600.0  # a Retry-After further out than this is taken as this
DELIVERED_TTL_MIN_S = 7 * 24 * 3600


async def apply(worker: DeliverWorker, target: HttpTarget, items: list[Item], answer: Answer, body: bytes,
                sent_ms: int) -> None:
    """Act on the partner's ``answer`` to a request carrying ``items`` (its ``body`` as read),
    sent at ``sent_ms`` (wall clock)."""
    verdict = answer.verdict
    if verdict is Verdict.DELIVERED:
        await _delivered(worker, target, items)
    elif verdict is Verdict.PARTIAL:
        # Each record by its own result: its status, its Retry-After, its body in its DLQ entry.
        # The delivered ones first: if writing their keys fails, every record is still this
        # task's to retry (none was handed back to the lanes yet).
        results = [(item, result, classify_status(result.status)) for item, result in
                   zip(items, answer.results, strict=True)]
        await _delivered(worker, target, [item for item, _, own in results if own is Verdict.DELIVERED])
        for item, result, own in results:
            if own is not Verdict.DELIVERED:
                after = result.retry_after_s if result.retry_after_s is not None else answer.retry_after_s
                await apply(worker, target, [item], Answer(own, result.status, after), result.body, sent_ms)
    elif verdict is Verdict.RETRY:
        if answer.status == 429 and target.rate_limit is not None:
            await worker.limiter.penalize(target.destination, items[0].tenant, target.rate_limit)
        hold_s = answer.retry_after_s
        if hold_s is None and answer.status == 503:  # unavailable without a time: back off the whole destination
            hold_s = backoff_s(items[0].attempts, target.retry.base_s, target.retry.cap_s)
        if hold_s:
            await _hold(worker, target, items[0].tenant, hold_s)
        retry(worker, target, items, answer, body.decode("utf-8", "replace"))
    elif verdict is Verdict.UNAUTHORIZED or (answer.status == 403 and target.on_forbidden == "reconnect"):
        # A 403 is a missing permission, the same for every record: hold the integration, not
        # dead-letter the backlog one by one (``on_forbidden: dlq`` for per-record refusals).
        await _needs_reconnect(worker, target, items, body, sent_ms, answer.status)
    else:
        for item in items:
            item.dlq = (codes.DELIVER_HTTP_4XX, f"{target.method} {target.url} answered {answer.status}",
                        answer.status, body[:RESPONSE_BODY_LIMIT])
            await dead_letter(worker, item)


async def _delivered(worker: DeliverWorker, target: HttpTarget, items: list[Item]) -> None:
    """Remember ``items`` as delivered (one script call per slot), then finish them."""
    if not items:
        return
    ttl = int(max(DELIVERED_TTL_MIN_S, 2 * target.dedupe_ttl_s))
    await worker.delivered_keys.remember([i.delivered_key for i in items], ttl)
    worker.finish_delivered(items)


def retry(worker: DeliverWorker, target: HttpTarget, items: list[Item], answer: Answer, why: str) -> None:
    """Put ``items`` back in their lanes after a backoff (or Retry-After); past ``max_age`` they dead-letter."""
    for item in items:
        delay = answer.retry_after_s
        if delay is None:
            delay = backoff_s(item.attempts, target.retry.base_s, target.retry.cap_s)
        if time.time() + delay - item.born_s > target.retry.max_age_s:
            message = (f"still failing after {item.attempts} attempt(s) over max_age "
                       f"{target.retry.max_age_s:.0f}s: {why}")[:500]
            item.dlq = (codes.DELIVER_RETRIES_EXHAUSTED, message, answer.status, why.encode()[:RESPONSE_BODY_LIMIT])
            delay = 0.0  # written to the DLQ at the next pass
        item.refreshed_auth = False  # the credentials were not what failed
        worker.lanes.retry(item, now() + delay)


async def _needs_reconnect(worker: DeliverWorker, target: HttpTarget, items: list[Item], body: bytes,
                           sent_ms: int, status: int | None = None) -> None:
    """Credentials refused (after a refresh) or lacking a permission (403): hold the
    integration until a person reconnects it; its records wait, nothing is lost. Unless the
    state changed after the request went out (a person reconnected meanwhile): then the answer
    is stale, and the records simply go again."""
    # The partner's answer may echo the credential it refused: masked before it is stored or logged.
    answer = redact_text(body[:400].decode("utf-8", "replace"), worker.redact_fields)[:200]
    reason = (f"the partner answered 403: the credentials lack a permission: {answer}" if status == 403
              else f"the partner refused credentials after a refresh: {answer}")
    if target.connection is not None and worker.tenancy is not None:  # this tenant's connection alone
        held = await worker.tenancy.needs_reconnect(target.integration, items[0].tenant, reason, sent_ms)
        if held:
            worker.active.discard(items[0].scope)
    else:
        doc = orjson.dumps({"state": "needs_reconnect", "reason": reason, "since_ms": int(time.time() * 1000)})
        held = await worker.redis.eval(HOLD_UNLESS_CHANGED, 1, state_key(worker.prefix, target.integration), doc,
                                       sent_ms)
        if held:
            worker.active.discard(target.integration)
            log.error("integration %s needs reconnecting: %s", target.integration, reason)
    if not held:
        log.info("integration %s: a %s answered to a request sent before its state changed is not acted on",
                 target.integration, status or "refusal")
    for item in items:
        item.refreshed_auth = False
        worker.lanes.release(item)


def _hold_key(worker: DeliverWorker, target: HttpTarget, tenant: str) -> str:
    """The hold that applies to ``tenant``'s requests to ``target`` (per tenant where limits are)."""
    per_tenant = target.rate_limit is not None and target.rate_limit.scope == "tenant"
    return worker.limiter.hold_key(target.destination, tenant if per_tenant else None)


async def _hold(worker: DeliverWorker, target: HttpTarget, tenant: str, seconds: float) -> None:
    """The partner said "not before": hold every request of the destination (or of this tenant's
    share of it), here at once and on every replica through Redis (best effort)."""
    key = _hold_key(worker, target, tenant)
    until = time.time() + min(seconds, HOLD_CAP_S)
    worker.holds[key] = max(worker.holds.get(key, 0.0), until)
    try:
        await worker.limiter.hold(key, int(until * 1000))
    except RETRYABLE_REDIS as exc:
        log.info("hold of %s not shared: %s", target.destination, exc)


def held_for(worker: DeliverWorker, target: HttpTarget, tenant: str) -> float:
    """Seconds until requests to ``target`` may go again (0: now)."""
    return (max(0.0, worker.holds.get(_hold_key(worker, target, tenant), 0.0) - time.time()) if worker.holds
            else 0.0)
