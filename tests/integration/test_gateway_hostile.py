"""The gateway against a hostile sender (issue 15): every input a worker could choke on is refused before any 202.

One test per finding, each through the real gateway on the real broker: bodies nested too deep, event ids
and entity keys too long, tenant names that are not tenant names, Kafka records over the topic's maximum
message size, and GitHub-style replays (same body and signature, new ``X-GitHub-Delivery``), which must
be the same event as the original. Every refusal writes nothing: each test ends by reading the topic.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import orjson

from router.settings import Settings
from support.routing import headers_of, read_all
from support.signing import sign_github
from tests.integration.gatewaying import Answer, request, running_gateway, std_headers, ticket_event, write_sources

GITHUB_SECRET = "gh-gateway-test-secret"


def hook(url: str, tenant: str, source: str, body: bytes, headers: dict[str, str]) -> Answer:
    return request(url, "POST", f"/v1/hooks/{tenant}/{source}", body, headers)


def refused(answer: Answer, status: int, code: str) -> dict[str, object]:
    """Assert ``answer`` is the problem+json refusal ``status``/``code``; return the problem."""
    assert answer.status == status, (code, answer.status, answer.body[:300])
    assert answer.headers["content-type"] == "application/problem+json"
    problem: dict[str, object] = answer.json()
    assert (problem["code"], problem["status"]) == (code, status), problem
    return problem


def nested(depth: int) -> bytes:
    """A JSON string inside ``depth`` nested arrays (written by hand: orjson.dumps stops at 254 levels)."""
    return b"[" * depth + b'"x"' + b"]" * depth


def ticket(event_id: str, title: object, ticket_id: object = 4521) -> bytes:
    """A Zendesk-like event; a ``bytes`` title is spliced in as raw JSON."""
    raw = title if isinstance(title, bytes) else orjson.dumps(title)
    return (b'{"event_id": ' + orjson.dumps(event_id) + b', "type": "ticket.escalated", "sequence": 1, '
            b'"data": {"ticket": {"id": ' + orjson.dumps(ticket_id) + b', "title": ' + raw + b"}}}")


def test_body_nested_deeper_than_the_limit_is_400_too_deep(settings: Settings, tmp_path: Path, name: str) -> None:
    # The finding: a 1,000-deep title (about 2 KB, validly signed) was answered 202. Depth counts containers:
    # the event object, data, ticket, then the title's arrays.
    hostile = ticket("evt-deep", nested(1000))
    at_limit = ticket("evt-64", nested(61))  # 3 + 61 = 64: the default limit, accepted
    over_limit = ticket("evt-65", nested(62))
    beyond_parser = b'{"event_id": "evt-2000", "data": ' + b"[" * 2000 + b"]" * 2000 + b"}"  # orjson's own limit
    with running_gateway(settings, write_sources(tmp_path / "sources", name)) as url:
        for body in (hostile, over_limit, beyond_parser):
            problem = refused(hook(url, "acme", name, body, std_headers(body)), 400, "gateway.too_deep")
            assert problem["max_depth"] == 64, problem
        assert hook(url, "acme", name, at_limit, std_headers(at_limit)).status == 202
        records = read_all(settings.kafka_bootstrap_servers or "", f"ingest.{name}", expect=1, settle_s=1)
    assert [r.value() for r in records] == [at_limit]


def test_nesting_limit_is_set_per_source(settings: Settings, tmp_path: Path, name: str) -> None:
    sources = tmp_path / "sources"
    sources.mkdir()
    (sources / f"{name}.yaml").write_text(
        f"name: {name}\nsignature: {{scheme: standard_webhooks, secrets: ['env:GW_TEST_SECRET']}}\n"
        "event_id: event_id\nentity_key: data.ticket.id\nmax_depth: 6\n")
    six, seven = ticket("evt-6", nested(3)), ticket("evt-7", nested(4))
    with running_gateway(settings, sources) as url:
        problem = refused(hook(url, "acme", name, seven, std_headers(seven)), 400, "gateway.too_deep")
        assert problem["max_depth"] == 6
        assert hook(url, "acme", name, six, std_headers(six)).status == 202
        records = read_all(settings.kafka_bootstrap_servers or "", f"ingest.{name}", expect=1, settle_s=1)
    assert [r.value() for r in records] == [six]


def test_event_id_and_entity_key_over_their_lengths_are_400(settings: Settings, tmp_path: Path, name: str) -> None:
    long_id, longest_id = "e" * 257, "e" * 256
    long_key, longest_key = "k" * 513, "k" * 512
    from_body = ticket(long_id, "t")
    long_header = ticket_event(None)  # no event id in the body: the webhook-id header is the event id
    long_key_body = ticket("evt-key", "t", long_key)
    longest = ticket(longest_id, "t", longest_key)
    with running_gateway(settings, write_sources(tmp_path / "sources", name)) as url:
        problem = refused(hook(url, "acme", name, from_body, std_headers(from_body)), 400, "gateway.event_id_too_long")
        assert (problem["field"], problem["max_length"]) == ("event_id", 256)
        assert long_id not in problem["detail"]  # type: ignore[operator]
        problem = refused(hook(url, "acme", name, long_header, std_headers(long_header, msg_id="m" * 300)), 400,
                          "gateway.event_id_too_long")
        assert problem["header"] == "webhook-id"
        problem = refused(hook(url, "acme", name, long_key_body, std_headers(long_key_body)), 400,
                          "gateway.entity_key_too_long")
        assert (problem["field"], problem["max_length"]) == ("data.ticket.id", 512)
        answer = hook(url, "acme", name, longest, std_headers(longest))
        assert answer.status == 202, answer.body
        [record] = read_all(settings.kafka_bootstrap_servers or "", f"ingest.{name}", expect=1, settle_s=1)
    assert record.value() == longest and record.key() == longest_key.encode()
    assert headers_of(record)["router-event-id"] == longest_id


def test_tenant_names_outside_the_pattern_are_404_without_echo(settings: Settings, tmp_path: Path, name: str) -> None:
    # As sent on the wire (percent-encoded where HTTP needs it); aiohttp hands the handler the decoded name.
    hostile = {"%2E%2E": "..", "a%2Fb": "a/b", "acme%0A": "acme\n", "acme%00": "acme\x00",
               "%3Cscript%3Ealert(1)%3C%2Fscript%3E": "<script>", "ACME": "ACME", "-acme": "-acme",
               "a" * 64: "a" * 64, "acme%20corp": "acme corp", "%C3%A9": "\u00e9"}
    body = ticket_event("evt-tenant")
    with running_gateway(settings, write_sources(tmp_path / "sources", name)) as url:
        for wire, decoded in hostile.items():
            answer = hook(url, wire, name, body, std_headers(body))
            problem = refused(answer, 404, "gateway.invalid_tenant")
            assert decoded.encode() not in answer.body and wire.encode() not in answer.body, answer.body
            assert "tenant" not in problem or problem["tenant"] is None
        # The names tests and docs use pass, up to 63 characters.
        for tenant in ("acme", "globex", "not-this-one", "t_1", "0" + "a" * 62):
            assert hook(url, tenant, name, body, std_headers(body)).status == 202, tenant
        records = read_all(settings.kafka_bootstrap_servers or "", f"ingest.{name}", expect=5, settle_s=1)
    assert sorted(headers_of(r)["router-tenant"] for r in records) == sorted(
        ["acme", "globex", "not-this-one", "t_1", "0" + "a" * 62])


def test_record_over_the_max_message_size_is_413_before_any_202(settings: Settings, tmp_path: Path,
                                                                  name: str) -> None:
    sources = tmp_path / "sources"
    sources.mkdir()
    # The source accepts bodies up to 1,900,000 bytes; the topic (default 1 MiB) does not take such records.
    (sources / f"{name}.yaml").write_text(
        f"name: {name}\nsignature: {{scheme: standard_webhooks, secrets: ['env:GW_TEST_SECRET']}}\n"
        "event_id: event_id\nentity_key: data.ticket.id\nmax_bytes: 1900000\n")
    limit = 1024 * 1024

    def sized(event_id: str, key: str, size: int) -> bytes:
        body = ticket(event_id, "", key)
        return ticket(event_id, "x" * (size - len(body)), key)

    big = sized("evt-big", "k", 1_200_000)  # the body alone is over the limit
    # A body under the limit whose key and headers take the record over it.
    near = sized("e" * 250, "k" * 500, limit - 300)
    fits = sized("evt-fits", "k", limit - 2000)
    assert len(near) < limit < len(near) + 500 + 250
    with running_gateway(settings, sources) as url:
        for body in (big, near):
            problem = refused(hook(url, "acme", name, body, std_headers(body)), 413, "gateway.too_large")
            assert problem["max_record_bytes"] == limit, problem
        answer = hook(url, "acme", name, fits, std_headers(fits))
        assert answer.status == 202, answer.body
        records = read_all(settings.kafka_bootstrap_servers or "", f"ingest.{name}", expect=1, settle_s=1)
    assert [r.value() for r in records] == [fits]


def test_github_replay_with_a_new_delivery_id_is_the_same_event(settings: Settings, tmp_path: Path,
                                                                name: str) -> None:
    sources = tmp_path / "sources"
    sources.mkdir()
    (sources / "github.secret").write_text(GITHUB_SECRET)
    (sources / f"{name}.yaml").write_text(
        f"name: {name}\nsignature: {{scheme: github, secrets: ['file:github.secret']}}\n"
        "event_id_header: X-GitHub-Delivery\nevent_type: action\nentity_key: repository.id\n")
    body = b'{"action": "opened", "issue": {"number": 7}, "repository": {"id": 1296269, "full_name": "o/r"}}'
    other = b'{"action": "closed", "issue": {"number": 7}, "repository": {"id": 1296269, "full_name": "o/r"}}'
    signed = {"Content-Type": "application/json", "X-Hub-Signature-256": sign_github(GITHUB_SECRET.encode(), body)}
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    with running_gateway(settings, sources) as url:
        # The original, then the same body and signature replayed under new delivery ids.
        deliveries = ["72d3162e-cc78-11e3-81ab-4c9367dc0958", "replay-1", "replay-2"]
        answers = [hook(url, "acme", name, body, {**signed, "X-GitHub-Delivery": d}) for d in deliveries]
        assert [a.status for a in answers] == [202, 202, 202], [a.body for a in answers]
        assert {a.json()["event_id"] for a in answers} == {digest}
        # A different body is a different event.
        changed = hook(url, "acme", name, other, {"Content-Type": "application/json", "X-GitHub-Delivery": "d-2",
                                                  "X-Hub-Signature-256": sign_github(GITHUB_SECRET.encode(), other)})
        assert changed.status == 202 and changed.json()["event_id"] == "sha256:" + hashlib.sha256(other).hexdigest()
        records = read_all(settings.kafka_bootstrap_servers or "", f"ingest.{name}", expect=4, settle_s=1)
    by_delivery = {headers_of(r)["router-delivery-id"]: headers_of(r)["router-event-id"] for r in records}
    # Downstream dedupe is by event id (DESIGN §4): the replays are duplicates of the original, not new events.
    assert by_delivery == {**dict.fromkeys(deliveries, digest), "d-2": changed.json()["event_id"]}
