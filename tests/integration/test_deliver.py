"""Delivery workers against the partner simulator, a real broker and Redis (DESIGN §4, §5)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
import redis

from consumers.deliver.cli import sharing_topics, targets_for
from consumers.deliver.payload import idempotency_key
from router import redisconn
from router.controls import read_states, set_state
from router.settings import Settings
from support.delivering import delivery_records, http_spec, partner_sim, publish, running_deliverer
from support.routing import headers_of, make_topology, prepare_services, produce, read_all, zendesk_event
from support.services import wait_for


def _accepted(partner, dest: str) -> dict[str, int]:  # type: ignore[no-untyped-def]
    return dict(partner.ledger(dest)["accepted"])


def _topo(tmp_path: Path, name: str, url: str, **kw: object):  # type: ignore[no-untyped-def]
    return make_topology(tmp_path, name, {"a": http_spec(name, name, f"{name}-d", url, **kw)})  # type: ignore[arg-type]


def test_delivers_once_with_idempotency_key_and_json_body(settings_each_redis: Settings, registry_url: str,
                                                          tmp_path: Path, name: str) -> None:
    settings = settings_each_redis  # standalone and cluster (docs/redis.md)
    with partner_sim(tmp_path) as partner:
        topo = _topo(tmp_path, name, f"{partner.url}/v1/{name}-d")
        publish(settings, registry_url, topo, [zendesk_event("e1", 1, 1, priority="high")])
        with running_deliverer(settings, registry_url, topo, group=name) as worker:
            wait_for(lambda: _accepted(partner, f"{name}-d"), deadline_s=60, what="a delivery")
            wait_for(lambda: worker.outcomes.totals["delivered"] == 1, deadline_s=10, what="delivered counted")
        ledger = partner.ledger(f"{name}-d")
        key = idempotency_key("acme", name, "e1")
        assert ledger["accepted"] == {key: 1}
        record = ledger["records"][0]["record"]
        assert record["incident_key"] == "acme:1"
        assert record["severity"] == 1
        assert record["occurred_at"] == "2026-11-20T10:15:00.000Z", "timestamps go out as ISO-8601 UTC"


def test_retries_5xx_and_honours_retry_after(settings_each_redis: Settings, registry_url: str, tmp_path: Path,
                                             name: str) -> None:
    settings = settings_each_redis  # standalone and cluster (docs/redis.md)
    with partner_sim(tmp_path) as partner:
        partner.rules({"destination": f"{name}-d", "match": {}, "status": 503, "times": 2},
                      {"destination": f"{name}-d", "match": {}, "status": 429, "times": 1, "retry_after": "2"})
        topo = _topo(tmp_path, name, f"{partner.url}/v1/{name}-d", base="10ms")
        publish(settings, registry_url, topo, [zendesk_event("e1", 1, 1)])
        started = time.time()
        with running_deliverer(settings, registry_url, topo, group=name) as worker:
            wait_for(lambda: _accepted(partner, f"{name}-d"), deadline_s=60, what="delivery after retries")
            # Counts are published when offsets are committed.
            wait_for(lambda: worker.outcomes.totals["delivered"] == 1, deadline_s=10, what="the commit")
            assert worker.outcomes.totals["attempt_5xx"] == 2
            assert worker.outcomes.totals["attempt_4xx"] == 1
        ledger = partner.ledger(f"{name}-d")
        assert list(ledger["accepted"].values()) == [1]
        # Backoff base is 10 ms: only honouring Retry-After: 2 makes the delivery take 2 s or more.
        assert ledger["records"][0]["at"] / 1000 - started >= 2.0


def test_4xx_goes_to_the_dlq_with_status_and_body(settings_each_redis: Settings, registry_url: str, tmp_path: Path,
                                                  name: str) -> None:
    settings = settings_each_redis  # standalone and cluster (docs/redis.md)
    with partner_sim(tmp_path) as partner:
        partner.rules({"destination": f"{name}-d", "match": {"field": "title", "equals": "bad"}, "status": 400,
                       "body": {"error": "title rejected"}})
        topo = _topo(tmp_path, name, f"{partner.url}/v1/{name}-d")
        publish(settings, registry_url, topo, [zendesk_event("e1", 1, 1, title="bad"), zendesk_event("e2", 2, 1)])
        with running_deliverer(settings, registry_url, topo, group=name) as worker:
            wait_for(lambda: worker.outcomes.totals["dlq"] == 1 and worker.outcomes.totals["delivered"] == 1,
                     deadline_s=60, what="one DLQ, one delivery")
        [dead] = read_all(settings.kafka_bootstrap_servers or "", f"delivery.{name}-d.dlq", expect=1)
        hdrs = headers_of(dead)
        assert hdrs["router-error-code"] == "deliver.http_4xx"
        assert hdrs["router-error-stage"] == "deliver"
        assert hdrs["router-http-status"] == "400"
        assert "title rejected" in hdrs["router-response-body"]
        assert hdrs["router-event-id"] == "e1"
        assert hdrs["router-attempts"] == "1"


def test_retries_exhausted_after_max_age(settings: Settings, registry_url: str, tmp_path: Path, name: str) -> None:
    with partner_sim(tmp_path) as partner:
        partner.rules({"destination": f"{name}-d", "match": {}, "status": 500})
        # max_age counts from when the record was written, so it includes the worker's group join (~3 s).
        topo = _topo(tmp_path, name, f"{partner.url}/v1/{name}-d", max_age="10s", base="100ms")
        publish(settings, registry_url, topo, [zendesk_event("e1", 1, 1)])
        with running_deliverer(settings, registry_url, topo, group=name) as worker:
            wait_for(lambda: worker.outcomes.totals["dlq"] == 1, deadline_s=60, what="retries exhausted")
        [dead] = read_all(settings.kafka_bootstrap_servers or "", f"delivery.{name}-d.dlq", expect=1)
        hdrs = headers_of(dead)
        assert hdrs["router-error-code"] == "deliver.retries_exhausted"
        assert int(hdrs["router-attempts"]) >= 2
        assert hdrs["router-http-status"] == "500"


def test_a_retrying_key_holds_its_later_records_but_not_other_keys(settings: Settings, registry_url: str,
                                                                   tmp_path: Path, name: str) -> None:
    with partner_sim(tmp_path) as partner:
        partner.rules({"destination": f"{name}-d", "match": {"key": idempotency_key("acme", name, "k-1")},
                       "status": 503, "times": 3, "retry_after": "1"})
        topo = _topo(tmp_path, name, f"{partner.url}/v1/{name}-d")
        events = [zendesk_event("k-1", 7, 1), zendesk_event("k-2", 7, 2), zendesk_event("k-3", 7, 3),
                  zendesk_event("o-1", 8, 1), zendesk_event("o-2", 8, 2)]
        publish(settings, registry_url, topo, events)
        with running_deliverer(settings, registry_url, topo, group=name):
            wait_for(lambda: len(_accepted(partner, f"{name}-d")) == 5, deadline_s=60, what="all five delivered")
        order = [r["idempotency_key"] for r in partner.ledger(f"{name}-d")["records"]]
        keys = {e: idempotency_key("acme", name, e) for e in ("k-1", "k-2", "k-3", "o-1", "o-2")}
        k_positions = [order.index(keys[e]) for e in ("k-1", "k-2", "k-3")]
        assert k_positions == sorted(k_positions), "ticket 7's records stay in order"
        assert order.index(keys["o-2"]) < order.index(keys["k-1"]), "ticket 8 did not wait for ticket 7's retries"


def test_batch_bodies_respect_max_bytes_as_sent(settings: Settings, registry_url: str, tmp_path: Path,
                                               name: str) -> None:
    """D4: ``batch.max_bytes`` limits the JSON body the partner receives, not the Avro records' size."""
    with partner_sim(tmp_path) as partner:
        topo = _topo(tmp_path, name, f"{partner.url}/v1/{name}-d", batch=50, max_bytes=2000)
        events = [zendesk_event(f"e{i}", i, 1, title="Checkout down " + "x" * (i * 37 % 300)) for i in range(60)]
        events.append(zendesk_event("huge", 999, 1, title="y" * 2500))  # over max_bytes by itself: goes alone
        publish(settings, registry_url, topo, events)
        with running_deliverer(settings, registry_url, topo, group=name):
            wait_for(lambda: len(_accepted(partner, f"{name}-d")) == 61, deadline_s=60, what="all 61 delivered")
        bodies = partner.ledger(f"{name}-d")["bodies"]
        assert sum(n for _, n in bodies) == 61, bodies
        too_big = [(size, n) for size, n in bodies if size > 2000 and n > 1]
        assert not too_big, f"bodies over max_bytes 2000 with several records: {too_big}"
        assert any(n > 1 for _, n in bodies), "records are still batched"
        assert any(size > 2500 and n == 1 for size, n in bodies), "the record larger than max_bytes went alone"


def test_multi_status_batch_retries_or_dlqs_only_the_failed_records(settings: Settings, registry_url: str,
                                                                    tmp_path: Path, name: str) -> None:
    with partner_sim(tmp_path) as partner:
        partner.rules({"destination": f"{name}-d", "match": {"field": "title", "equals": "bad"}, "status": 422},
                      {"destination": f"{name}-d", "match": {"field": "title", "equals": "flaky"}, "status": 503,
                       "times": 1})
        topo = _topo(tmp_path, name, f"{partner.url}/v1/{name}-d", batch=10)
        events = [zendesk_event(f"e{i}", i, 1, title=t) for i, t in enumerate(["ok", "bad", "flaky", "ok", "ok"])]
        publish(settings, registry_url, topo, events)
        with running_deliverer(settings, registry_url, topo, group=name) as worker:
            wait_for(lambda: len(_accepted(partner, f"{name}-d")) == 4 and worker.outcomes.totals["dlq"] == 1,
                     deadline_s=60, what="4 delivered, 1 dead-lettered")
        accepted = _accepted(partner, f"{name}-d")
        assert set(accepted.values()) == {1}
        assert idempotency_key("acme", name, "e1") not in accepted
        [dead] = read_all(settings.kafka_bootstrap_servers or "", f"delivery.{name}-d.dlq", expect=1)
        hdrs = headers_of(dead)
        assert hdrs["router-event-id"] == "e1"
        # Its own answer, not the batch's 207 and every record's results.
        assert hdrs["router-http-status"] == "422", hdrs["router-http-status"]
        assert "422" in hdrs["router-response-body"] and idempotency_key("acme", name, "e0") not in hdrs[
            "router-response-body"]


def test_a_403_holds_the_integration_instead_of_dead_lettering_the_backlog(
        settings: Settings, registry_url: str, tmp_path: Path, name: str) -> None:
    client = redis.Redis.from_url(settings.redis_url or "")
    with partner_sim(tmp_path) as partner:
        partner.rules({"destination": f"{name}-d", "match": {}, "status": 403})
        topo = _topo(tmp_path, name, f"{partner.url}/v1/{name}-d")
        publish(settings, registry_url, topo, [zendesk_event(f"e{i}", i, 1) for i in range(20)])
        try:
            with running_deliverer(settings, registry_url, topo, group=name, state_interval_s=0.2) as worker:
                wait_for(lambda: read_states(client, settings.redis_key_prefix, [name])[name].state
                         == "needs_reconnect", deadline_s=60, what="needs_reconnect on a 403")
                assert "403" in read_states(client, settings.redis_key_prefix, [name])[name].reason
                wait_for(lambda: worker.lanes.size() == 20, deadline_s=10, what="the backlog held")
                assert worker.outcomes.totals["dlq"] == 0, "nothing dead-lettered"
                partner.call("DELETE", "/_control/rules")  # the permission was granted
                set_state(client, settings.redis_key_prefix, name, "active")
                wait_for(lambda: len(_accepted(partner, f"{name}-d")) == 20, deadline_s=60, what="delivery after")
        finally:
            set_state(client, settings.redis_key_prefix, name, "active")
            client.close()


def test_a_late_403_to_a_request_sent_before_a_reconnect_does_not_undo_it(
        settings: Settings, registry_url: str, tmp_path: Path, name: str) -> None:
    client = redisconn.connect(settings.redis_url or "")
    with partner_sim(tmp_path) as partner:
        # The partner records the request, then takes 3 s to refuse it: the reconnect lands meanwhile.
        partner.rules({"destination": f"{name}-d", "match": {}, "status": 403, "delay_ms": 3000, "times": 1})
        topo = _topo(tmp_path, name, f"{partner.url}/v1/{name}-d")
        publish(settings, registry_url, topo, [zendesk_event("e1", 1, 1)])
        try:
            with running_deliverer(settings, registry_url, topo, group=name, state_interval_s=0.2):
                wait_for(lambda: partner.ledger(f"{name}-d")["requests"] == 1, deadline_s=60,
                         what="the request in flight")
                set_state(client, settings.redis_key_prefix, name, "active")  # a person reconnected
                wait_for(lambda: _accepted(partner, f"{name}-d"), deadline_s=60, what="delivery after the reconnect")
            state = read_states(client, settings.redis_key_prefix, [name])[name]
            assert state.state == "active", f"the stale 403 held the integration: {state.reason}"
        finally:
            set_state(client, settings.redis_key_prefix, name, "active")
            client.close()


def test_a_re_routed_record_is_not_sent_twice(settings_each_redis: Settings, registry_url: str, tmp_path: Path,
                                              name: str) -> None:
    settings = settings_each_redis  # standalone and cluster (docs/redis.md)
    with partner_sim(tmp_path) as partner:
        topo = _topo(tmp_path, name, f"{partner.url}/v1/{name}-d")
        publish(settings, registry_url, topo, [zendesk_event("e1", 1, 1)])
        with running_deliverer(settings, registry_url, topo, group=name) as worker:
            wait_for(lambda: worker.outcomes.totals["delivered"] == 1, deadline_s=60, what="first delivery")
            publish(settings, registry_url, topo, [zendesk_event("e1", 1, 1)])  # the route worker ran it again
            wait_for(lambda: worker.outcomes.totals["already_delivered"] == 1, deadline_s=60, what="the re-route")
        assert list(partner.ledger(f"{name}-d")["accepted"].values()) == [1]
        assert partner.ledger(f"{name}-d")["requests"] == 1


def test_pause_holds_records_and_resume_delivers_them(settings_each_redis: Settings, registry_url: str,
                                                      tmp_path: Path, name: str) -> None:
    settings = settings_each_redis  # standalone and cluster (docs/redis.md)
    client = redisconn.connect(settings.redis_url or "")
    with partner_sim(tmp_path) as partner:
        topo = _topo(tmp_path, name, f"{partner.url}/v1/{name}-d")
        set_state(client, settings.redis_key_prefix, name, "paused")
        try:
            publish(settings, registry_url, topo, [zendesk_event("e1", 1, 1)])
            with running_deliverer(settings, registry_url, topo, group=name, state_interval_s=0.2) as worker:
                wait_for(lambda: worker.lanes.size() == 1, deadline_s=60, what="the record to be held")
                assert partner.ledger(f"{name}-d")["requests"] == 0
                set_state(client, settings.redis_key_prefix, name, "active")
                wait_for(lambda: _accepted(partner, f"{name}-d"), deadline_s=30, what="delivery after resume")
        finally:
            set_state(client, settings.redis_key_prefix, name, "active")


def test_oauth2_refreshes_once_then_needs_reconnect(settings: Settings, registry_url: str, tmp_path: Path,
                                                    name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    client = redis.Redis.from_url(settings.redis_url or "")
    with partner_sim(tmp_path, "--require-token", "--client-id", "cid", "--client-secret", "s3cret") as partner:
        auth = (f"{{type: oauth2_client_credentials, token_url: '{partner.url}/oauth/token', client_id: cid, "
                "client_secret: 'env:ROUTER_TEST_CLIENT_SECRET'}")
        monkeypatch.setenv("ROUTER_TEST_CLIENT_SECRET", "s3cret")
        topo = _topo(tmp_path, name, f"{partner.url}/v1/{name}-d", auth=auth)
        publish(settings, registry_url, topo, [zendesk_event("e1", 1, 1)])
        try:
            with running_deliverer(settings, registry_url, topo, group=name, state_interval_s=0.2) as worker:
                wait_for(lambda: _accepted(partner, f"{name}-d"), deadline_s=60, what="delivery with a token")
                partner.call("POST", "/_control/expire_tokens")
                publish(settings, registry_url, topo, [zendesk_event("e2", 2, 1)])
                wait_for(lambda: len(_accepted(partner, f"{name}-d")) == 2, deadline_s=60, what="refresh on 401")
                assert partner.ledger()["tokens_issued"] == 2
                # Credentials revoked; the partner echoes the credential it refused (some do).
                echoed = {"error": "invalid_token", "detail": "Authorization: Bearer sk_live_9f8e7d6c5b"}
                partner.rules({"destination": f"{name}-d", "match": {}, "status": 401, "body": echoed})
                publish(settings, registry_url, topo, [zendesk_event("e3", 3, 1)])
                wait_for(lambda: read_states(client, settings.redis_key_prefix, [name])[name].state
                         == "needs_reconnect", deadline_s=60, what="needs_reconnect")
                reason = read_states(client, settings.redis_key_prefix, [name])[name].reason
                assert "invalid_token" in reason and "sk_live" not in reason and "***" in reason, reason
                assert worker.lanes.size() == 1, "the record waits, it is not lost"
                partner.call("DELETE", "/_control/rules")
                set_state(client, settings.redis_key_prefix, name, "active")  # the reconnect action
                wait_for(lambda: len(_accepted(partner, f"{name}-d")) == 3, deadline_s=60,
                         what="delivery after reconnect")
        finally:
            set_state(client, settings.redis_key_prefix, name, "active")


def test_shared_rate_limit_keeps_under_the_partner_limit_and_adapts_to_429(settings: Settings, registry_url: str,
                                                                          tmp_path: Path, name: str) -> None:
    with partner_sim(tmp_path, "--rate", "5", "--per", "1") as partner:
        topo = make_topology(tmp_path, name, {
            "a": http_spec(name, name, f"{name}-d", f"{partner.url}/v1/{name}-d", rate="{requests: 4, per: 1s}"),
        })
        publish(settings, registry_url, topo, [zendesk_event(f"e{i}", i, 1) for i in range(12)])
        with running_deliverer(settings, registry_url, topo, group=name):
            wait_for(lambda: len(_accepted(partner, f"{name}-d")) == 12, deadline_s=90, what="12 deliveries")
        assert partner.ledger(f"{name}-d")["by_status"].get("429", 0) == 0, "4/s never trips a 5/s partner"

    with partner_sim(tmp_path, "--rate", "3", "--per", "1") as partner:
        other = f"{name}-x"
        (tmp_path / "x").mkdir()
        topo = make_topology(tmp_path / "x", other, {
            "a": http_spec(other, other, f"{other}-d", f"{partner.url}/v1/{other}-d", rate="{requests: 50, per: 1s}"),
        })
        publish(settings, registry_url, topo, [zendesk_event(f"e{i}", i, 1) for i in range(15)])
        with running_deliverer(settings, registry_url, topo, group=other):
            wait_for(lambda: len(_accepted(partner, f"{other}-d")) == 15, deadline_s=120, what="15 deliveries")
        assert partner.ledger(f"{other}-d")["by_status"].get("429", 0) > 0
        assert list(_accepted(partner, f"{other}-d").values()) == [1] * 15
        client = redis.Redis.from_url(settings.redis_url or "")
        adapted = client.hgetall(f"{settings.redis_key_prefix}rl:{other}-d:adapt")
        # Only a 429 (penalize) creates this record; it may have recovered towards 1.0 since.
        assert adapted, "the partner's 429s lowered the shared rate"
        assert 0.05 <= float(adapted[b"factor"]) <= 1.0


def test_a_replayed_record_that_fails_again_keeps_its_history(settings: Settings, registry_url: str,
                                                              tmp_path: Path, name: str) -> None:
    with partner_sim(tmp_path) as partner:
        partner.rules({"destination": f"{name}-d", "match": {}, "status": 422})
        topo = _topo(tmp_path, name, f"{partner.url}/v1/{name}-d")
        ids = prepare_services(settings, registry_url, topo)
        [(key, value, headers)] = delivery_records(topo, ids, [zendesk_event("e1", 1, 1)])
        history = [("router-replay-count", b"1"), ("router-first-failed-at", b"1700000000000"),
                   ("router-attempts", b"4"), ("router-original-topic", f"delivery.{name}-d".encode())]
        produce(settings.kafka_bootstrap_servers or "", f"delivery.{name}-d", [(key, value, headers + history)])
        with running_deliverer(settings, registry_url, topo, group=name):
            [dead] = read_all(settings.kafka_bootstrap_servers or "", f"delivery.{name}-d.dlq", expect=1)
    hdrs = headers_of(dead)
    assert hdrs["router-first-failed-at"] == "1700000000000", "the first failure's time is kept"
    assert hdrs["router-attempts"] == "5", "attempts count on across replays"
    assert hdrs["router-http-status"] == "422"


def test_event_ids_that_are_not_utf8_or_too_long_are_dead_lettered_never_merged(
        settings: Settings, registry_url: str, tmp_path: Path, name: str) -> None:
    """Two different undecodable event ids must not become one id (the second skipped as already
    delivered: a silent loss); an id past the limit is refused too. Each gets its own dead letter."""
    with partner_sim(tmp_path) as partner:
        topo = _topo(tmp_path, name, f"{partner.url}/v1/{name}-d")
        schema_ids = prepare_services(settings, registry_url, topo)
        [(key, value, headers)] = delivery_records(topo, schema_ids, [zendesk_event("ok", 1, 1)])
        bad_ids = [b"\xff\xfe", b"\xff\xfd", b"x" * 257]
        records = [(key, value, [(k, bad if k == "router-event-id" else v) for k, v in headers]) for bad in bad_ids]
        produce(settings.kafka_bootstrap_servers or "", f"delivery.{name}-d", [*records, (key, value, headers)])
        with running_deliverer(settings, registry_url, topo, group=name) as worker:
            wait_for(lambda: worker.outcomes.totals["dlq"] == 3 and worker.outcomes.totals["delivered"] == 1,
                     deadline_s=60, what="three dead letters and one delivery")
        assert _accepted(partner, f"{name}-d") == {idempotency_key("acme", name, "ok"): 1}
        dead = read_all(settings.kafka_bootstrap_servers or "", f"delivery.{name}-d.dlq", expect=3)
        assert [dict(m.headers())["router-error-code"] for m in dead] == [b"deliver.bad_header"] * 3
        assert sorted(dict(m.headers())["router-event-id"] for m in dead) == sorted(bad_ids), "kept byte for byte"


def test_only_with_its_own_group_skips_the_records_of_integrations_sharing_the_topic(
        settings: Settings, registry_url: str, tmp_path: Path, name: str) -> None:
    """Two integrations deliver to one destination topic; a worker run for one of them (its own
    group) delivers that one's records and skips the other's — never dead-letters them as unknown."""
    other, dest = f"{name}-b", f"{name}-d"
    with partner_sim(tmp_path) as partner:
        url = f"{partner.url}/v1/{dest}"
        topo = make_topology(tmp_path, name, {"a": http_spec(name, name, dest, url),
                                              "b": http_spec(other, name, dest, url)})
        events = [zendesk_event(f"e{i}", i, 1) for i in range(10)]
        publish(settings, registry_url, topo, events)  # 20 records: each event for both integrations
        with running_deliverer(settings, registry_url, topo, group=name, only=[name],
                               others=sharing_topics(topo.catalog, targets_for(topo.catalog, [name]))) as worker:
            wait_for(lambda: worker.outcomes.totals["delivered"] == 10
                     and worker.outcomes.totals["not_selected"] == 10, deadline_s=60, what="10 delivered, 10 skipped")
        assert worker.outcomes.totals["dlq"] == 0
        assert _accepted(partner, dest) == {idempotency_key("acme", name, e["event_id"]): 1 for e in events}


def test_only_in_the_shared_group_is_refused_when_it_would_strand_other_integrations(
        tmp_path: Path, name: str) -> None:
    other, dest = f"{name}-b", f"{name}-d"
    topo = make_topology(tmp_path, name, {"a": http_spec(name, name, dest, "http://127.0.0.1:9/x"),
                                          "b": http_spec(other, name, dest, "http://127.0.0.1:9/x")})
    env = {**os.environ, "REDIS_URL": "redis://127.0.0.1:9/0", "SCHEMA_REGISTRY_URL": "http://127.0.0.1:9"}
    done = subprocess.run([sys.executable, "-m", "router", "deliver", "--integrations", str(topo.integrations),
                           "--schemas", str(topo.schemas), "--only", name], env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    assert f"--only leaves out {other}" in done.stderr and "--group" in done.stderr
    assert "Traceback" not in done.stderr


def test_integrations_status_for_scripts(settings: Settings, tmp_path: Path, name: str) -> None:
    topo = _topo(tmp_path, name, "http://127.0.0.1:9/v1/x")
    client = redisconn.connect(settings.redis_url or "")
    prefix = f"{name}:"
    try:
        set_state(client, prefix, name, "paused", "maintenance")
        env = {**os.environ, "REDIS_URL": settings.redis_url or "", "ROUTER_REDIS_KEY_PREFIX": prefix}
        argv = [sys.executable, "-m", "router", "integrations", "status", "--integrations", str(topo.integrations),
                "--schemas", str(topo.schemas)]
        plain = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
        assert plain.returncode == 0, plain.stderr
        assert plain.stdout.splitlines() == [f"{name}\tpaused\tmaintenance"]
        shown = subprocess.run([*argv, "--json"], env=env, capture_output=True, text=True, timeout=60, check=False)
        assert shown.returncode == 0, shown.stderr
        [doc] = [orjson.loads(line) for line in shown.stdout.splitlines()]
        assert (doc["integration"], doc["state"], doc["reason"]) == (name, "paused", "maintenance")
        assert isinstance(doc["since_ms"], int) and doc["since_ms"] > 0
    finally:
        client.close()
