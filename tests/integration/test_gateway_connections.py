"""The gateway with connections, on the real broker: each tenant's own secrets, for every signing scheme.

Tenant A's valid signature is never accepted at tenant B's URL; a tenant without an active
connection gets exactly the unknown-source 404; changes to connections apply within seconds.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from router.connections.keyring import KeyRing
from router.connections.model import Connection
from router.connections.store import ConnectionStore, ConnectionWriter
from router.settings import Secret, Settings
from router.spec.sources import load_sources
from support.routing import headers_of, read_all
from support.services import wait_for
from support.signing import sign_github, sign_standard_webhooks, sign_stripe
from tests.integration.gatewaying import Answer, request, running_gateway

RING = KeyRing.parse(base64.b64encode(bytes(range(32))).decode(), "test")
SPEC_SECRET = "whsec_" + base64.b64encode(b"the-spec-secret-shared-by-all-00").decode()
ENV = {"SPEC_SECRET": SPEC_SECRET}


def whsec(seed: str) -> str:
    return "whsec_" + base64.b64encode(seed.encode().ljust(32, b"0")).decode()


# tenant -> its own secret (the same string is used for every scheme: whsec_ decoded for standard_webhooks)
SECRETS = {"acme": whsec("acme-secret"), "globex": whsec("globex-secret")}


def _key(scheme: str, secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix("whsec_")) if scheme == "standard_webhooks" else secret.encode()


def signed(scheme: str, secret: str, body: bytes) -> dict[str, str]:
    """Headers signing ``body`` under ``scheme`` with ``secret``."""
    now = int(time.time())
    key = _key(scheme, secret)
    headers = {"Content-Type": "application/json"}
    if scheme == "standard_webhooks":
        headers |= {"webhook-id": "msg-1", "webhook-timestamp": str(now),
                    "webhook-signature": sign_standard_webhooks(key, "msg-1", now, body)}
    elif scheme == "stripe":
        headers["Stripe-Signature"] = sign_stripe(key, now, body)
    elif scheme == "github":
        headers["X-Hub-Signature-256"] = sign_github(key, body)
    return headers


SCHEMES = ("standard_webhooks", "stripe", "github")


def write_sources(folder: Path, name: str) -> Path:
    """One source per scheme, ``<name>-<scheme>``, all with the same spec secret (ignored with connections)."""
    folder.mkdir(parents=True, exist_ok=True)
    for scheme in SCHEMES:
        (folder / f"{name}-{scheme}.yaml").write_text(
            f"name: {name}-{scheme}\nsignature: {{scheme: {scheme}, secrets: ['env:SPEC_SECRET']}}\n"
            "event_id: id\nentity_key: account\n")
    (folder / f"{name}-none.yaml").write_text(f"name: {name}-none\nsignature: {{scheme: none}}\nevent_id: id\n")
    return folder


def post(url: str, tenant: str, source: str, body: bytes, headers: dict[str, str]) -> Answer:
    return request(url, "POST", f"/v1/hooks/{tenant}/{source}", body, headers)


@pytest.fixture
def topic(name: str) -> str:
    return f"_connections-{name}"


def _connect(writer: ConnectionWriter, name: str, tenant: str, **changes: object) -> None:
    for scheme in (*SCHEMES, "none"):
        secrets = () if scheme == "none" else (Secret(SECRETS[tenant]),)
        writer.put(Connection(tenant, f"{name}-{scheme}", signing_secrets=secrets, **changes))  # type: ignore[arg-type]


def test_each_tenant_verifies_with_its_own_secret_for_every_scheme(settings: Settings, tmp_path: Path, name: str,
                                                                   topic: str) -> None:
    writer = ConnectionWriter(settings, RING, topic)
    _connect(writer, name, "acme")
    _connect(writer, name, "globex")
    writer.put(Connection("paused-co", f"{name}-github", state="paused", signing_secrets=(Secret(SECRETS["acme"]),)))
    sources = load_sources(write_sources(tmp_path / "sources", name), ENV)
    store = ConnectionStore(settings, RING, topic)
    try:
        with running_gateway(settings, sources, connections=store) as url:
            unknown = post(url, "acme", "no-such-source", b"{}", {"Content-Type": "application/json"})
            assert unknown.status == 404
            accepted = 0
            for scheme in SCHEMES:
                source = f"{name}-{scheme}"
                body = f'{{"id": "evt-{scheme}", "account": "a1"}}'.encode()
                acme_signed = signed(scheme, SECRETS["acme"], body)
                ok = post(url, "acme", source, body, acme_signed)
                assert ok.status == 202, (scheme, ok.body)
                accepted += 1
                # acme's valid signature at globex's URL: refused.
                crossed = post(url, "globex", source, body, acme_signed)
                assert crossed.status == 401 and crossed.json()["code"] == "gateway.bad_signature", scheme
                # globex's own signature at globex's URL: accepted.
                assert post(url, "globex", source, body, signed(scheme, SECRETS["globex"], body)).status == 202
                accepted += 1
                # The spec's shared secret no longer opens any tenant's URL.
                assert post(url, "acme", source, body, signed(scheme, SPEC_SECRET, body)).status == 401
                # No connection, or not active: exactly the unknown-source answer.
                for tenant in ("initech", "paused-co"):
                    refused = post(url, tenant, source, body, acme_signed)
                    assert refused.status == 404, (scheme, tenant)
                    assert refused.json() | {"detail": ""} == unknown.json() | {"detail": ""}
                    assert refused.json()["detail"] == f"no webhook source named {source!r}"
            none_body = b'{"id": "evt-none"}'
            plain = {"Content-Type": "application/json"}
            assert post(url, "acme", f"{name}-none", none_body, plain).status == 202
            accepted += 1
            assert post(url, "initech", f"{name}-none", none_body, plain).status == 404
        tenants = sorted(headers_of(r)["router-tenant"]
                         for scheme in (*SCHEMES, "none")
                         for r in read_all(settings.kafka_bootstrap_servers or "", f"ingest.{name}-{scheme}",
                                           expect=1 if scheme == "none" else 2, settle_s=0.5))
        assert tenants == sorted(["acme", "globex"] * 3 + ["acme"])
    finally:
        writer.close()


def test_rotation_and_disconnect_apply_within_seconds(settings: Settings, tmp_path: Path, name: str,
                                                      topic: str) -> None:
    writer = ConnectionWriter(settings, RING, topic)
    _connect(writer, name, "acme")
    sources = load_sources(write_sources(tmp_path / "sources", name), ENV)
    source = f"{name}-standard_webhooks"
    new = whsec("acme-rotated")

    def status(secret: str) -> Callable[[], int]:
        body = b'{"id": "evt-r", "account": "a1"}'
        return lambda: post(url, "acme", source, body, signed("standard_webhooks", secret, body)).status

    try:
        with running_gateway(settings, sources, connections=ConnectionStore(settings, RING, topic)) as url:
            assert status(SECRETS["acme"])() == 202 and status(new)() == 401
            writer.put(Connection("acme", source, signing_secrets=(Secret(new), Secret(SECRETS["acme"]))))
            wait_for(lambda: status(new)() == 202, deadline_s=10, what="the rotated secret to be accepted")
            assert status(SECRETS["acme"])() == 202  # both during the rotation
            writer.put(Connection("acme", source, state="disconnected"))
            wait_for(lambda: status(new)() == 404, deadline_s=10, what="the disconnect to apply")
    finally:
        writer.close()
