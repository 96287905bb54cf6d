"""What each `router connections` command does to a connection, as plain data."""

from __future__ import annotations

import pytest

from router.connections import changes
from router.connections.model import Bearer, Connection, ConnectionsError
from router.settings import Secret

A, B, C = Secret("secret-a"), Secret("secret-b"), Secret("secret-c")


def held() -> Connection:
    return changes.create(None, "acme", "zendesk", now_ms=1, settings={"x": "1"}, credentials=Bearer(Secret("t")),
                          signing_secrets=(A,))


def test_create_refuses_an_existing_connection_but_not_a_disconnected_one() -> None:
    with pytest.raises(ConnectionsError) as info:
        changes.create(held(), "acme", "zendesk", now_ms=2)
    assert info.value.code == "connections.exists"
    gone = changes.disconnect(held(), "acme", "zendesk", now_ms=2)
    assert changes.create(gone, "acme", "zendesk", now_ms=3).state == "active"


def test_update_merges_settings_and_clears_the_reason_on_resume() -> None:
    paused = changes.update(held(), "acme", "zendesk", now_ms=2, state="paused", reason="maintenance",
                            settings={"y": "2"}, unset=("x",))
    assert (paused.state, paused.state_reason, dict(paused.settings)) == ("paused", "maintenance", {"y": "2"})
    assert paused.credentials == held().credentials and paused.updated_at_ms == 2
    resumed = changes.update(paused, "acme", "zendesk", now_ms=3, state="active")
    assert (resumed.state, resumed.state_reason) == ("active", "")
    with pytest.raises(ConnectionsError) as info:
        changes.update(None, "acme", "zendesk", now_ms=2)
    assert info.value.code == "connections.not_found"


def test_rotation_keeps_the_newest_and_finish_keeps_one() -> None:
    one = changes.rotate_secret(held(), "acme", "zendesk", B, now_ms=2)
    assert one.signing_secrets == (B, A)
    two = changes.rotate_secret(one, "acme", "zendesk", C, now_ms=3)
    assert two.signing_secrets == (C, B)
    assert changes.finish_rotation(two, "acme", "zendesk", now_ms=4).signing_secrets == (C,)
    with pytest.raises(ConnectionsError, match="already"):
        changes.rotate_secret(two, "acme", "zendesk", C, now_ms=5)


def test_disconnect_deletes_credentials_and_secrets() -> None:
    gone = changes.disconnect(held(), "acme", "zendesk", now_ms=2, reason="customer left")
    assert (gone.state, gone.credentials, gone.signing_secrets, gone.state_reason) == \
        ("disconnected", None, (), "customer left")
    assert gone.settings == {"x": "1"}
    assert not changes.needs_reencryption(gone, "new")
    assert changes.needs_reencryption(held(), "new")  # never stored: key_id ""
