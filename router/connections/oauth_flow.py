"""The OAuth 2.0 authorization-code connect flow with PKCE (RFC 6749 §4.1, RFC 7636).

Shared by `router connections connect` (a loopback listener, below) and any page that runs the
flow with its own redirect URI: the pure parts take the redirect URI as given.

``router connections connect TENANT INTEGRATION`` prints (and, unless told not to, opens) the
partner's authorize URL; the person consents in a browser; the partner redirects to a one-shot
loopback listener (RFC 8252 §7.3: ``http://127.0.0.1:<port>/callback``), which checks ``state``,
exchanges the code with the PKCE verifier, and the tokens become the connection's credentials —
encrypted in ``_connections``, never printed.

The pure parts (the verifier and challenge, the URL, the callback's verdict, the token answer) are
functions; :func:`wait_for_code` and :func:`exchange` own the I/O.
"""

from __future__ import annotations

import base64
import hashlib
import html
import secrets
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import orjson

from router import codes
from router.connections.model import ConnectionsError, OAuth2AuthorizationCode
from router.settings import Secret
from router.spec.connection_use import ConnectionUse

CALLBACK_PATH = "/callback"
TOKEN_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class Attempt:
    """One connect attempt: what the callback must echo and what proves the code is ours."""

    state: str
    verifier: str
    redirect_uri: str

    @property
    def challenge(self) -> str:
        """The S256 code challenge of the verifier (RFC 7636 §4.2)."""
        digest = hashlib.sha256(self.verifier.encode("ascii")).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def new_attempt(redirect_uri: str) -> Attempt:
    """A fresh ``state`` and a 64-character verifier (RFC 7636 §4.1: 43 to 128 unreserved characters)."""
    return Attempt(secrets.token_urlsafe(32), secrets.token_urlsafe(48), redirect_uri)


def check_use(use: ConnectionUse | None, integration: str) -> ConnectionUse:
    """``use`` if the integration's spec can run the connect flow; ConnectionsError naming what is missing."""
    if use is None or "oauth2_authorization_code" not in use.credentials:
        raise ConnectionsError(f"{integration} does not take oauth2_authorization_code credentials from a "
                               "connection (destination.http.connection.credentials)",
                               code=codes.CONNECTIONS_INVALID_CREDENTIALS)
    missing = [name for name in ("authorize_url", "token_url", "client_id", "client_secret")
               if not getattr(use, name)]
    if missing:
        raise ConnectionsError(f"{integration}'s spec lacks connection.{', connection.'.join(missing)} for the "
                               "connect flow", code=codes.CONNECTIONS_INVALID_CREDENTIALS)
    return use


def authorize_url(use: ConnectionUse, attempt: Attempt, login_hint: str | None = None) -> str:
    """The partner's authorize URL for ``attempt`` (S256 PKCE; ``scope`` when the spec names one)."""
    query = {"response_type": "code", "client_id": use.client_id or "", "redirect_uri": attempt.redirect_uri,
             "state": attempt.state, "code_challenge": attempt.challenge, "code_challenge_method": "S256"}
    if use.scope:
        query["scope"] = use.scope
    if login_hint:
        query["login_hint"] = login_hint
    base = use.authorize_url or ""
    return f"{base}{'&' if '?' in base else '?'}{urlencode(query)}"


def callback_verdict(query: str, attempt: Attempt) -> tuple[str | None, str | None]:
    """(code, None) for a callback carrying our ``state`` and a code, else (None, why)."""
    params = parse_qs(query, keep_blank_values=True)

    def one(name: str) -> str | None:
        values = params.get(name)
        return values[0] if values and len(values) == 1 else None

    if not secrets.compare_digest((one("state") or "").encode(), attempt.state.encode()):
        return None, "the callback's state does not match this attempt (a forged or stale redirect)"
    error = one("error")
    if error is not None:
        detail = one("error_description")
        return None, f"the partner answered {error[:100]}" + (f": {detail[:200]}" if detail else "")
    code = one("code")
    if not code or len(code) > 2048:
        return None, "the callback carries no authorization code"
    return code, None


def credentials_from(doc: Any, now_s: float) -> OAuth2AuthorizationCode:
    """Credentials from the token endpoint's answer; ConnectionsError naming what is missing."""
    if not isinstance(doc, dict) or not isinstance(doc.get("access_token"), str) or not doc["access_token"]:
        raise ConnectionsError("the token endpoint's answer has no access_token",
                               code=codes.CONNECTIONS_INVALID_CREDENTIALS)
    expires_in = doc.get("expires_in")
    expires = (int((now_s + float(expires_in)) * 1000)
               if isinstance(expires_in, int | float) and not isinstance(expires_in, bool) and expires_in > 0 else None)
    refresh = doc.get("refresh_token")
    scope = doc.get("scope")
    return OAuth2AuthorizationCode(Secret(doc["access_token"]), Secret(refresh) if isinstance(refresh, str) and refresh
                                   else None, expires, tuple(scope.split()) if isinstance(scope, str) else ())


def _basic(use: ConnectionUse) -> str:
    """Our client's HTTP Basic credentials (RFC 6749 §2.3.1: each part form-encoded first)."""
    pair = f"{quote(use.client_id or '', safe='')}:{quote(use.client_secret or '', safe='')}"
    return "Basic " + base64.b64encode(pair.encode()).decode()


def _post_form(url: str, form: dict[str, str], use: ConnectionUse) -> tuple[int, bytes]:
    """POST ``form`` to ``url`` with our client's credentials: (status, body), or ConnectionsError
    ``connections.unavailable`` when the partner cannot be reached."""
    request = urllib.request.Request(url, data=urlencode(form).encode(), method="POST", headers={  # noqa: S310 (the spec's URL)
        "Content-Type": "application/x-www-form-urlencoded", "Authorization": _basic(use),
        "Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=TOKEN_TIMEOUT_S) as resp:  # noqa: S310
            return resp.status, resp.read(1 << 20)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(1 << 20)
    except (urllib.error.URLError, OSError) as exc:
        raise ConnectionsError(f"{urlsplit(url).netloc} could not be reached: {type(exc).__name__}",
                               code=codes.CONNECTIONS_UNAVAILABLE) from None


def revoke(use: ConnectionUse, credentials: OAuth2AuthorizationCode) -> str:
    """Revoke ``credentials`` at the partner (RFC 7009: the refresh token, which ends the grant,
    then the access token); one line saying what happened, never a token."""
    if not use.revoke_url:
        return "the partner has no revocation endpoint in the spec: its tokens expire by themselves"
    tokens = [(credentials.refresh_token, "refresh_token"), (credentials.access_token, "access_token")]
    statuses = []
    for token, hint in tokens:
        if token is None:
            continue
        try:
            status, _ = _post_form(use.revoke_url, {"token": token.reveal(), "token_type_hint": hint}, use)
        except ConnectionsError as exc:
            return f"tokens not revoked at the partner ({exc}): revoke them there; they are deleted here"
        statuses.append(status)
    if all(s == 200 for s in statuses):
        return "tokens revoked at the partner"
    return (f"the partner answered {', '.join(map(str, statuses))} to the revocation: check there; the tokens are "
            "deleted here")


def exchange(use: ConnectionUse, attempt: Attempt, code: str) -> OAuth2AuthorizationCode:
    """The code (with the PKCE verifier) for tokens at the partner's token endpoint; our client
    authenticates with HTTP Basic (RFC 6749 §2.3.1)."""
    status, raw = _post_form(use.token_url or "", {
        "grant_type": "authorization_code", "code": code, "redirect_uri": attempt.redirect_uri,
        "code_verifier": attempt.verifier, "client_id": use.client_id or ""}, use)
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        doc = None
    if status != 200:
        error = doc.get("error") if isinstance(doc, dict) else None
        raise ConnectionsError(f"the token endpoint refused the code: {status}"
                               + (f" {str(error)[:100]}" if error else ""), code=codes.CONNECTIONS_INVALID_CREDENTIALS)
    return credentials_from(doc, time.time())


class _Callback(BaseHTTPRequestHandler):
    server: _CallbackServer

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path != CALLBACK_PATH:
            self._answer(404, "Not the callback.")
            return
        code, why = callback_verdict(url.query, self.server.attempt)
        if code is None:
            self._answer(400, f"Not connected: {why}.")
            if "state" not in (why or ""):  # a forged redirect must not end a real attempt
                self.server.finish(None, why)
            return
        self._answer(200, "Connected. You can close this window.")
        self.server.finish(code, None)

    def _answer(self, status: int, text: str) -> None:
        body = f"<!doctype html><title>router</title><p>{html.escape(text)}</p>".encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return  # the query holds the code: never logged


class _CallbackServer(ThreadingHTTPServer):
    def __init__(self, port: int) -> None:
        super().__init__(("127.0.0.1", port), _Callback)
        self.attempt = Attempt("", "", "")
        self.result: tuple[str | None, str | None] | None = None
        self.done = threading.Event()

    def finish(self, code: str | None, why: str | None) -> None:
        if not self.done.is_set():
            self.result = (code, why)
            self.done.set()


class Listener:
    """The one-shot loopback listener the partner redirects to (RFC 8252 §7.3)."""

    def __init__(self, port: int = 0) -> None:
        self._server = _CallbackServer(port)
        self.redirect_uri = f"http://127.0.0.1:{self._server.server_address[1]}{CALLBACK_PATH}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="oauth-callback", daemon=True)

    def __enter__(self) -> Listener:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def wait_for_code(self, attempt: Attempt, timeout_s: float) -> str:
        """The authorization code of ``attempt``; ConnectionsError when refused or not in time."""
        self._server.attempt = attempt
        if not self._server.done.wait(timeout_s):
            raise ConnectionsError(f"no answer from the partner within {timeout_s:.0f}s; run connect again",
                                   code=codes.CONNECTIONS_UNAVAILABLE)
        code, why = self._server.result or (None, "no answer")
        if code is None:
            raise ConnectionsError(f"not connected: {why}", code=codes.CONNECTIONS_INVALID_CREDENTIALS)
        return code
