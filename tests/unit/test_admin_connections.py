"""The admin's pending connect attempts and its Connections rows (pure)."""

from __future__ import annotations

from router.connections.model import ApiKey, Connection, OAuth2AuthorizationCode
from router.connections.oauth_flow import new_attempt
from router.settings import Secret
from services.admin.connections import (
    PendingAttempts,
    connection_json,
    connection_rows,
    render_section,
)

SECRET = "tok-SECRET-never-shown"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_attempt_is_taken_once() -> None:
    pending = PendingAttempts(clock=Clock())
    attempt = new_attempt("http://admin/connections/callback")
    held = pending.start(attempt, "acme", "crm", "b" * 32)
    assert held is not None and held.tenant == "acme" and held.integration == "crm"
    assert pending.take(attempt.state) == held
    assert pending.take(attempt.state) is None
    assert pending.take("unknown") is None


def test_attempts_expire_after_the_ttl() -> None:
    clock = Clock()
    pending = PendingAttempts(ttl_s=600, clock=clock)
    old = new_attempt("http://a/cb")
    pending.start(old, "acme", "crm", "b" * 32)
    clock.now += 300
    young = new_attempt("http://a/cb")
    pending.start(young, "globex", "crm", "b" * 32)
    clock.now += 300  # old is exactly 600 s old: gone; young is 300 s old: kept
    assert pending.take(old.state) is None
    assert len(pending) == 1
    assert pending.take(young.state) is not None


def test_the_bound_refuses_new_attempts_never_drops_live_ones() -> None:
    clock = Clock()
    pending = PendingAttempts(ttl_s=600, limit=3, clock=clock)
    attempts = [new_attempt("http://a/cb") for _ in range(4)]
    assert all(pending.start(a, "acme", "crm", "b" * 32) for a in attempts[:3])
    assert pending.start(attempts[3], "acme", "crm", "b" * 32) is None
    assert all(pending.take(a.state) is not None for a in attempts[:3])
    clock.now += 601
    pending = PendingAttempts(ttl_s=600, limit=1, clock=clock)
    pending.start(attempts[0], "acme", "crm", "b" * 32)
    clock.now += 601  # expired ones make room
    assert pending.start(attempts[1], "acme", "crm", "b" * 32) is not None


def _connections() -> list[Connection]:
    return [
        Connection("globex", "keyed", state="needs_reconnect", state_reason="401 " + "x" * 400,
                   credentials=ApiKey(Secret(SECRET)), updated_at_ms=2000),
        Connection("acme", "crm", credentials=OAuth2AuthorizationCode(Secret(SECRET), Secret(SECRET + "r"),
                                                                      1_800_000_000_000, ("read",)),
                   updated_at_ms=1000),
        Connection("acme", "old", state="disconnected", updated_at_ms=500),
    ]


def test_rows_show_types_and_expiry_never_secrets() -> None:
    rows = connection_rows(_connections(), oauth=["crm", "old"])
    assert [(r.tenant, r.integration) for r in rows] == [("acme", "crm"), ("acme", "old"), ("globex", "keyed")]
    crm, old, keyed = rows
    assert crm.credential_type == "oauth2_authorization_code" and crm.expires_at_ms == 1_800_000_000_000
    assert old.credential_type is None and keyed.expires_at_ms is None
    doc = connection_json(crm)
    assert doc["credentials"] == {"type": "oauth2_authorization_code"}
    assert doc["expires_at"] == "2027-01-15T08:00:00Z"
    html = render_section(rows, ["crm", "old"], "c" * 32, 3000)
    assert SECRET not in html and SECRET not in str([connection_json(r) for r in rows])
    assert 'data-testid="conn-acme-crm"' in html
    assert 'data-testid="reconnect-acme-crm"' in html and 'data-testid="disconnect-acme-crm"' in html
    assert 'data-testid="connect-acme-old"' in html and 'data-testid="disconnect-acme-old"' not in html
    assert 'data-testid="resume-globex-keyed"' in html and 'data-testid="reconnect-globex-keyed"' not in html
    assert "<details" in html, "a long reason is folded"
    assert html.count('name="csrf" value="' + "c" * 32) == html.count("<form")


def test_without_a_key_the_section_is_a_note() -> None:
    html = render_section(None, ["crm"], "c" * 32, 3000)
    assert "ROUTER_ENCRYPTION_KEY" in html and "<form" not in html and "<table" not in html


def test_data_is_escaped() -> None:
    rows = connection_rows([Connection("acme", "crm", state="paused", state_reason="<script>x</script>")], [])
    html = render_section(rows, [], "c", 0)
    assert "<script>" not in html and "&lt;script&gt;" in html
