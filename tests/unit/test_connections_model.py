"""Connections without services: the model, the key ring, the record codec (encryption at rest)."""

from __future__ import annotations

import base64
import dataclasses

import orjson
import pytest

from router.connections import codec
from router.connections.keyring import KeyRing, key_id_of
from router.connections.model import (
    ApiKey,
    Basic,
    Bearer,
    Connection,
    ConnectionsError,
    OAuth2AuthorizationCode,
    OAuth2ClientCredentials,
    check_integration,
    check_state,
    check_tenant,
    credentials_document,
    masked_credentials,
    parse_credentials,
    parse_signing_secrets,
)
from router.settings import Secret

KEY_A = bytes(range(32))
KEY_B = bytes(range(32, 64))
B64_A = base64.b64encode(KEY_A).decode()
B64_B = base64.b64encode(KEY_B).decode()
SECRET = "whsec_VerySecretSigningValue0123456789"
TOKEN = "tok-abcdefghijklmnop-SECRET"


def ring(text: str = f"new:{B64_B},old:{B64_A}") -> KeyRing:
    return KeyRing.parse(text, "ROUTER_ENCRYPTION_KEY")


def connection(**changes: object) -> Connection:
    base = Connection("acme", "zendesk", settings={"subdomain": "acme"}, credentials=Bearer(Secret(TOKEN)),
                      signing_secrets=(Secret(SECRET),), created_at_ms=1, updated_at_ms=2)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize("tenant", ["Acme", "", "a/b", "acme\n", "x" * 64, "-acme"])
def test_bad_tenants_have_a_code(tenant: str) -> None:
    with pytest.raises(ConnectionsError) as info:
        check_tenant(tenant)
    assert info.value.code == "connections.invalid_tenant"


def test_names_and_states() -> None:
    assert check_tenant("acme") == "acme" and check_integration("zendesk-escalations") == "zendesk-escalations"
    for bad in ("a/b", "", "x" * 101, "é"):
        with pytest.raises(ConnectionsError, match="integration"):
            check_integration(bad)
    assert check_state("needs_reconnect") == "needs_reconnect"
    with pytest.raises(ConnectionsError) as info:
        check_state("on")
    assert info.value.code == "connections.invalid_state"


@pytest.mark.parametrize("doc", [
    {"type": "api_key", "api_key": "k" * 20},
    {"type": "basic", "username": "u", "password": "p" * 20},
    {"type": "bearer", "token": TOKEN},
    {"type": "oauth2_client_credentials", "client_id": "cid", "client_secret": "s" * 20, "scopes": ["a"]},
    {"type": "oauth2_authorization_code", "access_token": "a" * 20, "refresh_token": "r" * 20,
     "expires_at_ms": 5, "scopes": [], "token_type": "Bearer"},
])
def test_every_credential_type_round_trips_and_never_prints(doc: dict[str, object]) -> None:
    credentials = parse_credentials(doc)
    assert isinstance(credentials, ApiKey | Basic | Bearer | OAuth2ClientCredentials | OAuth2AuthorizationCode)
    assert {k: v for k, v in credentials_document(credentials).items() if v != []} == \
        {k: v for k, v in doc.items() if v != []}
    for name, value in doc.items():
        if name != "type" and isinstance(value, str) and len(value) >= 20:
            assert value not in repr(credentials) and value not in str(masked_credentials(credentials))


@pytest.mark.parametrize("doc", [None, [], {"type": "magic"}, {"type": "bearer"}, {"type": "bearer", "token": ""},
                                 {"type": "basic", "password": "x"}, {"type": "oauth2_authorization_code",
                                                                       "access_token": "a", "expires_at_ms": "soon"}])
def test_bad_credentials_have_a_code_and_no_value(doc: object) -> None:
    with pytest.raises(ConnectionsError) as info:
        parse_credentials(doc)
    assert info.value.code == "connections.invalid_credentials"


def test_signing_secrets_are_checked() -> None:
    assert [s.reveal() for s in parse_signing_secrets(["a", "b"])] == ["a", "b"]
    for bad in ("a", [""], [" a"], [1], ["a"] * 11):
        with pytest.raises(ConnectionsError) as info:
            parse_signing_secrets(bad)
        assert info.value.code == "connections.invalid_secret"


def test_repr_of_a_connection_shows_no_secret() -> None:
    text = repr(connection())
    assert SECRET not in text and TOKEN not in text


def test_key_ring_forms() -> None:
    single = KeyRing.parse(B64_A, "K")
    assert single.current == key_id_of(KEY_A) and single.keys == {key_id_of(KEY_A): KEY_A}
    urlsafe = KeyRing.parse(base64.urlsafe_b64encode(KEY_B).decode().rstrip("="), "K")
    assert urlsafe.keys[urlsafe.current] == KEY_B
    two = ring()
    assert two.current == "new" and set(two.keys) == {"new", "old"}
    assert KeyRing.parse(f"new:{B64_B}\nold:{B64_A}\n", "F").keys == two.keys
    assert B64_A not in repr(two)
    assert KeyRing.from_env({}) is None
    assert KeyRing.from_env({"ROUTER_ENCRYPTION_KEY": B64_A}) == single


@pytest.mark.parametrize("text", ["", "notbase64!", base64.b64encode(b"short").decode(), f"bad id:{B64_A}",
                                  f"a:{B64_A},a:{B64_B}"])
def test_bad_keys_have_a_code(text: str) -> None:
    with pytest.raises(ConnectionsError) as info:
        KeyRing.parse(text, "ROUTER_ENCRYPTION_KEY")
    assert info.value.code == "connections.invalid_key"
    with pytest.raises(ConnectionsError) as missing:
        KeyRing.required({})
    assert missing.value.code == "connections.no_key"


def test_codec_round_trip_and_no_secret_in_the_bytes() -> None:
    key, value = codec.encode(connection(), ring())
    assert key == b"acme/zendesk"
    assert SECRET.encode() not in value and TOKEN.encode() not in value
    assert b"VerySecret" not in value
    tenant, integration, decoded = codec.decode(key, value, ring())
    assert (tenant, integration) == ("acme", "zendesk") and decoded is not None
    assert decoded.key_id == "new"
    assert dataclasses.replace(decoded, key_id="") == connection()
    assert codec.decode(key, None, ring()) == ("acme", "zendesk", None)


def test_a_sealed_blob_moved_to_another_connection_does_not_decrypt() -> None:
    _, value = codec.encode(connection(), ring())
    doc = orjson.loads(value)
    doc["tenant"] = "globex"
    with pytest.raises(ConnectionsError) as info:
        codec.decode(b"globex/zendesk", orjson.dumps(doc), ring())
    assert info.value.code == "connections.undecryptable"


def test_old_keys_decrypt_and_unknown_keys_are_named() -> None:
    old_only = ring(f"old:{B64_A}")
    key, value = codec.encode(connection(), old_only)
    _, _, decoded = codec.decode(key, value, ring())  # the rotated ring still has "old"
    assert decoded is not None and decoded.key_id == "old"
    with pytest.raises(ConnectionsError) as info:
        codec.decode(key, value, ring(f"other:{B64_B}"))
    assert info.value.code == "connections.unknown_key" and B64_A not in str(info.value)
    tampered = orjson.loads(value)
    tampered["sealed"]["kid"] = "new"
    with pytest.raises(ConnectionsError) as wrong:
        codec.decode(key, orjson.dumps(tampered), ring())
    assert wrong.value.code == "connections.undecryptable"


@pytest.mark.parametrize(("key", "value"), [
    (b"acme", b"{}"), (b"acme/a/b", b"{}"), (b"\xff/x", b"{}"), (None, b"{}"),
    (b"acme/zendesk", b"not json"), (b"acme/zendesk", b"[]"), (b"acme/zendesk", b'{"format": 2}'),
    (b"acme/zendesk", b'{"format": 1, "tenant": "globex", "integration": "zendesk"}'),
    (b"acme/zendesk", b'{"format": 1, "tenant": "acme", "integration": "zendesk", "state": "on"}'),
    (b"acme/zendesk", b'{"format": 1, "tenant": "acme", "integration": "zendesk", "state": "active", '
                      b'"sealed": {"kid": "new", "nonce": "AAAA", "ciphertext": "AAAA"}}'),
])
def test_hostile_records_raise_a_code(key: bytes | None, value: bytes) -> None:
    with pytest.raises(ConnectionsError) as info:
        codec.decode(key, value, ring())
    assert info.value.code.startswith("connections.")


def test_a_connection_without_secrets_seals_nothing() -> None:
    key, value = codec.encode(connection(credentials=None, signing_secrets=(), state="disconnected"), ring())
    assert orjson.loads(value)["sealed"] is None
    _, _, decoded = codec.decode(key, value, ring())
    assert decoded is not None and decoded.credentials is None and decoded.state == "disconnected"
