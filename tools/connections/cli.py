"""``router connections ls | show | create | set | rotate-secret | rotate-key | disconnect``.

Every command reads ``_connections`` to its end first (a :class:`ConnectionStore`), decides with
the pure functions of :mod:`router.connections.changes`, and writes one record per change,
waiting for the broker's ack. Secrets come in by reference — ``env:VAR``, ``file:PATH`` or ``-``
(stdin) — never on the command line (shell history, ``ps``), and never go out: ``show`` prints
``••••`` and at most the last four characters. Bad input is one line and exit code 2, with a
stable ``connections.*`` code (router/cli.py prints RouterErrors).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from router import codes
from router.connections import changes
from router.connections.keyring import KeyRing
from router.connections.model import (
    STATES,
    Connection,
    ConnectionsError,
    OAuth2AuthorizationCode,
    check_integration,
    check_state,
    check_tenant,
    mask,
    masked_credentials,
    parse_credentials,
    parse_settings,
    parse_signing_secrets,
)
from router.connections.store import DEFAULT_TOPIC, TOPIC_ENV, ConnectionStore, ConnectionWriter
from router.errors import RouterError
from router.settings import Secret, Settings
from router.spec.args import add_spec_dirs

if TYPE_CHECKING:
    from router.spec.connection_use import ConnectionUse

CATCH_UP_DEADLINE_S = 30.0
MAX_REF_BYTES = 64 * 1024


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``connections`` to the ``router`` command's subparsers."""
    p = subparsers.add_parser("connections", help="tenants' connections: state, settings, credentials, secrets")
    p.add_argument("--topic", default=None, help=f"the connections topic (default: {TOPIC_ENV} or {DEFAULT_TOPIC})")
    sub = p.add_subparsers(dest="connections_command", metavar="COMMAND")
    sub.required = True

    ls = sub.add_parser("ls", help="list connections")
    ls.add_argument("--tenant")
    ls.add_argument("--integration")
    ls.add_argument("--json", action="store_true", help="one JSON document")
    ls.set_defaults(handler=run_ls)

    show = sub.add_parser("show", help="one connection (secrets masked)")
    _target(show)
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=run_show)

    create = sub.add_parser("create", help="connect a tenant to an integration")
    _target(create)
    create.add_argument("--state", default="active", choices=STATES)
    _content(create)
    create.set_defaults(handler=run_create)

    set_ = sub.add_parser("set", help="change a connection's state, settings or credentials")
    _target(set_)
    set_.add_argument("--state", choices=STATES)
    set_.add_argument("--reason", help="why (shown with the state)")
    set_.add_argument("--unset", action="append", default=[], metavar="KEY", help="remove a setting")
    _content(set_)
    set_.set_defaults(handler=run_set)

    rotate = sub.add_parser("rotate-secret", help="add a new signing secret (the previous stays accepted)")
    _target(rotate)
    which = rotate.add_mutually_exclusive_group(required=True)
    which.add_argument("--signing-secret", metavar="REF", help="the new secret: env:VAR, file:PATH or - (stdin)")
    which.add_argument("--finish", action="store_true", help="keep only the newest secret (the partner switched)")
    rotate.add_argument("--keep", type=int, default=changes.DEFAULT_KEEP, metavar="N",
                        help=f"secrets kept, the new one included (default {changes.DEFAULT_KEEP})")
    rotate.set_defaults(handler=run_rotate_secret)

    rotate_key = sub.add_parser("rotate-key", help="re-encrypt every connection under the current key")
    rotate_key.set_defaults(handler=run_rotate_key)

    connect = sub.add_parser("connect", help="connect a tenant through the partner's OAuth consent page "
                                             "(authorization code with PKCE)")
    _target(connect)
    _settings_args(connect)
    connect.add_argument("--port", type=int, default=0, help="loopback port the partner redirects to (default: any)")
    connect.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the consent (default 300)")
    connect.add_argument("--login-hint", help="the partner account to suggest on its consent page")
    connect.add_argument("--no-browser", action="store_true", help="only print the URL to open")
    connect.set_defaults(handler=run_connect)

    disconnect = sub.add_parser("disconnect", help="state disconnected; credentials and secrets deleted")
    _target(disconnect)
    disconnect.add_argument("--reason", default="")
    add_spec_dirs(disconnect)  # which integrations' Redis state to purge
    disconnect.set_defaults(handler=run_disconnect)


def _target(p: argparse.ArgumentParser) -> None:
    p.add_argument("tenant")
    p.add_argument("integration", help="integration or webhook source name")


def _settings_args(p: argparse.ArgumentParser) -> None:
    add_spec_dirs(p)  # an integration that delivers with connections declares what they must hold
    p.add_argument("--settings", metavar="JSON", help="settings as a JSON object (merged into what is there)")
    p.add_argument("--setting", action="append", default=[], metavar="KEY=VALUE", help="one setting (a string)")


def _content(p: argparse.ArgumentParser) -> None:
    _settings_args(p)
    p.add_argument("--credentials", metavar="REF",
                   help='a JSON object with a "type" (api_key, basic, bearer, oauth2_client_credentials, '
                        "oauth2_authorization_code): env:VAR, file:PATH or - (stdin)")
    p.add_argument("--signing-secret", action="append", default=[], metavar="REF",
                   help="a signing secret (sources), repeatable, newest first: env:VAR, file:PATH or - (stdin)")


# -- input ---------------------------------------------------------------------------------------


def read_ref(ref: str, what: str) -> str:
    """The text behind ``env:VAR``, ``file:PATH`` or ``-``; messages name the reference, never the value."""
    kind, _, target = ref.partition(":")
    if ref == "-":
        text = sys.stdin.read(MAX_REF_BYTES + 1)
    elif kind == "env" and target:
        text = os.environ.get(target, "")
        if not text.strip():
            raise ConnectionsError(f"{what}: environment variable {target} is not set (or is empty)",
                                   code=codes.CONNECTIONS_MISSING_SECRET)
    elif kind == "file" and target:
        try:
            with Path(target).open(encoding="utf-8") as f:
                text = f.read(MAX_REF_BYTES + 1)
        except (OSError, UnicodeDecodeError) as exc:
            raise ConnectionsError(f"{what}: cannot read {target}: {getattr(exc, 'strerror', None) or exc}",
                                   code=codes.CONNECTIONS_MISSING_SECRET) from None
    else:
        raise ConnectionsError(f"{what} must be env:VAR, file:PATH or - (stdin), so that it stays out of the "
                               "command line", code=codes.CONNECTIONS_INVALID_REF)
    if len(text) > MAX_REF_BYTES:
        raise ConnectionsError(f"{what} is larger than {MAX_REF_BYTES} bytes", code=codes.CONNECTIONS_INVALID_REF)
    if not text.strip():
        raise ConnectionsError(f"{what} is empty", code=codes.CONNECTIONS_MISSING_SECRET)
    return text.strip()


def _settings_arg(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if args.settings:
        try:
            out.update(parse_settings(orjson.loads(args.settings)))
        except orjson.JSONDecodeError as exc:
            raise ConnectionsError(f"--settings is not JSON: {exc}", code=codes.CONNECTIONS_INVALID_SETTINGS) from None
    for item in args.setting:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConnectionsError(f"--setting {item!r} is not KEY=VALUE", code=codes.CONNECTIONS_INVALID_SETTINGS)
        out[key] = value
    return out


def _credentials_arg(args: argparse.Namespace) -> Any:
    if not args.credentials:
        return None
    text = read_ref(args.credentials, "--credentials")
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise ConnectionsError("--credentials is not a JSON object",
                               code=codes.CONNECTIONS_INVALID_CREDENTIALS) from None
    return parse_credentials(doc)


def _secrets_arg(refs: list[str]) -> tuple[Secret, ...]:
    return parse_signing_secrets([read_ref(ref, "--signing-secret") for ref in refs])


# -- the session: caught-up store, writer ------------------------------------------------------------


@contextlib.contextmanager
def session(args: argparse.Namespace, *, write: bool) -> Iterator[tuple[ConnectionStore, ConnectionWriter | None]]:
    """A store read to its end (and a writer when ``write``), closed on exit."""
    ring = KeyRing.required()
    settings = Settings.from_env()
    settings.kafka_common()  # ConfigError with the fix when KAFKA_BOOTSTRAP_SERVERS is unset
    topic = args.topic or os.environ.get(TOPIC_ENV) or DEFAULT_TOPIC
    store = ConnectionStore(settings, ring, topic)
    store.start()
    writer: ConnectionWriter | None = None
    try:
        if not store.wait_caught_up(CATCH_UP_DEADLINE_S):
            raise ConnectionsError(f"could not read {topic} to its end within {CATCH_UP_DEADLINE_S:.0f}s",
                                   code=codes.CONNECTIONS_UNAVAILABLE)
        writer = ConnectionWriter(settings, ring, topic) if write else None
        yield store, writer
    finally:
        if writer is not None:
            writer.close()
        store.stop()


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _target_of(args: argparse.Namespace) -> tuple[str, str]:
    return check_tenant(args.tenant), check_integration(args.integration)


def _unreadable(store: ConnectionStore, tenant: str, integration: str) -> None:
    problem = store.unreadable.get((tenant, integration))
    if problem is not None:
        raise ConnectionsError(f"connection {tenant}/{integration} cannot be read here: {problem.message}",
                               code=problem.code)


# -- output ------------------------------------------------------------------------------------------


def public_view(connection: Connection) -> dict[str, Any]:
    """A connection as it may be shown: every secret masked."""
    return {
        "tenant": connection.tenant,
        "integration": connection.integration,
        "state": connection.state,
        "state_reason": connection.state_reason,
        "settings": dict(connection.settings),
        "credentials": masked_credentials(connection.credentials) if connection.credentials else None,
        "signing_secrets": [mask(s) for s in connection.signing_secrets],
        "key_id": connection.key_id,
        "created_at_ms": connection.created_at_ms,
        "updated_at_ms": connection.updated_at_ms,
    }


def _print_json(doc: object) -> None:
    sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")


def _when(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000)) if ms else "-"


# -- commands ----------------------------------------------------------------------------------------


def _wanted(args: argparse.Namespace, tenant: str, integration: str) -> bool:
    return args.tenant in (None, tenant) and args.integration in (None, integration)


def run_ls(args: argparse.Namespace) -> int:
    """``router connections ls``."""
    with session(args, write=False) as (store, _):
        rows = [public_view(c) for c in store.all() if _wanted(args, c.tenant, c.integration)]
        unreadable = [{"tenant": t, "integration": i, "code": u.code, "message": u.message}
                      for (t, i), u in sorted(store.unreadable.items()) if _wanted(args, t, i)]
    if args.json:
        _print_json({"connections": rows, "unreadable": unreadable})
        return 0
    print(f"{'TENANT':<20} {'INTEGRATION':<34} {'STATE':<16} {'CREDENTIALS':<26} {'SECRETS':>7}  UPDATED")
    for row in rows:
        credentials = row["credentials"]["type"] if row["credentials"] else "-"
        print(f"{row['tenant']:<20} {row['integration']:<34} {row['state']:<16} {credentials:<26} "
              f"{len(row['signing_secrets']):>7}  {_when(row['updated_at_ms'])}")
    for row in unreadable:
        print(f"{row['tenant']:<20} {row['integration']:<34} {'unreadable':<16} {row['code']}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    """``router connections show TENANT INTEGRATION``."""
    tenant, integration = _target_of(args)
    with session(args, write=False) as (store, _):
        _unreadable(store, tenant, integration)
        found = store.get(tenant, integration)
    if found is None:
        raise ConnectionsError(f"no connection {tenant}/{integration}", code=codes.CONNECTIONS_NOT_FOUND)
    view = public_view(found)
    if args.json:
        _print_json(view)
        return 0
    credentials = view["credentials"]
    print(f"{found.key}\n  state:           {found.state}" + (f" ({found.state_reason})" if found.state_reason else ""))
    print(f"  settings:        {orjson.dumps(view['settings']).decode()}")
    print("  credentials:     " + (" ".join(f"{k}={v}" for k, v in credentials.items()) if credentials else "-"))
    print(f"  signing secrets: {', '.join(view['signing_secrets']) or '-'}")
    print(f"  key id:          {found.key_id or '-'}")
    print(f"  created:         {_when(found.created_at_ms)}\n  updated:         {_when(found.updated_at_ms)}")
    return 0


Change = Callable[[Connection | None, str, str], Connection]


def _write(args: argparse.Namespace, change: Change, verb: str) -> int:
    tenant, integration = _target_of(args)
    with session(args, write=True) as (store, writer):
        assert writer is not None
        _unreadable(store, tenant, integration)
        connection = change(store.get(tenant, integration), tenant, integration)
        if hasattr(args, "integrations"):
            check_against_spec(args.integrations, args.schemas, connection)
        writer.put(connection)
    print(f"{verb} {connection.key} ({connection.state})")
    return 0


def check_against_spec(integrations: Path, schemas: Path, connection: Connection) -> None:
    """When the integration's spec delivers with connections (``destination.http.connection``),
    the credential type and settings it declares; ConnectionsError naming the field, never a value.
    A folder that is not there (a gateway-only deployment) or does not load is not a reason to refuse."""
    if not integrations.is_dir():
        return
    from router.spec.connection_use import parse_use  # the spec machinery only when there are specs
    from router.spec.load import load_catalog

    try:
        catalog = load_catalog(integrations, schemas)
    except RouterError as exc:
        print(f"warning: specs not loaded, so not checked against them: {str(exc).splitlines()[0]}", file=sys.stderr)
        return
    spec = next((i for i in catalog.integrations if i.name == connection.integration), None)
    section = (spec.destination.http or {}).get("connection") if spec is not None else None
    if section is None or spec is None:
        return
    use = parse_use(section)
    if connection.credentials is not None and connection.credentials.type not in use.credentials:
        raise ConnectionsError(f"{spec.name} takes credentials of type {', '.join(use.credentials)}; got "
                               f"{connection.credentials.type}", code=codes.CONNECTIONS_INVALID_CREDENTIALS)
    problem = use.settings_problem(connection.settings)
    if problem is not None:
        raise ConnectionsError(f"settings do not fit {spec.name}'s schema ({spec.file.name}): {problem}",
                               code=codes.CONNECTIONS_INVALID_SETTINGS)


def run_create(args: argparse.Namespace) -> int:
    """``router connections create TENANT INTEGRATION``."""
    settings, credentials, secrets = _settings_arg(args), _credentials_arg(args), _secrets_arg(args.signing_secret)
    return _write(args, lambda current, t, i: changes.create(
        current, t, i, now_ms=_now_ms(), state=check_state(args.state), settings=settings, credentials=credentials,
        signing_secrets=secrets), "created")


def run_set(args: argparse.Namespace) -> int:
    """``router connections set TENANT INTEGRATION``."""
    settings, credentials = _settings_arg(args), _credentials_arg(args)
    secrets = _secrets_arg(args.signing_secret) if args.signing_secret else None
    return _write(args, lambda current, t, i: changes.update(
        current, t, i, now_ms=_now_ms(), state=check_state(args.state) if args.state else None, reason=args.reason,
        settings=settings, unset=tuple(args.unset), credentials=credentials, signing_secrets=secrets), "updated")


def run_rotate_secret(args: argparse.Namespace) -> int:
    """``router connections rotate-secret TENANT INTEGRATION``."""
    if args.finish:
        return _write(args, lambda current, t, i: changes.finish_rotation(current, t, i, now_ms=_now_ms()),
                      "finished rotation of")
    [new] = _secrets_arg([args.signing_secret])
    return _write(args, lambda current, t, i: changes.rotate_secret(current, t, i, new, now_ms=_now_ms(),
                                                                     keep=args.keep), "rotated the signing secret of")


def run_connect(args: argparse.Namespace) -> int:
    """``router connections connect TENANT INTEGRATION``: the OAuth 2.0 authorization-code flow with
    PKCE through a loopback redirect; the tokens become the connection's credentials."""
    import webbrowser

    from router.connections import oauth_flow

    tenant, integration = _target_of(args)
    use = oauth_flow.check_use(_connection_use(args, integration), integration)
    settings = _settings_arg(args)
    with oauth_flow.Listener(args.port) as listener:
        attempt = oauth_flow.new_attempt(listener.redirect_uri)
        url = oauth_flow.authorize_url(use, attempt, args.login_hint)
        print(f"Open this URL to connect {tenant} to {integration}:\n{url}", flush=True)
        if not args.no_browser:
            webbrowser.open(url)
        code = listener.wait_for_code(attempt, args.timeout)
    credentials = oauth_flow.exchange(use, attempt, code)

    def connected(current: Connection | None, t: str, i: str) -> Connection:
        if current is None or current.state == "disconnected":
            return changes.create(current, t, i, now_ms=_now_ms(), settings=settings, credentials=credentials)
        return changes.update(current, t, i, now_ms=_now_ms(), state="active", reason="", settings=settings,
                              credentials=credentials)

    _write(args, connected, "connected")
    return 0


def run_disconnect(args: argparse.Namespace) -> int:
    """``router connections disconnect TENANT INTEGRATION``: credentials and secrets deleted, then
    the tenant's Redis state for the integration purged (router.connections.purge)."""
    held: list[Connection | None] = []

    def disconnected(current: Connection | None, t: str, i: str) -> Connection:
        held.append(current)
        return changes.disconnect(current, t, i, now_ms=_now_ms(), reason=args.reason)

    _write(args, disconnected, "disconnected")
    credentials = held[0].credentials if held and held[0] is not None else None
    if isinstance(credentials, OAuth2AuthorizationCode):
        print(_revoke(args, args.integration, credentials))
    print(_purge(args, *_target_of(args)))
    return 0


def _revoke(args: argparse.Namespace, integration: str, credentials: OAuth2AuthorizationCode) -> str:
    """Revoke the tokens at the partner when the integration's spec names its revocation endpoint."""
    from router.connections import oauth_flow

    if not args.integrations.is_dir():
        return f"tokens not revoked: no integrations folder {args.integrations} to find the partner's endpoint"
    use = _connection_use(args, integration)
    if use is None:
        return f"tokens not revoked: no loaded integration {integration} delivers with connections"
    return oauth_flow.revoke(use, credentials)


def _connection_use(args: argparse.Namespace, integration: str) -> ConnectionUse | None:
    """The ``connection`` section of ``integration``'s spec, our OAuth client resolved (None: none)."""
    from router.connections.partner import connection_use
    from router.spec.load import load_catalog

    spec = next((i for i in load_catalog(args.integrations, args.schemas).integrations if i.name == integration), None)
    return connection_use(spec) if spec is not None else None


def _purge(args: argparse.Namespace, tenant: str, integration: str) -> str:
    """Purge what Redis holds for (tenant, integration); one line saying what was done."""
    settings = Settings.from_env()
    if not settings.redis_url:
        return "Redis state not purged: REDIS_URL is not set"
    if not args.integrations.is_dir():
        return f"Redis state not purged: no integrations folder {args.integrations} to say what is kept"
    from router import redisconn
    from router.connections.partner import purge_line
    from router.spec.load import load_catalog

    catalog = load_catalog(args.integrations, args.schemas)
    client = redisconn.connect(settings.redis_url, socket_timeout=10)
    try:
        return purge_line(client, settings.redis_key_prefix, tenant, catalog.integrations, integration)
    finally:
        client.close()


def run_rotate_key(args: argparse.Namespace) -> int:
    """``router connections rotate-key``: every connection sealed under another key is written again."""
    with session(args, write=True) as (store, writer):
        assert writer is not None
        current = store.ring.current
        stale = [c for c in store.all() if changes.needs_reencryption(c, current)]
        for connection in stale:
            writer.put(connection)
        unreadable = sorted(store.unreadable.items())
    print(f"re-encrypted {len(stale)} connection(s) under key {current}")
    if unreadable:
        names = ", ".join(f"{t}/{i} [{u.code}]" for (t, i), u in unreadable)
        raise ConnectionsError(f"{len(unreadable)} connection(s) could not be read and were left as they are: {names}; "
                               "add their key to ROUTER_ENCRYPTION_KEY and run rotate-key again",
                               code=codes.CONNECTIONS_UNDECRYPTABLE)
    return 0
