"""The ``_connections`` topic on the real broker: written, read into memory, followed live, never in clear."""

from __future__ import annotations

import base64

from confluent_kafka.admin import ConfigResource, ResourceType

from router.connections.keyring import KeyRing
from router.connections.model import Basic, Bearer, Connection
from router.connections.store import ConnectionStore, ConnectionWriter
from router.kafka import admin_client
from router.settings import Secret, Settings
from support.routing import read_all
from support.services import wait_for

RING = KeyRing.parse(base64.b64encode(bytes(range(32))).decode(), "test")
SIGNING = "whsec_StoreTestSigningSecretABCDEFGH"
TOKEN = "store-test-bearer-token-SECRET-0001"
PASSWORD = "store-test-basic-password-SECRET-02"


def test_written_connections_are_seen_live_by_every_reader_and_never_in_clear(settings: Settings, name: str) -> None:
    topic = f"_connections-{name}"
    writer = ConnectionWriter(settings, RING, topic)
    try:
        writer.put(Connection("acme", "zendesk", credentials=Bearer(Secret(TOKEN)),
                              signing_secrets=(Secret(SIGNING),), settings={"subdomain": "acme"}))
        with ConnectionStore(settings, RING, topic) as early:
            assert early.wait_caught_up(30), "the store did not catch up"
            first = early.get("acme", "zendesk")
            assert first is not None and first.signing_secrets[0].reveal() == SIGNING
            assert first.settings == {"subdomain": "acme"}
            assert early.get("globex", "zendesk") is None
            # A change made after start is visible in every reader within seconds.
            with ConnectionStore(settings, RING, topic) as late:
                assert late.wait_caught_up(30)
                writer.put(Connection("globex", "zendesk", credentials=Basic("g", Secret(PASSWORD))))
                writer.put(Connection("acme", "zendesk", state="paused"))
                for store in (early, late):
                    wait_for(lambda s=store: s.get("globex", "zendesk") is not None  # type: ignore[misc]
                             and s.get("acme", "zendesk").state == "paused",  # type: ignore[union-attr]
                             deadline_s=10, what="the change to reach the reader")
                writer.delete("globex", "zendesk")
                wait_for(lambda: late.get("globex", "zendesk") is None, deadline_s=10, what="the tombstone")
                assert [c.key for c in late.all()] == ["acme/zendesk"]
    finally:
        writer.close()
    records = read_all(settings.kafka_bootstrap_servers or "", topic, expect=4)
    raw = b"".join((r.key() or b"") + (r.value() or b"") for r in records)
    for secret in (SIGNING, TOKEN, PASSWORD):
        assert secret.encode() not in raw
        assert base64.b64encode(secret.encode()) not in raw
    assert records[-1].value() is None  # the tombstone
    admin = admin_client(settings)  # kept alive while its future resolves
    [described] = admin.describe_configs([ConfigResource(ResourceType.TOPIC, topic)]).values()
    assert described.result(10)["cleanup.policy"].value == "compact"


def test_a_record_this_process_cannot_decrypt_is_not_in_effect(settings: Settings, name: str) -> None:
    topic = f"_connections-{name}"
    other = KeyRing.parse("other:" + base64.b64encode(bytes(range(1, 33))).decode(), "test")
    writer, foreign = ConnectionWriter(settings, RING, topic), ConnectionWriter(settings, other, topic)
    try:
        writer.put(Connection("acme", "zendesk", signing_secrets=(Secret(SIGNING),)))
        with ConnectionStore(settings, RING, topic) as store:
            assert store.wait_caught_up(30) and store.get("acme", "zendesk") is not None
            foreign.put(Connection("acme", "zendesk", signing_secrets=(Secret("whsec_attacker"),)))
            wait_for(lambda: ("acme", "zendesk") in store.unreadable, deadline_s=10, what="the unreadable record")
            assert store.get("acme", "zendesk") is None
            assert store.unreadable[("acme", "zendesk")].code == "connections.unknown_key"
    finally:
        writer.close()
        foreign.close()


def test_an_empty_topic_is_caught_up(settings: Settings, name: str) -> None:
    with ConnectionStore(settings, RING, f"_connections-{name}") as store:
        assert store.wait_caught_up(30) and store.all() == []
