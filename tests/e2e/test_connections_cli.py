"""`router connections` as a user runs it, on the real broker: every command, secrets never printed."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from router.settings import Settings
from support.delivering import http_spec
from support.routing import make_topology, read_all

ROOT = Path(__file__).resolve().parents[2]
OLD_KEY = "old:" + base64.b64encode(bytes(range(32))).decode()
NEW_KEY = "new:" + base64.b64encode(bytes(range(100, 132))).decode()
SIGNING = "whsec_CliTestSigningSecretNumberOne111"
SIGNING_2 = "whsec_CliTestSigningSecretNumberTwo222"
TOKEN = "cli-test-bearer-token-SECRET-abcd"


def router(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "router", "connections", *args], cwd=ROOT, env=env, input=stdin,
                          capture_output=True, text=True, timeout=90, check=False)


@pytest.fixture
def env(settings: Settings, name: str) -> dict[str, str]:
    return {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers or "",
            "ROUTER_CONNECTIONS_TOPIC": f"_connections-{name}", "ROUTER_ENCRYPTION_KEY": OLD_KEY,
            "SIGNING": SIGNING, "SIGNING_2": SIGNING_2,
            "CREDS": json.dumps({"type": "bearer", "token": TOKEN})}


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    for secret in (SIGNING, SIGNING_2, TOKEN):
        assert secret not in result.stdout + result.stderr
    return result.stdout


def test_every_command_and_no_secret_printed_or_stored_in_clear(env: dict[str, str], settings: Settings,
                                                                 name: str) -> None:
    ok(router(env, "create", "acme", "zendesk", "--signing-secret", "env:SIGNING", "--credentials", "env:CREDS",
              "--setting", "subdomain=acme"))
    ok(router(env, "create", "globex", "zendesk", "--signing-secret", "-", stdin=SIGNING_2 + "\n"))
    shown = json.loads(ok(router(env, "show", "acme", "zendesk", "--json")))
    assert shown["state"] == "active" and shown["settings"] == {"subdomain": "acme"}
    assert shown["credentials"] == {"type": "bearer", "token": "••••abcd"}
    assert shown["signing_secrets"] == ["••••e111"] and shown["key_id"] == "old"
    assert "••••abcd" in ok(router(env, "show", "acme", "zendesk"))
    listed = json.loads(ok(router(env, "ls", "--json")))
    assert [(c["tenant"], c["state"]) for c in listed["connections"]] == [("acme", "active"), ("globex", "active")]
    assert "globex" in ok(router(env, "ls"))

    ok(router(env, "set", "acme", "zendesk", "--state", "paused", "--reason", "maintenance"))
    ok(router(env, "rotate-secret", "acme", "zendesk", "--signing-secret", "env:SIGNING_2"))
    shown = json.loads(ok(router(env, "show", "acme", "zendesk", "--json")))
    assert (shown["state"], shown["state_reason"]) == ("paused", "maintenance")
    assert shown["signing_secrets"] == ["••••o222", "••••e111"]
    ok(router(env, "rotate-secret", "acme", "zendesk", "--finish"))
    assert json.loads(ok(router(env, "show", "acme", "zendesk", "--json")))["signing_secrets"] == ["••••o222"]

    # Key rotation: the new key first, the old one kept to read; rotate-key; then the old key can go.
    rotated = {**env, "ROUTER_ENCRYPTION_KEY": f"{NEW_KEY},{OLD_KEY}"}
    assert "re-encrypted 2 connection(s) under key new" in ok(router(rotated, "rotate-key"))
    new_only = {**env, "ROUTER_ENCRYPTION_KEY": NEW_KEY}
    shown = json.loads(ok(router(new_only, "show", "acme", "zendesk", "--json")))
    assert shown["key_id"] == "new" and shown["credentials"]["token"] == "••••abcd"
    # A process with only the old key can no longer read them: named, with a code, exit 2.
    stale = router(env, "show", "acme", "zendesk")
    assert stale.returncode == 2 and "[connections.unknown_key]" in stale.stderr

    ok(router(new_only, "disconnect", "globex", "zendesk"))
    gone = json.loads(ok(router(new_only, "show", "globex", "zendesk", "--json")))
    assert (gone["state"], gone["credentials"], gone["signing_secrets"]) == ("disconnected", None, [])

    records = read_all(settings.kafka_bootstrap_servers or "", f"_connections-{name}", expect=8)
    raw = b"".join((r.key() or b"") + (r.value() or b"") for r in records)
    for secret in (SIGNING, SIGNING_2, TOKEN):
        assert secret.encode() not in raw and base64.b64encode(secret.encode()) not in raw


@pytest.mark.parametrize(("args", "code"), [
    (("show", "Acme", "zendesk"), "connections.invalid_tenant"),
    (("create", "acme", "a/b"), "connections.invalid_integration"),
    (("create", "acme", "zendesk", "--signing-secret", "whsec_on_the_command_line"), "connections.invalid_ref"),
    (("create", "acme", "zendesk", "--signing-secret", "env:UNSET_VARIABLE_XYZ"), "connections.missing_secret"),
    (("create", "acme", "zendesk", "--credentials", "env:SIGNING"), "connections.invalid_credentials"),
    (("create", "acme", "zendesk", "--settings", "[1]"), "connections.invalid_settings"),
    (("set", "acme", "nothing-here", "--state", "paused"), "connections.not_found"),
    (("show", "acme", "nothing-here"), "connections.not_found"),
])
def test_bad_input_is_one_line_with_a_code(env: dict[str, str], args: tuple[str, ...], code: str) -> None:
    result = router(env, *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.count("\n") == 1 and f"[{code}]" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and "whsec_on_the_command_line" not in result.stderr


def test_no_key_and_duplicate_create(env: dict[str, str]) -> None:
    no_key = {k: v for k, v in env.items() if k != "ROUTER_ENCRYPTION_KEY"}
    result = router(no_key, "ls")
    assert result.returncode == 2 and "[connections.no_key]" in result.stderr
    ok(router(env, "create", "acme", "zendesk", "--signing-secret", "env:SIGNING"))
    again = router(env, "create", "acme", "zendesk", "--signing-secret", "env:SIGNING")
    assert again.returncode == 2 and "[connections.exists]" in again.stderr


def test_create_and_set_check_what_the_integrations_spec_declares(env: dict[str, str], tmp_path: Path,
                                                                   name: str) -> None:
    use = ("{credentials: [bearer], "
           "settings: {type: object, required: [account], properties: {account: {type: string}}}}")
    spec = http_spec(name, name, f"{name}-d", "https://p.example/{settings.account}", connection=use)
    topo = make_topology(tmp_path, name, {"a": spec})
    dirs = ["--integrations", str(topo.integrations), "--schemas", str(topo.schemas)]
    basic = {**env, "CREDS": json.dumps({"type": "basic", "username": "u", "password": TOKEN})}
    refused = router(basic, "create", "acme", name, "--credentials", "env:CREDS", "--setting", "account=a1", *dirs)
    assert refused.returncode == 2 and "[connections.invalid_credentials]" in refused.stderr
    assert "takes credentials of type bearer; got basic" in refused.stderr and TOKEN not in refused.stderr
    missing = router(env, "create", "acme", name, "--credentials", "env:CREDS", *dirs)
    assert missing.returncode == 2 and "[connections.invalid_settings]" in missing.stderr
    assert "'account' is a required property" in missing.stderr
    ok(router(env, "create", "acme", name, "--credentials", "env:CREDS", "--setting", "account=a1", *dirs))
    unset = router(env, "set", "acme", name, "--unset", "account", *dirs)
    assert unset.returncode == 2 and "[connections.invalid_settings]" in unset.stderr
    shown = json.loads(ok(router(env, "show", "acme", name, "--json")))
    assert shown["settings"] == {"account": "a1"}, "a refused change is not written"
