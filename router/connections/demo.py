"""The demo connections ``router dev`` creates: two tenants, each with its own signing secrets.

``acme`` signs with the published development secrets of ``producers.webhooks.devsecrets``
(what the README's curl example and the e2e tests use); ``globex`` with different published
ones, so a request signed for acme is refused at globex's URL from the first command on.
Never use these outside a development machine: everyone can read them here.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Mapping

from router.connections.keyring import KeyRing
from router.connections.model import Connection
from router.connections.store import DEFAULT_TOPIC, ConnectionStore, ConnectionWriter
from router.settings import Secret, Settings

CATCH_UP_S = 30.0


def _whsec(text: str) -> str:
    return "whsec_" + base64.b64encode(text.encode()).decode()


def demo_secrets(dev_secrets: Mapping[str, str]) -> dict[tuple[str, str], str]:
    """(tenant, source) → signing secret, development only; acme's are ``dev_secrets`` (the gateway's
    published development secrets, ``producers.webhooks.devsecrets.DEV_SECRETS``)."""
    return {
        ("acme", "zendesk"): dev_secrets["ZENDESK_WEBHOOK_SECRET"],
        ("acme", "stripe"): dev_secrets["STRIPE_WEBHOOK_SECRET"],
        ("globex", "zendesk"): _whsec("RouterDevOnlyGlobexZendeskSecret"),
        ("globex", "stripe"): "whsec_router_dev_only_globex_stripe_secret",
        ("acme", "github"): dev_secrets["GITHUB_WEBHOOK_SECRET"],
        ("globex", "github"): "router-dev-only-globex-github-secret",
    }


def create_demo_connections(settings: Settings, ring: KeyRing, secrets: Mapping[tuple[str, str], str],
                            topic: str = DEFAULT_TOPIC) -> list[str]:
    """Create the demo connections that do not exist yet (an existing one is left as it is); return those created."""
    created = []
    with ConnectionStore(settings, ring, topic) as store:
        store.wait_caught_up(CATCH_UP_S)
        writer = ConnectionWriter(settings, ring, topic)
        try:
            now = time.time_ns() // 1_000_000
            for (tenant, source), secret in secrets.items():
                if store.get(tenant, source) is None and (tenant, source) not in store.unreadable:
                    writer.put(Connection(tenant, source, signing_secrets=(Secret(secret),), created_at_ms=now,
                                          updated_at_ms=now))
                    created.append(f"{tenant}/{source}")
        finally:
            writer.close()
    return created
