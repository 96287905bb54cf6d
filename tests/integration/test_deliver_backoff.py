"""One backoff per destination (issue 17, D6 and D7): a Retry-After holds every request to the
destination, on every replica; simultaneous 429s cut the shared rate once, not once each."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import redis.asyncio as aioredis

from consumers.deliver.config import RateLimit
from consumers.deliver.ratelimit import SharedRateLimiter
from router.settings import Settings
from tests.integration.delivering import http_spec, partner_sim, publish, running_deliverer
from tests.integration.routing import make_topology, zendesk_event
from tests.services import wait_for

HOLD_S = 2


def test_a_retry_after_holds_every_request_to_the_destination(settings: Settings, registry_url: str,
                                                              tmp_path: Path, name: str) -> None:
    dest = f"{name}-d"
    with partner_sim(tmp_path) as partner:
        partner.rules({"destination": dest, "match": {"field": "title", "equals": "first"}, "status": 429,
                       "times": 1, "retry_after": str(HOLD_S)})
        topo = make_topology(tmp_path, name, {"a": http_spec(name, name, dest, f"{partner.url}/v1/{dest}")})
        publish(settings, registry_url, topo, [zendesk_event("first", 0, 1, title="first")])
        with running_deliverer(settings, registry_url, topo, group=name):
            wait_for(lambda: partner.ledger(dest)["by_status"].get("429") == 1, deadline_s=60, what="the 429")
            answered_ms = time.time() * 1000
            publish(settings, registry_url, topo, [zendesk_event(f"e{i}", 1 + i, 1) for i in range(60)])
            wait_for(lambda: len(partner.ledger(dest)["accepted"]) == 61, deadline_s=60, what="every record")
        records = partner.ledger(dest)["records"]
    early = [r for r in records if r["at"] < answered_ms + HOLD_S * 1000 - 300]
    assert not early, f"{len(early)} request(s) sent during the partner's Retry-After: {HOLD_S}"


def test_simultaneous_429s_cut_the_rate_once(redis_url: str, name: str) -> None:
    async def run() -> tuple[float, float]:
        client = aioredis.Redis.from_url(redis_url)
        try:
            limiter = SharedRateLimiter(client, f"{name}:")
            limit = RateLimit(requests=100, per_s=1.0)
            together = await asyncio.gather(*(limiter.penalize("d", "acme", limit) for _ in range(3)))
            return min(together), await limiter.factor("d", "acme", limit)
        finally:
            await client.aclose()

    lowest, factor = asyncio.run(run())
    assert factor == 0.5 and lowest == 0.5, f"three 429s at once left the rate at {factor}"
