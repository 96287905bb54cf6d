"""The admin page as an aiohttp application: ``create_app(settings)``.

Routes: ``GET /`` (the page), ``GET /api/health`` (the same rows as JSON), ``POST
/integrations/{name}/pause|resume|replay``, ``GET /api/connections``, ``POST /connections/connect``,
``POST /connections/{tenant}/{integration}/connect|disconnect|resume``, ``GET /connections/callback``
(the partner's OAuth redirect), ``GET|POST /login``, ``POST /logout``, ``GET /healthz``, ``GET
/metrics``. Redis clients, the Kafka probe and (with ROUTER_ENCRYPTION_KEY) the connection store and
writer start and stop in ``cleanup_ctx``.

A browser gets HTML and, after a form, a redirect to ``/`` with a one-time flash message; an API
client (``Authorization: Bearer``, or any ``/api/`` path) gets JSON. Problems are answered, not
raised: a 404 names the known integrations, an unexpected error is logged and answered with a
short message, never a stack trace.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import html
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
from aiohttp import web

from router import codes, groupwatch, health, redisconn
from router.connections import changes, oauth_flow
from router.connections.keyring import KeyRing
from router.connections.model import Connection, ConnectionsError, OAuth2AuthorizationCode, check_tenant
from router.connections.partner import connection_use, purge_line
from router.connections.store import DEFAULT_TOPIC, TOPIC_ENV, ConnectionStore, ConnectionWriter
from router.controls import State, set_state
from router.dlq.filters import DlqFilter
from router.dlq.replay import ReplayRequest, ReplaySummary, replay
from router.errors import ConfigError, RouterError
from router.settings import Secret, Settings
from router.spec.connection_use import ConnectionUse, parse_use
from router.spec.load import Catalog, load_catalog
from router.spec.model import Integration
from router.webapp import ErrorAnswers, error_middleware, healthz, json_response, metrics_response
from services.admin import auth
from services.admin import connections as conn_view
from services.admin.page import STYLESHEET, PageContext, RowKafka, iso, render_login, render_message, render_page
from services.admin.probe import KafkaProbe, KafkaSnapshot, dlq_topics_of, register_gauges
from services.admin.rows import HealthRow, read_rows
from services.admin.workers import WorkerRow, render_workers, worker_json, worker_rows

log = logging.getLogger("router.admin")

FLASH_COOKIE = "router_admin_flash"
CODE_PATTERN = re.compile(r"^[A-Za-z0-9_.*?\-]{1,100}$")
PUBLIC_PATHS = frozenset({"/healthz", "/metrics", "/login", "/static/admin.css"})
CALLBACK_PATH = "/connections/callback"  # the partner's redirect: the binding cookie, not the session, admits it
BINDING_COOKIE = "router_admin_connect"
BINDING_PATTERN = re.compile(r"^[0-9a-f]{32}$")
MAX_CALLBACK_QUERY = 4096
STORE_WAIT_S = 10.0
STARTUP_READ_S = 30.0
CSP = ("default-src 'none'; style-src 'self'; form-action 'self'{partners}; frame-ancestors 'none'; "
       "base-uri 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP.format(partners=""),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class AdminOptions:
    """What `router admin` adds to the settings."""

    deliver_group: str = "router.deliver"
    cache_ttl_s: float = 5.0
    login_limits: auth.LoginLimits = field(default_factory=auth.LoginLimits)
    development: bool = False  # `--dev-token`: a ROUTER_ADMIN_TOKEN shorter than 32 characters is accepted
    clock: Callable[[], float] = time.time  # seconds since the epoch: sessions and the login throttle


class Services:
    """The clients the handlers share, started and stopped by :func:`_services_ctx`."""

    client: redisconn.Async  # reads (decoded strings)
    controls: redisconn.Sync  # router.controls.set_state is synchronous: used from a thread
    probe: KafkaProbe

    def __init__(self, settings: Settings, catalog: Catalog, options: AdminOptions) -> None:
        if not settings.admin_token:
            raise ConfigError("ROUTER_ADMIN_TOKEN is not set; set it to a long random value "
                              "(or pass --dev-token on a development machine)")
        if not options.development:
            auth.require_strong_token(settings.admin_token)
        self.token: Secret = settings.admin_token
        self.throttle = auth.LoginThrottle(settings.redis_key_prefix, options.login_limits)
        self.settings = settings
        self.catalog = catalog
        self.options = options
        self.names = [i.name for i in catalog.integrations]
        self.replay_lock = asyncio.Lock()
        self.stop = threading.Event()  # ends a replay in progress at shutdown
        # Connections: only with an encryption key; the page says so otherwise.
        self.ring = KeyRing.from_env()
        self.connections_topic = os.environ.get(TOPIC_ENV, "").strip() or DEFAULT_TOPIC
        self.store: ConnectionStore | None = None
        self.writer: ConnectionWriter | None = None
        self.pending = conn_view.PendingAttempts()
        self.oauth = [i.name for i in catalog.integrations if _runs_connect_flow(i)]
        # The Connect form's redirect to a partner's consent page is a form navigation: CSP's
        # form-action must name those origins (and only those) beside our own.
        origins = sorted({_origin(_unresolved_use(i)) for i in catalog.integrations if i.name in self.oauth})
        self.csp = CSP.format(partners="".join(f" {o}" for o in origins if o))

    def integration(self, name: str) -> Integration | None:
        return next((i for i in self.catalog.integrations if i.name == name), None)


SERVICES = web.AppKey("admin_services", Services)


def _unresolved_use(integration: Integration) -> ConnectionUse | None:
    section = (integration.destination.http or {}).get("connection")
    return parse_use(section) if section is not None else None


def _runs_connect_flow(integration: Integration) -> bool:
    try:
        oauth_flow.check_use(_unresolved_use(integration), integration.name)
    except ConnectionsError:
        return False
    return True


def _origin(use: ConnectionUse | None) -> str:
    parts = urlsplit((use.authorize_url if use else None) or "")
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme in ("http", "https") and parts.netloc else ""


def create_app(settings: Settings, *, catalog: Catalog | None = None, options: AdminOptions | None = None
               ) -> web.Application:
    """The admin application; ConfigError when the token, Redis or Kafka is not configured."""
    if not settings.redis_url:
        raise ConfigError("REDIS_URL is not set: health rows and integration states live in Redis")
    settings.kafka_common()  # KAFKA_BOOTSTRAP_SERVERS is needed for DLQ depth, lag and replay
    catalog = catalog or load_catalog(settings.integrations_dir, settings.schemas_dir)
    services = Services(settings, catalog, options or AdminOptions())
    register_gauges()
    app = web.Application(middlewares=[_errors, _authenticate])
    app[SERVICES] = services
    app.cleanup_ctx.append(_services_ctx)
    app.on_response_prepare.append(_security_headers)
    app.router.add_get("/", index)
    app.router.add_get("/api/health", api_health)
    app.router.add_post("/integrations/{name}/pause", pause)
    app.router.add_post("/integrations/{name}/resume", resume)
    app.router.add_post("/integrations/{name}/replay", replay_dlq)
    app.router.add_get("/api/connections", api_connections)
    app.router.add_post("/connections/connect", connect_form)
    app.router.add_post("/connections/{tenant}/{integration}/connect", connect_named)
    app.router.add_post("/connections/{tenant}/{integration}/disconnect", disconnect)
    app.router.add_post("/connections/{tenant}/{integration}/resume", resume_connection)
    app.router.add_get(CALLBACK_PATH, connect_callback)
    app.router.add_get("/login", login)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/static/admin.css", stylesheet)
    return app


async def _services_ctx(app: web.Application) -> AsyncIterator[None]:
    services = app[SERVICES]
    settings = services.settings
    url = settings.redis_url or ""
    services.client = redisconn.connect_async(url, decode_responses=True, encoding_errors="replace",
                                              socket_timeout=5)
    services.controls = redisconn.connect(url, socket_timeout=5)
    services.probe = KafkaProbe(settings, services.catalog, route_group=settings.route_group,
                                deliver_group=services.options.deliver_group, ttl_s=services.options.cache_ttl_s)
    if services.ring is not None:
        services.store = ConnectionStore(settings, services.ring, services.connections_topic)
        await asyncio.to_thread(services.store.start)
        # Serve once what the topic held is read (bounded: past it the page says it is still reading).
        await asyncio.to_thread(services.store.wait_caught_up, STARTUP_READ_S)
        services.writer = await asyncio.to_thread(ConnectionWriter, settings, services.ring,
                                                  services.connections_topic)
    yield
    services.stop.set()
    if services.store is not None:
        await asyncio.to_thread(services.store.stop)
    if services.writer is not None:
        await asyncio.to_thread(services.writer.close)
    await services.probe.close()
    await services.client.aclose()
    services.controls.close()


# ---- responses ---------------------------------------------------------------------------------


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


def _redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def wants_json(request: web.Request) -> bool:
    """API clients: a Bearer header, an ``/api/`` path, or an Accept preferring JSON to HTML."""
    accept = request.headers.get("Accept", "")
    return (auth.bearer(request) is not None or request.path.startswith("/api/")
            or ("application/json" in accept and "text/html" not in accept))


def problem(request: web.Request, status: int, title: str, message: str, code: str | None = None,
            headers: dict[str, str] | None = None) -> web.Response:
    """An error the user can act on, as JSON or as a small page; ``code`` is a stable machine code."""
    if wants_json(request):
        body = {"error": title, "message": message} | ({"code": code} if code else {})
        return json_response(body, status, headers=headers)
    response = _html(render_message(title, f"{message} [{code}]" if code else message), status)
    response.headers.update(headers or {})
    return response


def _throttled(request: web.Request, retry_after_s: int) -> web.Response:
    return problem(request, 429, "Too many wrong tokens",
                   f"too many wrong admin tokens from this address (or from everywhere); "
                   f"try again in {retry_after_s} s", code=codes.ADMIN_LOGIN_THROTTLED,
                   headers={"Retry-After": str(retry_after_s)})


async def _check_token(request: web.Request, given: str | None) -> auth.TokenVerdict:
    """Compare a presented token, throttled per client address and globally."""
    services = request.app[SERVICES]
    return await services.throttle.check(services.client, auth.client_address(request), services.token, given,
                                         services.options.clock())


def _flash(response: web.StreamResponse, request: web.Request, kind: str, text: str) -> None:
    value = base64.urlsafe_b64encode(orjson.dumps([kind, text[:2000]])).decode()
    response.set_cookie(FLASH_COOKIE, value, max_age=120, path="/", httponly=True, samesite="Strict",
                        secure=request.secure)


def _read_flash(request: web.Request) -> tuple[str, str] | None:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    try:
        kind, text = orjson.loads(base64.urlsafe_b64decode(raw.encode()))
    except (ValueError, TypeError, orjson.JSONDecodeError):
        return None
    return ("error" if kind == "error" else "ok", str(text))


def _done(request: web.Request, status: int, body: dict[str, Any], flash: tuple[str, str]) -> web.Response:
    """An action's answer: JSON for API clients; for a browser, back to the page with a flash message."""
    if wants_json(request):
        return json_response(body, status)
    response = _redirect("/")
    _flash(response, request, *flash)
    return response


# ---- middleware ------------------------------------------------------------------------------


def _http_error(request: web.Request, exc: web.HTTPException) -> web.Response:
    return problem(request, exc.status, exc.reason, "no such page" if exc.status == 404 else exc.reason)


def _redis_failed(request: web.Request, exc: Exception) -> web.Response:
    return problem(request, 503, "Service Unavailable", f"Redis did not answer ({type(exc).__name__}); "
                                                        "try again in a moment")


def _router_failed(request: web.Request, exc: Exception) -> web.Response:
    code = exc.code if isinstance(exc, RouterError) else ""
    return problem(request, 500, "Internal Server Error", f"[{code}] {exc}")


def _internal(request: web.Request, exc: Exception) -> web.Response:
    return problem(request, 500, "Internal Server Error", f"internal error ({type(exc).__name__}); see the admin log")


# Routing errors and anything unexpected become short answers, never a stack trace (router/webapp.py).
_errors = error_middleware(ErrorAnswers(
    http=_http_error, internal=_internal,
    expected=(*((kind, _redis_failed) for kind in redisconn.ERRORS), (RouterError, _router_failed))), log)


@web.middleware
async def _authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """State changes only from this origin; everything but the public paths needs the token or a session.

    A Bearer token is a guess until it matches: it goes through the login throttle. A session
    cookie is an HMAC nobody can guess, so it does not.
    """
    if request.method not in auth.SAFE_METHODS and not auth.same_origin(request):
        return problem(request, 403, "Cross-origin request refused",
                       "state-changing requests must come from this page's own origin", code=codes.ADMIN_CROSS_ORIGIN)
    if request.path in PUBLIC_PATHS or (request.path == CALLBACK_PATH and request.method in ("GET", "HEAD")):
        return await handler(request)
    services = request.app[SERVICES]
    given = auth.bearer(request)
    if given is not None:
        verdict = await _check_token(request, given)
        if verdict.retry_after_s:
            return _throttled(request, verdict.retry_after_s)
        if verdict.accepted:
            return await handler(request)
    elif auth.session_id(request, services.token, services.options.clock()) is not None:
        return await handler(request)
    if wants_json(request):
        return json_response({"error": "unauthorized", "code": codes.ADMIN_UNAUTHORIZED,
                              "message": "send Authorization: Bearer <ROUTER_ADMIN_TOKEN>"}, 401,
                             headers={"WWW-Authenticate": 'Bearer realm="router-admin"'})
    if request.method in ("GET", "HEAD"):
        return _redirect("/login")
    return _html(render_message("Log in first", "Your session has ended; log in again."), 401)


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.setdefault("Content-Security-Policy", request.app[SERVICES].csp)
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)


# ---- the page and its JSON ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Read:
    """What one page or JSON answer shows, read at ``now_ms``."""

    now_ms: int
    rows: list[HealthRow]
    snapshot: KafkaSnapshot
    kafka: dict[str, RowKafka]
    stuck: list[str]
    workers: list[WorkerRow]


async def _read(services: Services) -> _Read:
    now_ms = int(time.time() * 1000)
    prefix = services.settings.redis_key_prefix
    rows, snapshot, stuck, workers = await asyncio.gather(
        read_rows(services.client, prefix, services.names, now_ms),
        services.probe.current(),
        services.client.hgetall(groupwatch.page_key(prefix)),
        services.client.hgetall(health.workers_key(prefix)))

    kafka = {}
    for i in services.catalog.integrations:
        src, dest = i.source.topic, i.destination.topic
        kafka[i.name] = RowKafka(src, dest, snapshot.dlq_of(i.name) if snapshot.taken_ms else None,
                                 snapshot.lag_of(services.probe.route_group, src),
                                 snapshot.lag_of(services.probe.deliver_group, dest))
    return _Read(now_ms, rows, snapshot, kafka, groupwatch.stuck_groups(stuck, now_ms), worker_rows(workers, now_ms))


async def index(request: web.Request) -> web.Response:
    """The health page."""
    services = request.app[SERVICES]
    seen = await _read(services)
    sid = auth.session_id(request, services.token, services.options.clock())
    csrf = auth.csrf_token(services.token, sid) if sid else ""  # a Bearer client's forms cannot be posted
    flash = _read_flash(request)
    alerts, workers = render_workers(seen.workers, seen.now_ms)
    ctx = PageContext(seen.now_ms, csrf, services.probe.route_group, services.probe.deliver_group, flash,
                      tuple(seen.stuck), alerts, workers,
                      conn_view.render_section(_connection_rows(services), services.oauth, csrf, seen.now_ms,
                                               _store_problem(services)))
    response = _html(render_page(seen.rows, seen.kafka, seen.snapshot, ctx))
    if flash is not None:
        response.del_cookie(FLASH_COOKIE, path="/")
    return response


def _ms(ms: int | None) -> str | None:
    return iso(ms) if ms else None


def row_json(row: HealthRow, kafka: RowKafka) -> dict[str, Any]:
    """One row of ``GET /api/health``."""
    error = row.last_error
    return {
        "integration": row.integration,
        "tenant": row.tenant,
        "state": row.state.state,
        "state_reason": row.state.reason or None,
        "state_since": _ms(row.state.since_ms),
        "last_success": _ms(row.last_success_ms),
        "last_routed": _ms(row.last_routed_ms),
        "last_error": None if error is None else {"code": error.code, "message": error.message,
                                                  "at": _ms(error.at_ms), "sample": error.sample},
        "success_rate_1h": row.success_rate,
        "ok_1h": row.ok_1h,
        "fail_1h": row.fail_1h,
        "dlq": None if kafka.dlq is None else {"depth": kafka.dlq.depth, "by_code": dict(kafka.dlq.by_code),
                                               "by_topic": dict(kafka.dlq.by_topic)},
        "consumer_lag": {
            "route": {"topic": kafka.source_topic, "total": sum(p.lag for p in kafka.route_lag),
                      "partitions": {str(p.partition): p.lag for p in kafka.route_lag}},
            "deliver": {"topic": kafka.delivery_topic, "total": sum(p.lag for p in kafka.deliver_lag),
                        "partitions": {str(p.partition): p.lag for p in kafka.deliver_lag}},
        },
    }


async def api_health(request: web.Request) -> web.Response:
    """Every row as JSON, with when Kafka was read and any Kafka problem."""
    services = request.app[SERVICES]
    seen = await _read(services)
    snapshot = seen.snapshot
    return json_response({
        "generated_at": iso(seen.now_ms),
        "kafka": {"read_at": _ms(snapshot.taken_ms), "error": snapshot.error, "stuck_groups": seen.stuck,
                  "route_group": services.probe.route_group, "deliver_group": services.probe.deliver_group},
        "rows": [row_json(r, seen.kafka[r.integration]) for r in seen.rows],
        "workers": [worker_json(w, seen.now_ms, iso) for w in seen.workers],
    })


# ---- actions -----------------------------------------------------------------------------------


async def _checked(request: web.Request) -> tuple[Integration, dict[str, str]] | web.Response:
    """The named integration and the submitted form, or the answer refusing the request."""
    services = request.app[SERVICES]
    form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
    if auth.bearer(request) is None and not _csrf_ok(request, form.get(auth.CSRF_FIELD)):
        return _csrf_refused(request)
    name = request.match_info["name"]
    integration = services.integration(name)
    if integration is None:
        known = ", ".join(services.names) or "none"
        return problem(request, 404, "Unknown integration", f"no integration named {name!r}; known: {known}")
    return integration, form


async def _set(request: web.Request, state: State) -> web.Response:
    checked = await _checked(request)
    if isinstance(checked, web.Response):
        return checked
    integration, _form = checked
    services = request.app[SERVICES]
    reason = "paused from the admin page" if state == "paused" else ""
    result = await asyncio.to_thread(set_state, services.controls, services.settings.redis_key_prefix,
                                     integration.name, state, reason)
    log.info("integration %s set to %s from the admin page", integration.name, state, extra={
        "integration": integration.name})
    verb = "Paused" if state == "paused" else "Resumed"
    text = f"{verb} {integration.name}." + (" Records wait in Kafka until it is resumed." if state == "paused" else "")
    return _done(request, 200, {"integration": integration.name, "state": result.state}, ("ok", text))


async def pause(request: web.Request) -> web.Response:
    """Stop delivering the integration's records (they wait in Kafka)."""
    return await _set(request, "paused")


async def resume(request: web.Request) -> web.Response:
    """Deliver again; also clears needs_reconnect."""
    return await _set(request, "active")


async def replay_dlq(request: web.Request) -> web.Response:
    """Replay the integration's DLQ records with one error code (or glob) to their original topics."""
    checked = await _checked(request)
    if isinstance(checked, web.Response):
        return checked
    integration, form = checked
    services = request.app[SERVICES]
    code = (request.query.get("code") or form.get("code") or "").strip()
    if not CODE_PATTERN.match(code):
        return problem(request, 400, "Bad code", "give an error code such as map.required_missing "
                                                 "(letters, digits, _ . - and the globs * ?)")
    if services.replay_lock.locked():
        return problem(request, 409, "Replay running", "a replay is already running here; try again when it ends")
    async with services.replay_lock:
        topics = await services.probe.existing_topics(dlq_topics_of(integration))
        dlq_filter = DlqFilter(codes=frozenset({code}), integrations=frozenset({integration.name}))
        loop = asyncio.get_running_loop()
        results: list[tuple[str, ReplaySummary | None, str | None]] = []
        for topic in topics:
            run = functools.partial(replay, services.settings, ReplayRequest(topic=topic, dlq_filter=dlq_filter),
                                    stop=services.stop)
            try:
                summary = await loop.run_in_executor(None, run)
                results.append((topic, summary, summary.error))
            except RouterError as exc:
                results.append((topic, None, str(exc)))
        services.probe.invalidate()
    return _replayed(request, integration.name, code, results)


def _replayed(request: web.Request, name: str, code: str,
              results: list[tuple[str, ReplaySummary | None, str | None]]) -> web.Response:
    replayed = sum(s.replayed for _, s, _ in results if s)
    failed = sum(s.failed for _, s, _ in results if s)
    errors = [f"{topic}: {error}" for topic, _, error in results if error]
    body = {"integration": name, "code": code, "replayed": replayed, "failed": failed,
            "topics": [{"topic": t, "replayed": s.replayed if s else 0, "failed": s.failed if s else 0,
                        "error": e} for t, s, e in results]}
    log.info("replayed %d DLQ record(s) of %s with code %s", replayed, name, code, extra={"integration": name})
    if errors:
        return _done(request, 502, body, ("error", f"Replay of {name} {code}: {replayed} replayed, then failed: "
                                                   + "; ".join(errors)))
    if not results:
        text = f"{name} has no DLQ topic yet: nothing to replay."
    elif replayed == 0 and failed == 0:
        text = (f"No DLQ records of {name} with code {code} to replay "
                "(records replayed before are not replayed again).")
    else:
        text = (f"Replayed {replayed} DLQ record(s) of {name} with code {code} to their original topic"
                + (f"; {failed} could not be replayed (see `router dlq show`)." if failed else "."))
    return _done(request, 200, body, ("error" if failed else "ok", text))


# ---- connections -------------------------------------------------------------------------------


def _connection_rows(services: Services) -> list[conn_view.ConnectionRow] | None:
    if services.store is None:
        return None
    return conn_view.connection_rows(services.store.all(), services.oauth)


def _store_problem(services: Services) -> str | None:
    store = services.store
    if store is None:
        return None
    if store.failure is not None:
        return f"{store.failure} [{store.failure.code}]"
    if not store.caught_up:
        return f"still reading {store.topic}: the list may be incomplete"
    if store.unreadable:
        names = ", ".join(f"{t}/{i} [{u.code}]" for (t, i), u in sorted(store.unreadable.items()))
        return f"connections this admin cannot read (not shown): {names}"
    return None


async def api_connections(request: web.Request) -> web.Response:
    """Every connection as JSON: state and credential type, never a secret."""
    services = request.app[SERVICES]
    rows = _connection_rows(services)
    if rows is None:
        return json_response({"configured": False, "note": conn_view.KEY_NOTE, "connections": []})
    return json_response({"configured": True, "topic": services.connections_topic,
                          "problem": _store_problem(services),
                          "connections": [conn_view.connection_json(r) for r in rows]})


async def _conn_checked(request: web.Request) -> dict[str, str] | web.Response:
    """The submitted form of a connections action, or the answer refusing it (CSRF, no key)."""
    form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
    if auth.bearer(request) is None and not _csrf_ok(request, form.get(auth.CSRF_FIELD)):
        return _csrf_refused(request)
    if request.app[SERVICES].store is None:
        return problem(request, 409, "Connections not configured", conn_view.KEY_NOTE, code=codes.CONNECTIONS_NO_KEY)
    return form


async def _row_action(request: web.Request) -> tuple[dict[str, str], str, Integration] | web.Response:
    """The form, tenant and integration of a connection row's action, or the answer refusing it."""
    form = await _conn_checked(request)
    if isinstance(form, web.Response):
        return form
    target = _target(request, request.match_info["tenant"], request.match_info["integration"])
    if isinstance(target, web.Response):
        return target
    return form, *target


def _target(request: web.Request, tenant: str, integration: str) -> tuple[str, Integration] | web.Response:
    """(tenant, integration spec), or a 400/404 answer naming what is wrong."""
    services = request.app[SERVICES]
    try:
        check_tenant(tenant)
    except ConnectionsError as exc:
        return problem(request, 400, "Bad tenant", str(exc), code=exc.code)
    spec = services.integration(integration)
    if spec is None:
        known = ", ".join(services.names) or "none"
        return problem(request, 404, "Unknown integration", f"no integration named {integration[:100]!r}; "
                                                            f"known: {known}")
    return tenant, spec


def _write_change(services: Services, tenant: str, integration: str,
                  change: Callable[[Connection | None], Connection]) -> tuple[Connection | None, Connection]:
    """Apply ``change`` to what is held and write it; wait until the store has read it back (so the
    page shows it). Blocking: run in a thread."""
    store, writer = services.store, services.writer
    if store is None or writer is None:
        raise ConnectionsError(conn_view.KEY_NOTE, code=codes.CONNECTIONS_NO_KEY)
    if not store.wait_caught_up(STORE_WAIT_S):
        raise ConnectionsError(f"still reading {store.topic}; try again in a moment",
                               code=codes.CONNECTIONS_UNAVAILABLE)
    current = store.get(tenant, integration)
    written = change(current)
    offset = writer.put(written)
    deadline = time.monotonic() + STORE_WAIT_S
    while store.applied_offset < offset and time.monotonic() < deadline and not services.stop.is_set():
        services.stop.wait(0.02)  # the tail thread reads it back within a poll or two
    return current, written


def _now_ms() -> int:
    return int(time.time() * 1000)


async def _start_connect(request: web.Request, tenant: str, integration: str) -> web.Response:
    """Hold a new connect attempt and send the browser to the partner's consent page."""
    services = request.app[SERVICES]
    target = _target(request, tenant, integration)
    if isinstance(target, web.Response):
        return target
    _, spec = target
    try:
        use = oauth_flow.check_use(await asyncio.to_thread(connection_use, spec), spec.name)
    except ConnectionsError as exc:
        return problem(request, 400, "Cannot connect", str(exc), code=exc.code)
    binding = request.cookies.get(BINDING_COOKIE, "")
    if not BINDING_PATTERN.match(binding):
        binding = secrets.token_hex(16)
    # The redirect URI is this admin's own address as the browser reached it; a production
    # deployment registers <its base URL>/connections/callback with each partner (docs/admin.md).
    attempt = oauth_flow.new_attempt(f"{request.scheme}://{request.host}{CALLBACK_PATH}")
    if services.pending.start(attempt, tenant, spec.name, binding) is None:
        return problem(request, 503, "Too many connect attempts",
                       f"{services.pending.limit} connect attempts are waiting for their partner; "
                       f"try again in a few minutes", code=codes.CONNECTIONS_UNAVAILABLE)
    log.info("connect flow started for %s/%s from the admin page", tenant, spec.name,
             extra={"integration": spec.name})
    response = _redirect(oauth_flow.authorize_url(use, attempt, login_hint=tenant))
    # SameSite=Lax: sent on the partner's top-level redirect back, which the Strict session cookie is not.
    response.set_cookie(BINDING_COOKIE, binding, max_age=int(conn_view.ATTEMPT_TTL_S), path="/connections/",
                        httponly=True, samesite="Lax", secure=request.secure)
    return response


async def connect_form(request: web.Request) -> web.Response:
    """The Connect form: a tenant and an OAuth-capable integration."""
    form = await _conn_checked(request)
    if isinstance(form, web.Response):
        return form
    return await _start_connect(request, form.get("tenant", "").strip(), form.get("integration", ""))


async def connect_named(request: web.Request) -> web.Response:
    """Connect (or reconnect) the row's tenant and integration."""
    form = await _conn_checked(request)
    if isinstance(form, web.Response):
        return form
    return await _start_connect(request, request.match_info["tenant"], request.match_info["integration"])


def _callback_refused(request: web.Request, message: str) -> web.Response:
    return problem(request, 400, "Not connected", message, code=codes.CONNECTIONS_INVALID_CREDENTIALS)


async def connect_callback(request: web.Request) -> web.Response:
    """The partner's redirect: check the attempt and the browser, exchange the code, write the connection."""
    services = request.app[SERVICES]
    if services.store is None:
        return problem(request, 409, "Connections not configured", conn_view.KEY_NOTE, code=codes.CONNECTIONS_NO_KEY)
    query = request.query_string
    if len(query) > MAX_CALLBACK_QUERY:
        return _callback_refused(request, f"the callback's query is longer than {MAX_CALLBACK_QUERY} characters")
    try:
        states = parse_qs(query, keep_blank_values=True, max_num_fields=20).get("state", [])
    except ValueError:
        return _callback_refused(request, "the callback has too many parameters")
    if len(states) != 1:
        return _callback_refused(request, "the callback must carry exactly one state")
    pending = services.pending.take(states[0])
    if pending is None:
        return _callback_refused(request, "unknown or expired connect attempt (they last 10 minutes and are "
                                          "used once); start again from the admin page")
    binding = request.cookies.get(BINDING_COOKIE, "")
    if not secrets.compare_digest(binding.encode(), pending.binding.encode()):
        return _callback_refused(request, "this browser did not start that connect attempt; start again")
    code, why = oauth_flow.callback_verdict(query, pending.attempt)
    if code is None:
        return _callback_refused(request, f"{why}; start again from the admin page")
    tenant, name = pending.tenant, pending.integration
    spec = services.integration(name)
    try:
        use = oauth_flow.check_use(await asyncio.to_thread(connection_use, spec) if spec else None, name)
        credentials = await asyncio.to_thread(oauth_flow.exchange, use, pending.attempt, code)

        def connected(current: Connection | None) -> Connection:
            if current is None or current.state == "disconnected":
                return changes.create(current, tenant, name, now_ms=_now_ms(), credentials=credentials)
            return changes.update(current, tenant, name, now_ms=_now_ms(), state="active", reason="",
                                  credentials=credentials)

        await asyncio.to_thread(_write_change, services, tenant, name, connected)
    except ConnectionsError as exc:
        return problem(request, 502 if exc.code == codes.CONNECTIONS_UNAVAILABLE else 400, "Not connected",
                       str(exc), code=exc.code)
    log.info("connected %s/%s from the admin page", tenant, name, extra={"integration": name})
    text = f"connected {tenant}/{name}"
    if wants_json(request):
        return json_response({"tenant": tenant, "integration": name, "state": "active"}, 200)
    # A page that moves on by itself, not a 303: after the partner's cross-site redirect the browser
    # would not send the Strict session cookie to "/", but it does on this page's own navigation.
    response = _html(f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
                     f'<meta http-equiv="refresh" content="0;url=/"><title>Connected · event-router admin</title>'
                     f'<link rel="stylesheet" href="/static/admin.css"></head><body><main class="narrow">'
                     f'<p role="status">{html.escape(text)}.</p><p><a href="/">Back to the health page</a></p>'
                     f"</main></body></html>")
    _flash(response, request, "ok", text)
    return response


async def disconnect(request: web.Request) -> web.Response:
    """Disconnect: credentials deleted, tokens revoked at the partner, the tenant's Redis state purged."""
    checked = await _row_action(request)
    if isinstance(checked, web.Response):
        return checked
    form, tenant, spec = checked
    services = request.app[SERVICES]
    reason = (form.get("reason") or "disconnected from the admin page")[:500]
    try:
        held, _ = await asyncio.to_thread(_write_change, services, tenant, spec.name, lambda current: (
            changes.disconnect(current, tenant, spec.name, now_ms=_now_ms(), reason=reason)))
    except ConnectionsError as exc:
        status = 404 if exc.code == codes.CONNECTIONS_NOT_FOUND else 503
        return problem(request, status, "Not disconnected", str(exc), code=exc.code)
    lines = [f"disconnected {tenant}/{spec.name}"]
    credentials = held.credentials if held is not None else None
    if isinstance(credentials, OAuth2AuthorizationCode):
        try:
            use = await asyncio.to_thread(connection_use, spec)
            lines.append(await asyncio.to_thread(oauth_flow.revoke, use, credentials) if use is not None
                         else "tokens not revoked: the spec has no connection section")
        except ConnectionsError as exc:
            lines.append(f"tokens not revoked ({exc}): revoke them at the partner")
    lines.append(await asyncio.to_thread(purge_line, services.controls, services.settings.redis_key_prefix,
                                         tenant, services.catalog.integrations, spec.name))
    log.info("disconnected %s/%s from the admin page", tenant, spec.name, extra={"integration": spec.name})
    text = "; ".join(lines)
    return _done(request, 200, {"tenant": tenant, "integration": spec.name, "state": "disconnected",
                                "steps": lines}, ("ok", text))


async def resume_connection(request: web.Request) -> web.Response:
    """A paused or needs_reconnect connection made active again (credentials unchanged)."""
    checked = await _row_action(request)
    if isinstance(checked, web.Response):
        return checked
    _form, tenant, spec = checked
    services = request.app[SERVICES]

    def resumed(current: Connection | None) -> Connection:
        if current is not None and current.state not in conn_view.RESUMABLE:
            raise ConnectionsError(f"connection {tenant}/{spec.name} is {current.state}: only a paused or "
                                   "needs_reconnect connection is resumed", code=codes.CONNECTIONS_INVALID_STATE)
        return changes.update(current, tenant, spec.name, now_ms=_now_ms(), state="active", reason="")

    try:
        await asyncio.to_thread(_write_change, services, tenant, spec.name, resumed)
    except ConnectionsError as exc:
        status = {codes.CONNECTIONS_NOT_FOUND: 404, codes.CONNECTIONS_INVALID_STATE: 409}.get(exc.code, 503)
        return problem(request, status, "Not resumed", str(exc), code=exc.code)
    text = f"resumed {tenant}/{spec.name}"
    return _done(request, 200, {"tenant": tenant, "integration": spec.name, "state": "active"}, ("ok", text))


# ---- login, health, metrics ------------------------------------------------------------------


def _csrf_ok(request: web.Request, submitted: object) -> bool:
    services = request.app[SERVICES]
    return auth.csrf_matches(request, services.token, submitted if isinstance(submitted, str) else None,
                             services.options.clock())


def _csrf_refused(request: web.Request) -> web.Response:
    return problem(request, 403, "Form expired", "This form is out of date; reload the page and try again.",
                   code=codes.ADMIN_CSRF_INVALID)


async def login(request: web.Request) -> web.Response:
    """``GET /login?token=`` or the posted form: set the session cookie and go to the page (throttled)."""
    services = request.app[SERVICES]
    given = request.query.get("token")
    if request.method == "POST":
        value = (await request.post()).get("token")
        given = value if isinstance(value, str) else None
    if given is None:
        return _html(render_login())
    verdict = await _check_token(request, given)
    if verdict.retry_after_s:
        if wants_json(request):
            return _throttled(request, verdict.retry_after_s)
        response = _html(render_login(f"Too many wrong tokens; try again in {verdict.retry_after_s} s "
                                      "[admin.login_throttled]"), 429)
        response.headers["Retry-After"] = str(verdict.retry_after_s)
        return response
    if not verdict.accepted:
        return _html(render_login("That is not the admin token."), 401)
    response = _redirect("/")
    auth.start_session(response, request, services.token, services.options.clock())
    return response


async def logout(request: web.Request) -> web.Response:
    """End the browser's session (the form's CSRF token is required)."""
    form = await request.post()
    if not _csrf_ok(request, form.get(auth.CSRF_FIELD)):
        return _csrf_refused(request)
    response = _redirect("/login")
    auth.end_session(response)
    return response


async def metrics_handler(request: web.Request) -> web.Response:
    """Prometheus exposition, with the lag and DLQ gauges refreshed from Kafka (cached like the page)."""
    await request.app[SERVICES].probe.current()
    return await metrics_response()


async def stylesheet(request: web.Request) -> web.Response:
    return web.Response(text=STYLESHEET, content_type="text/css", charset="utf-8")
