"""``router admin``: serve the integration health page.

Once listening it prints exactly one line to stdout, ``READY admin=http://HOST:PORT`` (with
``--dev-token`` and no ``ROUTER_ADMIN_TOKEN``: ``READY admin=http://HOST:PORT admin_token=<t>``,
a random 32-hex-digit token for this run only); logs go to stderr as JSON. Outside ``--dev-token``
(which `router dev` passes) an admin token shorter than 32 characters is refused: exit 2, one line.
SIGTERM/SIGINT stop it cleanly: requests in flight finish, a replay in progress stops after its
current chunk, clients close.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

from router import ready as ready_line
from router import telemetry
from router.errors import ConfigError
from router.serving import add_listen_args, serve_until_signalled
from router.settings import Secret, Settings

if TYPE_CHECKING:  # aiohttp is imported when serving: `router` builds every subcommand's parser
    from aiohttp import web


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``admin`` to the ``router`` command's subparsers."""
    p = subparsers.add_parser("admin", help="the integration health page (state, errors, DLQ, lag; pause/replay)")
    add_listen_args(p, default_port=8090)
    p.add_argument("--integrations", type=Path, default=None, metavar="DIR",
                   help="folder of integration specs (default: ROUTER_INTEGRATIONS or integrations/)")
    p.add_argument("--schemas", type=Path, default=None, metavar="DIR",
                   help="folder of Avro schemas (default: ROUTER_SCHEMAS or schemas/avro/)")
    p.add_argument("--route-group", default=None, metavar="GROUP",
                   help="route workers' consumer group, for lag (default: ROUTER_ROUTE_GROUP or router.route)")
    p.add_argument("--deliver-group", default="router.deliver", metavar="GROUP",
                   help="delivery workers' consumer group, for lag (default router.deliver)")
    p.add_argument("--dev-token", action="store_true",
                   help="without ROUTER_ADMIN_TOKEN, make up a token for this run and print it (development only)")
    p.set_defaults(handler=run)


def admin_settings(args: argparse.Namespace, settings: Settings) -> tuple[Settings, str | None]:
    """Settings with the command's options applied, and the dev token when one was made up.

    ConfigError when there is no token, or (without ``--dev-token``) one shorter than 32 characters.
    """
    from services.admin.auth import dev_token, require_strong_token

    made_up = None
    if not settings.admin_token:
        if not args.dev_token:
            raise ConfigError("ROUTER_ADMIN_TOKEN is not set; set it to a long random value "
                              "(`python -c 'import secrets; print(secrets.token_hex(16))'`), "
                              "or pass --dev-token on a development machine")
        made_up = dev_token()
        settings = settings.replace(admin_token=Secret(made_up))
    elif not args.dev_token:
        require_strong_token(settings.admin_token)
    changes: dict[str, object] = {}
    if args.integrations is not None:
        changes["integrations_dir"] = args.integrations
    if args.schemas is not None:
        changes["schemas_dir"] = args.schemas
    if args.route_group:
        changes["route_group"] = args.route_group
    return (settings.replace(**changes) if changes else settings), made_up


def run(args: argparse.Namespace) -> int:
    """Entry point of ``router admin``."""
    from router.spec.load import load_catalog
    from services.admin.app import AdminOptions, create_app

    settings, made_up = admin_settings(args, Settings.from_env())
    telemetry.setup("admin", log_level=settings.log_level)
    catalog = load_catalog(settings.integrations_dir, settings.schemas_dir)  # a bad spec stops us here
    app = create_app(settings, catalog=catalog, options=AdminOptions(deliver_group=args.deliver_group,
                                                                       development=args.dev_token))
    extra = {"admin_token": made_up} if made_up else {}
    asyncio.run(serve(app, host=args.host, port=args.port, ready_extra=extra))
    return 0


async def serve(app: web.Application, *, host: str, port: int, ready_extra: dict[str, str] | None = None) -> None:
    """Serve ``app`` until SIGTERM or SIGINT; ConfigError if it cannot listen."""
    await serve_until_signalled(
        app, host=host, port=port,
        on_ready=lambda url: ready_line.announce(admin=url, **(ready_extra or {})))
