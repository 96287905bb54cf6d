"""The simulator's OAuth 2.0 authorization server, as bookkeeping: codes, grants, refresh rotation.

The authorization-code grant with PKCE (RFC 6749 §4.1 and §6, RFC 7636), refresh-token rotation
and revocation (RFC 7009, and the OAuth security BCP on refresh-token reuse). A *grant* is one
consent: a client connected one partner account. It holds the current refresh token and the
access tokens issued under it; revoking it (reuse of a rotated refresh token, reuse of a code,
``/oauth/revoke`` with its refresh token, or the ``revoke_grant`` control) ends all of them.

Access tokens are the simulator's own bearer tokens (:class:`AccessTokens`: ``PartnerSim``
issues, checks and revokes them), so ``--require-token`` accepts them like client-credentials
tokens, and :meth:`AuthorizationServer.account_of` tells the ledger whose they are.

Plain functions of data and a clock, no I/O: refusals are :class:`Refusal` values with the
RFC 6749 §5.2 error code, never exceptions.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

CODE_TTL_S = 60.0
# A spent code is remembered this long, so that its reuse revokes what it was exchanged for
# (RFC 6749 §4.1.2) rather than just being unknown.
SPENT_CODE_MEMORY_S = 600.0
VERIFIER_PATTERN = re.compile(r"[A-Za-z0-9._~-]{43,128}")  # RFC 7636 §4.1 code-verifier
CHALLENGE_PATTERN = re.compile(r"[A-Za-z0-9_-]{43}")  # base64url(SHA-256), unpadded: RFC 7636 §4.2


def s256(verifier: str) -> str:
    """The S256 code challenge of ``verifier``: ``BASE64URL(SHA256(ASCII(verifier)))``, unpadded."""
    digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def pkce_matches(verifier: str, challenge: str) -> bool:
    """Whether ``verifier`` is a well-formed RFC 7636 verifier whose S256 challenge is ``challenge``."""
    if VERIFIER_PATTERN.fullmatch(verifier) is None:
        return False
    return hmac.compare_digest(s256(verifier).encode(), challenge.encode("ascii", "replace"))


class AccessTokens(Protocol):
    """Where access tokens live: ``PartnerSim`` (the same tokens ``--require-token`` checks)."""

    def issue_token(self) -> str:
        """A new bearer token, valid for the configured TTL."""
        ...

    def token_valid(self, token: str) -> bool:
        """Issued, not expired, not revoked."""
        ...

    def revoke(self, token: str | None) -> None:
        """Make one token invalid."""
        ...


@dataclass(frozen=True)
class Refusal:
    """A refused token request: an RFC 6749 §5.2 error code and a description for people."""

    error: str
    description: str


@dataclass(frozen=True)
class Issued:
    """What a token response carries (the access token's lifetime is the simulator's TTL)."""

    access_token: str
    refresh_token: str
    scope: str
    account: str


@dataclass(frozen=True)
class PendingCode:
    """An authorization code not yet exchanged: what was consented to, and for whom."""

    client_id: str
    redirect_uri: str
    challenge: str
    account: str
    scope: str
    expires_at: float


@dataclass
class Grant:
    """One consent: a client's access to one account, until revoked."""

    id: int
    client_id: str
    account: str
    scope: str
    refresh_token: str
    access_tokens: list[str] = field(default_factory=list)
    rotated: list[str] = field(default_factory=list)  # refresh tokens replaced by rotation


def _scope_within(requested: str, granted: str) -> bool:
    return set(requested.split()) <= set(granted.split())


class AuthorizationServer:
    """Codes, grants and their tokens; ``tokens`` holds the access tokens themselves."""

    def __init__(self, tokens: AccessTokens, clock: Callable[[], float] = time.monotonic) -> None:
        self.tokens = tokens
        self.clock = clock
        self.codes: dict[str, PendingCode] = {}  # issue order is expiry order: pruned from the front
        self.spent: dict[str, tuple[float, int | None]] = {}  # code -> (forget at, grant it made)
        self.grants: dict[int, Grant] = {}
        self.by_refresh: dict[str, int] = {}  # current refresh token -> grant id
        self.by_rotated: dict[str, int] = {}  # rotated-away refresh token -> grant id
        self.by_access: dict[str, int] = {}  # access token -> grant id
        self.next_grant = 1
        self.revocations = 0  # /oauth/revoke requests that revoked a token

    # -- the authorization endpoint ------------------------------------------------------

    def issue_code(self, client_id: str, redirect_uri: str, challenge: str, account: str, scope: str) -> str:
        """A single-use code for this consent, valid for :data:`CODE_TTL_S` seconds."""
        now = self.clock()
        self._forget_expired(now)
        code = secrets.token_urlsafe(24)
        self.codes[code] = PendingCode(client_id, redirect_uri, challenge, account, scope, now + CODE_TTL_S)
        return code

    def _forget_expired(self, now: float) -> None:
        # Both dicts are in expiry order (same TTL, monotonic clock), so only the expired front is visited.
        while self.codes:
            code, pending = next(iter(self.codes.items()))
            if pending.expires_at > now:
                break
            del self.codes[code]
        while self.spent:
            code, (forget_at, _) = next(iter(self.spent.items()))
            if forget_at > now:
                break
            del self.spent[code]

    # -- the token endpoint --------------------------------------------------------------

    def redeem(self, code: str, client_id: str, redirect_uri: str, verifier: str) -> Issued | Refusal:
        """Exchange a code for tokens (RFC 6749 §4.1.3, RFC 7636 §4.6).

        The first attempt spends the code, right or wrong, so a verifier cannot be guessed
        by retrying; using a code again revokes the grant it was exchanged for.
        """
        now = self.clock()
        self._forget_expired(now)
        pending = self.codes.pop(code, None)
        if pending is None:
            spent = self.spent.get(code)
            if spent is not None and spent[1] is not None:
                self._end_grant(spent[1])
                return Refusal("invalid_grant", "the code was already used; the grant it made is revoked")
            return Refusal("invalid_grant", "the code is unknown, expired or already used")
        self.spent[code] = (now + SPENT_CODE_MEMORY_S, None)
        if not hmac.compare_digest(pending.client_id.encode(), client_id.encode()):
            return Refusal("invalid_grant", "the code was issued to another client")
        if pending.redirect_uri != redirect_uri:
            return Refusal("invalid_grant", "redirect_uri differs from the authorization request's")
        if not pkce_matches(verifier, pending.challenge):
            return Refusal("invalid_grant", "code_verifier does not match the code_challenge")
        grant = Grant(self.next_grant, client_id, pending.account, pending.scope, secrets.token_urlsafe(32))
        self.next_grant += 1
        self.grants[grant.id] = grant
        self.by_refresh[grant.refresh_token] = grant.id
        self.spent[code] = (now + SPENT_CODE_MEMORY_S, grant.id)
        return self._issue_access(grant, grant.scope)

    def refresh(self, refresh_token: str, client_id: str, scope: str | None) -> Issued | Refusal:
        """A new access token and a new refresh token (rotation, RFC 6749 §6).

        The old refresh token stops working. Presenting a rotated-away refresh token means it
        leaked (or the client lost the new one): the whole grant is revoked.
        """
        rotated = self.by_rotated.get(refresh_token)
        if rotated is not None:
            self._end_grant(rotated)
            return Refusal("invalid_grant", "the refresh token was already rotated; the grant is revoked")
        grant_id = self.by_refresh.get(refresh_token)
        grant = self.grants.get(grant_id) if grant_id is not None else None
        if grant is None:
            return Refusal("invalid_grant", "the refresh token is unknown or revoked")
        if not hmac.compare_digest(grant.client_id.encode(), client_id.encode()):
            return Refusal("invalid_grant", "the refresh token was issued to another client")
        if scope is not None and not _scope_within(scope, grant.scope):
            return Refusal("invalid_scope", "scope must be within the scope originally granted")
        del self.by_refresh[refresh_token]
        self.by_rotated[refresh_token] = grant.id
        grant.rotated.append(refresh_token)
        grant.refresh_token = secrets.token_urlsafe(32)
        self.by_refresh[grant.refresh_token] = grant.id
        # Keep only the grant's live access tokens: a long-lived grant refreshes many times.
        for old in [t for t in grant.access_tokens if not self.tokens.token_valid(t)]:
            grant.access_tokens.remove(old)
            self.by_access.pop(old, None)
        return self._issue_access(grant, grant.scope if scope is None else scope)

    def _issue_access(self, grant: Grant, scope: str) -> Issued:
        access = self.tokens.issue_token()
        grant.access_tokens.append(access)
        self.by_access[access] = grant.id
        return Issued(access, grant.refresh_token, scope, grant.account)

    # -- revocation ------------------------------------------------------------------------

    def revoke_token(self, token: str, hint: str | None) -> bool:
        """RFC 7009: revoke an access token, or a refresh token and its grant; False if unknown.

        ``hint`` (``access_token`` or ``refresh_token``) only orders the search.
        """
        kinds = ("refresh_token", "access_token") if hint == "refresh_token" else ("access_token", "refresh_token")
        for kind in kinds:
            if kind == "refresh_token":
                grant_id = self.by_refresh.get(token)
                if grant_id is not None:
                    self._end_grant(grant_id)
                    self.revocations += 1
                    return True
            elif self.tokens.token_valid(token):
                self.tokens.revoke(token)
                grant_id = self.by_access.pop(token, None)
                grant = self.grants.get(grant_id) if grant_id is not None else None
                if grant is not None:
                    grant.access_tokens.remove(token)
                self.revocations += 1
                return True
        return False

    def revoke_account(self, account: str) -> int:
        """The partner revoked every grant of ``account``: how many there were."""
        ended = [grant.id for grant in self.grants.values() if grant.account == account]
        for grant_id in ended:
            self._end_grant(grant_id)
        return len(ended)

    def _end_grant(self, grant_id: int) -> None:
        grant = self.grants.pop(grant_id, None)
        if grant is None:
            return
        self.by_refresh.pop(grant.refresh_token, None)
        for rotated in grant.rotated:
            self.by_rotated.pop(rotated, None)
        for access in grant.access_tokens:
            self.tokens.revoke(access)
            self.by_access.pop(access, None)

    # -- deliveries --------------------------------------------------------------------------

    def account_of(self, access_token: str | None) -> str | None:
        """The account a live access token of this grant type was issued for, else None."""
        if access_token is None:
            return None
        grant_id = self.by_access.get(access_token)
        grant = self.grants.get(grant_id) if grant_id is not None else None
        if grant is None or not self.tokens.token_valid(access_token):
            return None
        return grant.account
