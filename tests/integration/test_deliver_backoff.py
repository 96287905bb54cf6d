"""One backoff per destination (issue 17, D2, D6 and D7): a Retry-After holds every request to the
destination, on every replica; simultaneous 429s cut the shared rate once, not once each; a token
endpoint that fails for a while is retried with a backoff, not taken as refused credentials."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis

from consumers.deliver.config import RateLimit
from consumers.deliver.ratelimit import SharedRateLimiter, scope_key
from router.controls import read_states
from router.settings import Settings
from support.delivering import http_spec, partner_sim, publish, running_deliverer
from support.routing import make_topology, zendesk_event
from support.services import wait_for

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
            # The effective-rate factor the acquire script reads (destination scope: one per destination).
            adapt = scope_key(f"{name}:", "d", None) + ":adapt"
            return min(together), float(await client.hget(adapt, "factor") or 1.0)
        finally:
            await client.aclose()

    lowest, factor = asyncio.run(run())
    assert factor == 0.5 and lowest == 0.5, f"three 429s at once left the rate at {factor}"


def test_a_token_endpoint_blip_is_retried_with_backoff_not_a_reconnect(settings: Settings, registry_url: str,
                                                                        tmp_path: Path, name: str,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    client = redis.Redis.from_url(settings.redis_url or "")
    dest = f"{name}-d"
    with partner_sim(tmp_path, "--require-token", "--client-id", "cid", "--client-secret", "s3cret") as partner:
        auth = (f"{{type: oauth2_client_credentials, token_url: '{partner.url}/oauth/token', client_id: cid, "
                "client_secret: 'env:ROUTER_TEST_CLIENT_SECRET'}")
        monkeypatch.setenv("ROUTER_TEST_CLIENT_SECRET", "s3cret")
        topo = make_topology(tmp_path, name, {"a": http_spec(name, name, dest, f"{partner.url}/v1/{dest}", auth=auth)})
        publish(settings, registry_url, topo, [zendesk_event("e0", 0, 1)])
        with running_deliverer(settings, registry_url, topo, group=name, state_interval_s=0.2):
            wait_for(lambda: partner.ledger(dest)["accepted"], deadline_s=60, what="a delivery with a token")
            partner.call("POST", "/_control/token_faults", {"status": 503, "times": 4})
            partner.call("POST", "/_control/expire_tokens")
            publish(settings, registry_url, topo, [zendesk_event(f"e{i}", i, 1) for i in range(1, 31)])
            wait_for(lambda: len(partner.ledger(dest)["accepted"]) == 31, deadline_s=90,
                     what="every record once the token endpoint is back")
            state = read_states(client, settings.redis_key_prefix, [name])[name]
        ledger = partner.ledger(dest)
    client.close()
    assert state.state == "active", f"a 503 from the token endpoint made the integration {state.state}: {state.reason}"
    # One token at the start, then 30 requests refused together: one fetch per attempt, backing off.
    assert ledger["token_requests"] <= 1 + 4 + 1, f"{ledger['token_requests']} token requests"
