"""The page's Connections section and the admin's pending connect attempts (pure: no I/O).

:class:`PendingAttempts` keeps each OAuth connect attempt started from the page (state →
verifier, tenant, integration, when) in memory: at most ``limit`` at once, each for ``ttl_s``, each
taken once. A restart forgets them: the admin starts the flow again.

Rows show a connection's tenant, integration, state (its reason folded when long), credential
type, token expiry (authorization code) and last change; never a secret.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from router.connections.model import Connection, OAuth2AuthorizationCode
from router.connections.oauth_flow import Attempt
from services.admin.page import esc, iso, reason_html, when

ATTEMPT_TTL_S = 600.0
MAX_PENDING = 1000
KEY_NOTE = ("Connections need ROUTER_ENCRYPTION_KEY (or ROUTER_ENCRYPTION_KEY_FILE): without the key the admin "
            "cannot read or write them.")
RESUMABLE = ("needs_reconnect", "paused")


@dataclass(frozen=True)
class PendingConnect:
    """An OAuth connect attempt waiting for the partner's redirect."""

    attempt: Attempt
    tenant: str
    integration: str
    created_s: float
    binding: str  # the value of the browser's binding cookie: only the browser that started it may finish it


class PendingAttempts:
    """Connect attempts by ``state``: bounded, expiring, each taken once."""

    def __init__(self, ttl_s: float = ATTEMPT_TTL_S, limit: int = MAX_PENDING,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.limit = limit
        self.clock = clock
        self._pending: OrderedDict[str, PendingConnect] = OrderedDict()

    def start(self, attempt: Attempt, tenant: str, integration: str, binding: str) -> PendingConnect | None:
        """Hold a new attempt bound to ``binding`` (the browser's cookie); None when ``limit`` attempts are
        pending (refused: a live attempt is never dropped for a new one)."""
        self._expire()
        if len(self._pending) >= self.limit:
            return None
        pending = PendingConnect(attempt, tenant, integration, self.clock(), binding)
        self._pending[attempt.state] = pending
        return pending

    def take(self, state: str) -> PendingConnect | None:
        """The attempt of ``state``, removed; None when unknown, already taken or expired."""
        self._expire()
        return self._pending.pop(state, None)

    def __len__(self) -> int:
        self._expire()
        return len(self._pending)

    def _expire(self) -> None:
        now = self.clock()
        while self._pending:  # oldest first: insertion order is creation order
            state, oldest = next(iter(self._pending.items()))
            if now - oldest.created_s < self.ttl_s:
                break
            del self._pending[state]


@dataclass(frozen=True)
class ConnectionRow:
    """What the page and ``/api/connections`` show of one connection: no secret."""

    tenant: str
    integration: str
    state: str
    reason: str
    credential_type: str | None
    expires_at_ms: int | None
    updated_at_ms: int
    oauth: bool  # the integration's spec can run the connect flow


def connection_rows(connections: Iterable[Connection], oauth: Iterable[str]) -> list[ConnectionRow]:
    """One row per connection, sorted by tenant then integration."""
    capable = set(oauth)
    rows = []
    for c in sorted(connections, key=lambda c: (c.tenant, c.integration)):
        creds = c.credentials
        rows.append(ConnectionRow(c.tenant, c.integration, c.state, c.state_reason,
                                  creds.type if creds is not None else None,
                                  creds.expires_at_ms if isinstance(creds, OAuth2AuthorizationCode) else None,
                                  c.updated_at_ms, c.integration in capable))
    return rows


def connection_json(row: ConnectionRow) -> dict[str, Any]:
    """One connection of ``GET /api/connections``."""
    return {"tenant": row.tenant, "integration": row.integration, "state": row.state,
            "state_reason": row.reason or None, "credentials": {"type": row.credential_type} if row.credential_type
            else None, "expires_at": iso(row.expires_at_ms) if row.expires_at_ms else None,
            "updated_at": iso(row.updated_at_ms) if row.updated_at_ms else None, "oauth": row.oauth}


def _button(action: str, label: str, testid: str, csrf: str, aria: str) -> str:
    return (f'<form method="post" action="{action}"><input type="hidden" name="csrf" value="{esc(csrf)}">'
            f'<button type="submit" data-testid="{testid}" aria-label="{esc(aria)}">{label}</button></form>')


def _actions(row: ConnectionRow, csrf: str) -> str:
    t, i = esc(row.tenant), esc(row.integration)
    base, what = f"/connections/{t}/{i}", f"{row.tenant}/{row.integration}"
    parts = []
    if row.oauth:
        verb = "Connect" if row.state == "disconnected" else "Reconnect"
        parts.append(_button(f"{base}/connect", verb, f"{verb.lower()}-{t}-{i}", csrf, f"{verb} {what}"))
    elif row.state in RESUMABLE:
        parts.append(_button(f"{base}/resume", "Resume", f"resume-{t}-{i}", csrf, f"Resume {what}"))
    if row.state != "disconnected":
        parts.append(_button(f"{base}/disconnect", "Disconnect", f"disconnect-{t}-{i}", csrf, f"Disconnect {what}"))
    return f'<td class="actions">{"".join(parts)}</td>'


def render_row(row: ConnectionRow, csrf: str, now_ms: int) -> str:
    """One ``<tr>`` of the Connections table."""
    t, i = esc(row.tenant), esc(row.integration)
    creds = f"<code>{esc(row.credential_type)}</code>" if row.credential_type else '<span class="muted">none</span>'
    expiry = when(row.expires_at_ms, now_ms) if row.expires_at_ms else '<span class="muted">—</span>'
    return (f'<tr data-testid="conn-{t}-{i}"><th scope="row">{t}</th><td>{i}</td>'
            f'<td><span class="badge badge-{esc(row.state)}" data-testid="conn-state">{esc(row.state)}</span>'
            f"{reason_html(row.reason)}</td><td data-testid=\"conn-credentials\">{creds}</td>"
            f'<td data-testid="conn-expires">{expiry}</td><td>{when(row.updated_at_ms, now_ms)}</td>'
            f"{_actions(row, csrf)}</tr>")


COLUMNS = ("Tenant", "Integration", "State", "Credentials", "Token expires", "Last updated", "Actions")


def render_section(rows: list[ConnectionRow] | None, oauth: list[str], csrf: str, now_ms: int,
                   problem: str | None = None) -> str:
    """The Connections section; ``rows`` None: connections are not configured here (the note says why)."""
    if rows is None:
        return (f'<h2 id="connections">Connections</h2><p class="small" data-testid="connections-note">'
                f"{esc(KEY_NOTE)}</p>")
    warn = f'<div class="flash flash-error" role="alert">{esc(problem)}</div>' if problem else ""
    head = "".join(f'<th scope="col">{c}</th>' for c in COLUMNS)
    body = "".join(render_row(r, csrf, now_ms) for r in rows) or (
        f'<tr><td colspan="{len(COLUMNS)}">No connections yet.</td></tr>')
    form = ""
    if oauth:
        options = "".join(f'<option value="{esc(n)}">{esc(n)}</option>' for n in oauth)
        form = (f'<form method="post" action="/connections/connect" class="replay" data-testid="connect-form">'
                f'<input type="hidden" name="csrf" value="{esc(csrf)}">'
                f'<label for="connect-tenant">Tenant</label><input id="connect-tenant" name="tenant" required '
                f'size="20" maxlength="63" data-testid="connect-tenant">'
                f'<label for="connect-integration">Integration</label><select id="connect-integration" '
                f'name="integration" data-testid="connect-integration">{options}</select>'
                f'<button type="submit" data-testid="connect">Connect</button></form>')
    return (f'<h2 id="connections">Connections</h2>{warn}<table data-testid="connections">'
            f"<caption>One row per tenant &times; integration connection. Secrets are never shown.</caption>"
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{form}")
