"""Helpers for gateway tests: source specs in a tmp folder, the app on a real port, signed raw HTTP."""

from __future__ import annotations

import asyncio
import base64
import http.client
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from producers.webhooks.app import create_app
from producers.webhooks.options import GatewayOptions
from router.connections.store import ConnectionStore
from router.procs import free_port
from router.settings import Settings
from router.spec.sources import WebhookSource, decode_standard_webhooks_secret, load_sources
from support.signing import sign_standard_webhooks, sign_stripe

WHSEC = "whsec_" + base64.b64encode(b"gateway-test-secret-0123456789ab").decode()
STRIPE_SECRET = "whsec_stripe_gateway_test"
ENV = {"GW_TEST_SECRET": WHSEC, "GW_STRIPE_SECRET": STRIPE_SECRET}
KEY = decode_standard_webhooks_secret(WHSEC)


def write_sources(folder: Path, name: str, *, max_bytes: int = 1_000_000, tenants: str = '["*"]') -> Path:
    """A Standard Webhooks source ``name`` and a Stripe one ``name``-s, in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.yaml").write_text(
        f"name: {name}\ntenants: {tenants}\nsignature: {{scheme: standard_webhooks, secrets: ['env:GW_TEST_SECRET']}}\n"
        f"event_id: event_id\nevent_type: type\nentity_key: data.ticket.id\nmax_bytes: {max_bytes}\n")
    (folder / f"{name}-s.yaml").write_text(
        f"name: {name}-s\nsignature: {{scheme: stripe, secrets: ['env:GW_STRIPE_SECRET']}}\n"
        "event_id: id\nentity_key: data.object.customer\n")
    return folder


@contextmanager
def running_gateway(settings: Settings, sources_dir: Path | dict[str, WebhookSource],
                    options: GatewayOptions | None = None, connections: ConnectionStore | None = None
                    ) -> Iterator[str]:
    """The gateway app served on a free loopback port from a background event loop; yields its URL.

    ``sources_dir`` is a folder of specs (secrets from ``ENV``) or sources already loaded.
    """
    sources = load_sources(sources_dir, ENV) if isinstance(sources_dir, Path) else sources_dir
    app = create_app(settings, sources, options or GatewayOptions(ack_deadline_s=10), connections)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="gateway-test-loop", daemon=True)
    thread.start()
    runner = web.AppRunner(app, shutdown_timeout=5, access_log=None)
    port = free_port()

    async def start() -> None:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()

    try:
        asyncio.run_coroutine_threadsafe(start(), loop).result(60)
        yield f"http://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(60)
        asyncio.run_coroutine_threadsafe(loop.shutdown_default_executor(), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


def request(url: str, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
            timeout: float = 30.0) -> Answer:
    """One HTTP request on a fresh connection (so a closed connection never leaks into the next test)."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        conn.close()


def std_headers(body: bytes, msg_id: str = "msg_1", ts: int | None = None, key: bytes = KEY) -> dict[str, str]:
    """Content-Type and Standard Webhooks headers signing ``body``."""
    ts = int(time.time()) if ts is None else ts
    return {"Content-Type": "application/json", "webhook-id": msg_id, "webhook-timestamp": str(ts),
            "webhook-signature": sign_standard_webhooks(key, msg_id, ts, body)}


def stripe_headers(body: bytes, ts: int | None = None) -> dict[str, str]:
    ts = int(time.time()) if ts is None else ts
    return {"Content-Type": "application/json", "Stripe-Signature": sign_stripe(STRIPE_SECRET.encode(), ts, body)}


def ticket_event(event_id: str | None = "evt-1", ticket: object = 4521) -> bytes:
    """A Zendesk-like event, with the odd spacing a partner may send (kept byte for byte)."""
    id_part = f'"event_id": "{event_id}", ' if event_id is not None else ""
    return (f'{{{id_part}"type":"ticket.escalated",  "sequence": 7,\n "data": {{"ticket": '
            f'{{"id": {orjson.dumps(ticket).decode()}, "title": "Checkout down \u00e9"}}}}}}').encode()
