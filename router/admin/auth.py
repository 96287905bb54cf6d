"""Who may see the page and press its buttons: the admin token, a session cookie and a CSRF token.

* API clients send ``Authorization: Bearer <token>``.
* A browser logs in once (``/login?token=`` or the login form) and gets a session cookie: an
  HMAC of a fixed label keyed with the token, so the token itself is not stored in the browser,
  every replica accepts the cookie without shared state, and changing the token ends every
  session. HttpOnly and SameSite=Strict.
* Forms carry a CSRF token that must equal the ``router_admin_csrf`` cookie (double submit):
  another site can make a browser send the cookie but cannot read it to put it in the form.
  Bearer requests need no CSRF token: browsers never add that header on their own.

Every comparison is constant-time (``hmac.compare_digest`` of equal-length digests).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from aiohttp import web

from router.settings import Secret

SESSION_COOKIE = "router_admin_session"
CSRF_COOKIE = "router_admin_csrf"
CSRF_FIELD = "csrf"
SESSION_MAX_AGE_S = 12 * 3600
_SESSION_LABEL = b"router-admin-session-v1"


def dev_token() -> str:
    """A random 16-hex-digit token for `router admin --dev-token`."""
    return secrets.token_hex(8)


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


def token_matches(token: Secret, given: str | None) -> bool:
    """Constant-time check of a presented token."""
    return bool(given) and hmac.compare_digest(_digest(token.reveal()), _digest(given or ""))


def session_value(token: Secret) -> str:
    """The session cookie's value for ``token``."""
    return hmac.new(token.reveal().encode(), _SESSION_LABEL, hashlib.sha256).hexdigest()


def bearer(request: web.Request) -> str | None:
    """The token of an ``Authorization: Bearer`` header, if any."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def has_session(request: web.Request, token: Secret) -> bool:
    """True when the request carries a valid session cookie."""
    cookie = request.cookies.get(SESSION_COOKIE, "")
    return bool(cookie) and hmac.compare_digest(_digest(cookie), _digest(session_value(token)))


def authenticated(request: web.Request, token: Secret) -> bool:
    """Bearer token or session cookie."""
    given = bearer(request)
    return token_matches(token, given) if given is not None else has_session(request, token)


def start_session(response: web.StreamResponse, request: web.Request, token: Secret) -> None:
    """Set the session cookie (and a fresh CSRF cookie) on ``response``."""
    response.set_cookie(SESSION_COOKIE, session_value(token), max_age=SESSION_MAX_AGE_S, path="/", httponly=True,
                        samesite="Strict", secure=request.secure)
    set_csrf(response, request, secrets.token_hex(16))


def end_session(response: web.StreamResponse) -> None:
    response.del_cookie(SESSION_COOKIE, path="/")
    response.del_cookie(CSRF_COOKIE, path="/")


def csrf_token(request: web.Request) -> str | None:
    """The browser's CSRF token, None when it has none yet."""
    value = request.cookies.get(CSRF_COOKIE, "")
    return value if len(value) == 32 and all(c in "0123456789abcdef" for c in value) else None


def set_csrf(response: web.StreamResponse, request: web.Request, value: str) -> None:
    response.set_cookie(CSRF_COOKIE, value, max_age=SESSION_MAX_AGE_S, path="/", httponly=True, samesite="Strict",
                        secure=request.secure)


def new_csrf_token() -> str:
    return secrets.token_hex(16)


def csrf_matches(request: web.Request, submitted: str | None) -> bool:
    """Double-submit check: the form's token equals the cookie's."""
    cookie = csrf_token(request)
    return cookie is not None and bool(submitted) and hmac.compare_digest(_digest(cookie), _digest(submitted or ""))
