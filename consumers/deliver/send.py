"""One request, on the event loop: skip what was delivered already, wait for holds, the rate limit
and a slot, re-check that the records may still go (stop means stop), send them with the
integration's credentials (one refresh on a 401), and hand the answer to ``answers.apply``."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

import aiohttp
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind

from consumers.deliver.answers import apply, held_for, retry
from consumers.deliver.auth import Auth, AuthFailed, TokenUnavailable
from consumers.deliver.config import HttpTarget
from consumers.deliver.deadletter import dead_letter
from consumers.deliver.failures import REQUESTS, TRANSIENT, worker_reason
from consumers.deliver.lanes import Item
from consumers.deliver.payload import batch_idempotency_key, join_body
from consumers.deliver.status import Answer, Verdict, interpret
from consumers.deliver.tenancy import Route
from router import codes
from router import headers as h
from router.outcomes import delivery_request_seconds
from router.tracing import sampled, start_child

if TYPE_CHECKING:
    from consumers.deliver.worker import DeliverWorker

log = logging.getLogger("router.deliver")
_tracer = trace.get_tracer("router.deliver")


async def deliver(worker: DeliverWorker, target: HttpTarget, items: list[Item]) -> None:
    """One delivery task: send ``items`` in one request; whatever it raises retries or dead-letters them."""
    # What this task still holds: ``_send`` drops what it finishes or hands back unsent, so a
    # failure never touches a record another task may have taken since.
    owned = list(items)
    try:
        async with worker.slots[target.integration]:
            await _send(worker, target, owned)
        worker.progress.succeeded(REQUESTS)  # its Redis calls went through, whatever the partner said
    except TRANSIENT as exc:  # Redis down, auth endpoint down...: retry later, never lose the record
        log.warning("delivery to %s failed before an answer: %r", target.integration, exc)
        reason = worker_reason(exc)
        if reason is not None:
            worker.progress.failed(reason, REQUESTS)
        retry(worker, target, owned, Answer(Verdict.RETRY, None), str(exc))
    except Exception as exc:  # a record is the unit of failure: what nothing foresaw dead-letters it
        log.error("delivery to %s raised %s: dead-lettering %d record(s)", target.integration,
                  type(exc).__name__, len(owned))
        for item in owned:
            item.dlq = (codes.INTERNAL_DELIVER,
                        f"deliver failed unexpectedly: {type(exc).__name__}: {str(exc)[:200]}", None, b"")
            worker.spawn(dead_letter(worker, item))


async def _send(worker: DeliverWorker, target: HttpTarget, owned: list[Item]) -> None:
    """Send ``owned`` unless delivered already or not sendable now; ``owned`` is narrowed in
    place to what this task still holds (see ``deliver``)."""

    def sendable() -> list[Item]:
        """Narrow ``owned`` to what may be sent now (``_sendable``)."""
        owned[:] = _sendable(worker, owned)
        return owned

    items = list(owned)
    done = await worker.delivered_keys.seen([i.delivered_key for i in items])
    owned[:] = fresh = [i for i, d in zip(items, done, strict=True) if not d]
    for item, d in zip(items, done, strict=True):
        if d:
            worker.finish(item, "already_delivered")
    while (fresh := sendable()) and (held := held_for(worker, target, fresh[0].tenant)) > 0:
        await asyncio.sleep(min(held, worker.options.state_interval_s))
    if target.rate_limit is not None:
        while (fresh := sendable()) and (
                wait := await worker.limiter.wait_ms(target.destination, fresh[0].tenant, target.rate_limit)) > 0:
            await asyncio.sleep(min(wait / 1000, worker.options.state_interval_s))
    # Stop means stop: a pause, needs_reconnect or revocation seen while this task waited
    # (for a slot, the rate limit, Redis) holds its records; they are sent after a resume.
    fresh = sendable()
    if not fresh:
        return
    url, auth = target.url, worker.auth.get(target.integration)
    if target.connection is not None and worker.tenancy is not None:
        route = worker.tenancy.route(target, fresh[0].tenant)
        if not isinstance(route, Route):  # changed while this task waited: held until the next state read
            worker.active.discard(fresh[0].scope)
            for item in fresh:
                worker.lanes.release(item)
            owned.clear()
            return
        url, auth = route.url, route.auth
    assert auth is not None
    tps = [i.tp for i in fresh]
    worker.in_flight.update(tps)
    try:
        await _request_and_apply(worker, target, fresh, url, auth)
    finally:
        worker.in_flight.subtract(tps)


def _sendable(worker: DeliverWorker, items: list[Item]) -> list[Item]:
    """The items that may be sent now; the others go back to their lane heads, unsent."""
    name = (items[0].scope or items[0].integration) if items else ""
    if name in worker.active and not worker.revoking:
        return items
    out = []
    for item in items:
        if name in worker.active and item.tp not in worker.revoking:
            out.append(item)
        else:
            worker.lanes.release(item)
    return out


def _end_span(span: Span, answer: Answer | None) -> None:
    """A client span's status: an error for no answer and for 4xx/5xx (OpenTelemetry's HTTP
    client convention); the status code as an attribute."""
    status = answer.status if answer is not None else None
    if status:
        span.set_attribute("http.response.status_code", status)
    if not status or status >= 400:
        span.set_status(trace.StatusCode.ERROR, f"HTTP {status}" if status else "no answer")
    span.end()


async def _request_and_apply(worker: DeliverWorker, target: HttpTarget, fresh: list[Item], url: str,
                             auth: Auth) -> None:
    """Build the body and headers, send to ``url`` with ``auth`` (refreshing the credentials once on
    a 401), apply the answer."""
    single = target.max_records == 1
    ikeys = [i.idempotency_key for i in fresh]
    body = fresh[0].json if single else join_body([i.json for i in fresh], target.batch_key)
    request_key = ikeys[0] if single else batch_idempotency_key(ikeys)
    headers = {"Content-Type": "application/json", "Idempotency-Key": request_key, **target.headers}
    span = None
    incoming = fresh[0].traceparent
    if incoming and sampled(incoming):
        span, headers[h.TRACEPARENT] = start_child(
            _tracer, f"deliver {target.integration}", incoming, kind=SpanKind.CLIENT,
            attributes={"router.integration": target.integration, "router.records": len(fresh),
                        "http.request.method": target.method, "router.tenant": fresh[0].tenant})
    elif incoming:
        headers[h.TRACEPARENT] = incoming
    for item in fresh:
        item.attempts += 1
    answer: Answer | None = None
    sent_ms = int(time.time() * 1000)
    try:
        seen = auth.version
        answer, resp_body = await _request(worker, target, url, auth, body, headers, request_key, len(fresh))
        if answer.verdict is Verdict.UNAUTHORIZED and not fresh[0].refreshed_auth:
            try:  # one fetch for every request refused with the same token; TokenUnavailable: retried
                refreshed = await auth.refresh(worker.session, seen)
            except AuthFailed:  # the token endpoint refused the credentials: the 401 stands
                refreshed = False
            if refreshed:  # a 401 with the new token is final: reconnect
                for item in fresh:
                    item.refreshed_auth = True
                answer, resp_body = await _request(worker, target, url, auth, body, headers, request_key,
                                                   len(fresh))
    finally:
        if span is not None:
            _end_span(span, answer)
    worker.outcomes.attempt(answer.status, fresh[0].tenant, target.integration)
    await apply(worker, target, fresh, answer, resp_body, sent_ms)


async def _request(worker: DeliverWorker, target: HttpTarget, url: str, auth: Auth, body: bytes,
                   headers: dict[str, str], msg_id: str, n: int) -> tuple[Answer, bytes]:
    """One HTTP request; the partner's answer interpreted, or a failure to reach it as a retry."""
    started = time.perf_counter()
    try:
        extra = await auth.headers(worker.session, body, msg_id)
        async with worker.session.request(target.method, url, data=body, headers={**headers, **extra},
                                          timeout=aiohttp.ClientTimeout(total=target.timeout_s)) as resp:
            content = await resp.content.read(64 * 1024)
            answer = interpret(resp.status, {k.lower(): v for k, v in resp.headers.items()}, content, n,
                               time.time())
            delivery_request_seconds.record(time.perf_counter() - started, {
                "integration": target.integration, "destination": target.destination,
                "status_class": f"{resp.status // 100}xx"})
            return answer, content
    except TokenUnavailable as exc:  # passes by itself: retried with a backoff, never a reconnect
        return Answer(Verdict.RETRY, None), str(exc).encode()
    except AuthFailed as exc:
        return Answer(Verdict.UNAUTHORIZED, None), str(exc).encode()
    except (aiohttp.ClientError, TimeoutError) as exc:
        return Answer(Verdict.RETRY, None), f"{type(exc).__name__}: {exc}".encode()
