"""`router dev` connects two demo tenants with different secrets: isolation from the first command."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from router.connections.demo import demo_secrets
from router.devsecrets import DEV_SECRETS
from support.services import wait_for
from tests.e2e.test_pipeline import _post
from tests.integration.test_gateway_connections import signed

ROOT = Path(__file__).resolve().parents[2]


def _ready(out: Path) -> dict[str, str] | None:
    for line in out.read_text().splitlines():
        if line.startswith("READY "):
            return dict(pair.split("=", 1) for pair in line.split()[1:])
    return None


def test_dev_tenants_each_verify_with_their_own_secret(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in ("KAFKA_BOOTSTRAP_SERVERS", "SCHEMA_REGISTRY_URL", "ROUTER_ENCRYPTION_KEY",
                        "ROUTER_ENCRYPTION_KEY_FILE", "ROUTER_CONNECTIONS_TOPIC")}
    out = tmp_path / "dev.out"
    with open(out, "wb") as f:
        dev = subprocess.Popen([sys.executable, "-m", "router", "dev", "--log-dir", str(tmp_path / "logs")], cwd=ROOT,
                               stdout=f, stderr=subprocess.STDOUT, env=env)
    try:
        ready = wait_for(lambda: _ready(out) or (dev.poll() is not None and {"exited": out.read_text()}),
                         deadline_s=120, what="router dev to print READY")
        assert isinstance(ready, dict) and "exited" not in ready, ready
        assert ready["tenants"] == "acme,globex"
        secrets = demo_secrets(DEV_SECRETS)
        for source, scheme in (("zendesk", "standard_webhooks"), ("stripe", "stripe")):
            body = b'{"event_id": "dev-iso-1", "id": "dev-iso-1", "type": "x", "data": {}}'
            acme = signed(scheme, secrets[("acme", source)], body)
            globex = signed(scheme, secrets[("globex", source)], body)
            hook = f"{ready['gateway']}/v1/hooks/%s/{source}"
            assert _post(hook % "acme", body, acme)[0] == 202, source
            assert _post(hook % "globex", body, globex)[0] == 202, source
            assert _post(hook % "globex", body, acme)[0] == 401, source  # acme's signature at globex's URL
            assert _post(hook % "acme", body, globex)[0] == 401, source
            assert _post(hook % "initech", body, acme)[0] == 404, source  # not connected
        dev.send_signal(signal.SIGTERM)
        assert dev.wait(60) == 0
    finally:
        if dev.poll() is None:
            dev.kill()
            dev.wait(10)
