"""Who may see the page and press its buttons: the admin token, sessions, CSRF and the login throttle.

* API clients send ``Authorization: Bearer <token>``.
* A browser logs in once (``/login?token=`` or the login form) and gets a session cookie
  ``<session id>.<issued at>.<HMAC>``, the HMAC keyed with a key derived from the token: the token
  itself is not stored in the browser, every replica accepts the cookie without shared state,
  changing the token ends every session, and a session older than 12 h is refused by the server
  (not only forgotten by the browser). HttpOnly and SameSite=Strict.
* Forms carry a CSRF token that is an HMAC of the session id (with another key derived from the
  token). It is bound to the session, not to a cookie: a page on another port of the same host can
  write cookies for this host (cookies ignore ports, and SameSite calls it the same site), so a
  double-submit cookie could be tossed; it cannot make the HMAC of a session id it never sees.
* Every state-changing request must come from this origin: ``Sec-Fetch-Site`` when the browser
  sends it (``same-origin`` or ``none``), else ``Origin`` must name this host. Requests with
  neither come from no browser's cross-site form, and still need a session's CSRF token or the
  Bearer token. Bearer requests need no CSRF token: browsers never add that header on their own.
* Failed token checks (login and Bearer) are throttled per client address and globally, in Redis
  so that every replica counts them: see :class:`LoginThrottle`.

Every comparison is constant-time (``hmac.compare_digest`` of equal-length digests).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import math
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web

from router import redisconn
from router.errors import ConfigError
from router.settings import Secret

SESSION_COOKIE = "router_admin_session"
LEGACY_CSRF_COOKIE = "router_admin_csrf"  # the old double-submit cookie; only ever deleted now
CSRF_FIELD = "csrf"
SESSION_MAX_AGE_S = 12 * 3600
MIN_TOKEN_LENGTH = 32
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_SESSION_LABEL = b"router-admin-session-v2"
_CSRF_LABEL = b"router-admin-csrf-v2"
_CLOCK_SKEW_S = 300


def dev_token() -> str:
    """A random 32-hex-digit token for `router admin --dev-token`."""
    return secrets.token_hex(16)


def require_strong_token(token: Secret) -> None:
    """ConfigError when the admin token is shorter than :data:`MIN_TOKEN_LENGTH` (the token is not shown)."""
    length = len(token.reveal())
    if length < MIN_TOKEN_LENGTH:
        raise ConfigError(f"ROUTER_ADMIN_TOKEN is {length} characters long; it must be at least "
                          f"{MIN_TOKEN_LENGTH} characters (`python -c 'import secrets; print(secrets.token_hex(16))'`)")


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


def _key(token: Secret, label: bytes) -> bytes:
    return hmac.new(token.reveal().encode("utf-8", "surrogatepass"), label, hashlib.sha256).digest()


def token_matches(token: Secret, given: str | None) -> bool:
    """Constant-time check of a presented token."""
    return bool(given) and hmac.compare_digest(_digest(token.reveal()), _digest(given or ""))


def bearer(request: web.Request) -> str | None:
    """The token of an ``Authorization: Bearer`` header, if any."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


# ---- sessions and CSRF ---------------------------------------------------------------------------


def _session_mac(token: Secret, sid: str, issued: int) -> str:
    return hmac.new(_key(token, _SESSION_LABEL), f"{sid}.{issued}".encode(), hashlib.sha256).hexdigest()


def session_id(request: web.Request, token: Secret, now: float) -> str | None:
    """The id of the request's valid session, None without one (missing, forged, expired, old token)."""
    sid, _, rest = request.cookies.get(SESSION_COOKIE, "").partition(".")
    issued_text, _, mac = rest.partition(".")
    if len(sid) != 32 or not issued_text.isdigit() or len(issued_text) > 12:
        return None
    issued = int(issued_text)
    if not -_CLOCK_SKEW_S <= now - issued <= SESSION_MAX_AGE_S:
        return None
    return sid if hmac.compare_digest(_digest(mac), _digest(_session_mac(token, sid, issued))) else None


def start_session(response: web.StreamResponse, request: web.Request, token: Secret, now: float) -> None:
    """Set a new session's cookie on ``response``."""
    sid, issued = secrets.token_hex(16), int(now)
    response.set_cookie(SESSION_COOKIE, f"{sid}.{issued}.{_session_mac(token, sid, issued)}",
                        max_age=SESSION_MAX_AGE_S, path="/", httponly=True, samesite="Strict", secure=request.secure)
    response.del_cookie(LEGACY_CSRF_COOKIE, path="/")


def end_session(response: web.StreamResponse) -> None:
    """Delete the session cookie (the session id is never valid again only once it expires: see docs)."""
    response.del_cookie(SESSION_COOKIE, path="/")
    response.del_cookie(LEGACY_CSRF_COOKIE, path="/")


def csrf_token(token: Secret, sid: str) -> str:
    """The CSRF token of session ``sid``: 32 hex digits of an HMAC of the session id."""
    return hmac.new(_key(token, _CSRF_LABEL), sid.encode(), hashlib.sha256).hexdigest()[:32]


def csrf_matches(request: web.Request, token: Secret, submitted: str | None, now: float) -> bool:
    """The form's token is the CSRF token of the request's own session."""
    sid = session_id(request, token, now)
    return sid is not None and bool(submitted) and hmac.compare_digest(
        _digest(csrf_token(token, sid)), _digest(submitted or ""))


def same_origin(request: web.Request) -> bool:
    """False for a request a browser flags as cross-site or cross-origin.

    ``Sec-Fetch-Site`` decides when present (every current browser sends it). Otherwise ``Origin``,
    when present, must name this host (scheme aside: a TLS-terminating proxy changes it). ``Origin:
    null`` alone is refused: sandboxed frames and redirects send it. A request with neither header is
    not a browser's cross-origin request; the CSRF token or the Bearer token still guards it.
    """
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return site.strip().lower() in ("same-origin", "none")
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    try:
        parts = urlsplit(origin.strip())
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc) and parts.netloc.lower() == request.host.lower()


# ---- the login throttle --------------------------------------------------------------------------


@dataclass(frozen=True)
class LoginLimits:
    """How many wrong tokens are tolerated before answers slow down.

    Per client address: ``free_failures`` in a row, then the next attempt waits 1 s, then 2 s, 4 s…
    up to ``max_delay_s``; a right token resets the count; it is forgotten ``forget_after_s`` after
    the last failure. Globally: at most ``global_failures_per_minute`` failures per clock minute,
    from all addresses together; beyond that every token check waits for the next minute.
    """

    free_failures: int = 5
    max_delay_s: float = 900.0
    global_failures_per_minute: int = 100
    forget_after_s: int = 3600


@dataclass(frozen=True)
class Gate:
    """The throttle's answer before a token is checked."""

    retry_after_s: int  # 0: go ahead
    failures: int  # this address's failures in a row


def client_address(request: web.Request) -> str:
    """The peer's address; IPv6 by /64, the block one host usually holds. Forwarding headers are not trusted."""
    remote = request.remote or "unknown"
    try:
        address = ipaddress.ip_address(remote)
    except ValueError:
        return remote[:64]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


@dataclass(frozen=True)
class TokenVerdict:
    """The answer to a presented token: accepted, refused, or not checked yet (``retry_after_s`` > 0)."""

    accepted: bool
    retry_after_s: int = 0


class LoginThrottle:
    """Counts failed token checks in Redis and says when the next check may run.

    A throttled request is refused *before* its token is compared, so a guess made while throttled
    learns nothing, not even when it is right. Within one process the gate, the check and the record
    of a failure run one request at a time, so a burst of parallel guesses cannot all pass the gate
    before the first failure is counted; across replicas at most one guess per replica can slip by.
    """

    def __init__(self, prefix: str, limits: LoginLimits) -> None:
        self.prefix = prefix
        self.limits = limits
        self._lock = asyncio.Lock()

    async def check(self, client: redisconn.Async, address: str, token: Secret, given: str | None,
                    now: float) -> TokenVerdict:
        """Compare ``given`` with the token unless ``address`` (or everyone) must wait; count a failure."""
        async with self._lock:
            gate = await self._gate(client, address, now)
            if gate.retry_after_s:
                return TokenVerdict(accepted=False, retry_after_s=gate.retry_after_s)
            if token_matches(token, given):
                if gate.failures:
                    await client.delete(self._address_key(address))
                return TokenVerdict(accepted=True)
            await self._failed(client, address, now)
            return TokenVerdict(accepted=False)

    def _address_key(self, address: str) -> str:
        return f"{self.prefix}admin:login:{{{address}}}"

    def _global_key(self, now: float) -> str:
        return f"{self.prefix}admin:login:global:{int(now // 60)}"

    async def _gate(self, client: redisconn.Async, address: str, now: float) -> Gate:
        async with client.pipeline(transaction=False) as pipe:
            pipe.hmget(self._address_key(address), "fails", "next_ms")
            pipe.get(self._global_key(now))
            (fails, next_ms), global_fails = await pipe.execute()
        wait_s = max(0.0, (int(next_ms or 0) - now * 1000) / 1000)
        if int(global_fails or 0) >= self.limits.global_failures_per_minute:
            wait_s = max(wait_s, 60 - now % 60)
        return Gate(math.ceil(wait_s), int(fails or 0))

    async def _failed(self, client: redisconn.Async, address: str, now: float) -> None:
        key, global_key = self._address_key(address), self._global_key(now)
        async with client.pipeline(transaction=False) as pipe:
            pipe.hincrby(key, "fails", 1)
            pipe.expire(key, self.limits.forget_after_s)
            pipe.incr(global_key)
            pipe.expire(global_key, 120)
            fails, *_ = await pipe.execute()
        excess = int(fails) - self.limits.free_failures
        if excess >= 0:  # the n-th failure past the free ones: wait 2**n s, at most max_delay_s
            delay_s = min(2.0 ** min(excess, 63), self.limits.max_delay_s)
            await client.hset(key, "next_ms", str(int(now * 1000 + delay_s * 1000)))
