"""``router sim partner``: the partner simulator as a process.

Once it listens it prints exactly one line, ``READY partner=http://HOST:PORT`` (the bound port
when ``--port 0``), to stdout, flushed, so a parent process can wait for it. SIGTERM and
SIGINT stop it cleanly: requests in flight finish first.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from router import ready as ready_line
from router import telemetry
from router.errors import ConfigError
from router.serving import add_listen_args, serve_until_signalled

if TYPE_CHECKING:  # aiohttp is imported only when this command runs, not for every `router` call
    from services.partner_sim.partner import SimConfig


def register(subparsers: Any) -> None:
    """Add ``sim partner`` to the ``router`` command's subparsers."""
    sim = subparsers.add_parser("sim", help="simulators for tests, benchmarks and demos")
    commands = sim.add_subparsers(dest="sim_command", metavar="COMMAND")
    commands.required = True
    partner = commands.add_parser("partner", help="a partner API that delivery workers POST records to")
    add_listen_args(partner, default_port=0)
    partner.add_argument("--rate", type=int, default=None, help="requests per --per seconds and destination")
    partner.add_argument("--per", type=float, default=1.0, help="the rate limit's window in seconds (default 1)")
    partner.add_argument("--require-token", action="store_true", help="require a bearer token from /oauth/token")
    partner.add_argument("--token-ttl", type=float, default=3600.0, help="token lifetime in seconds (default 3600)")
    partner.add_argument("--client-id", default="sim-client", help="OAuth client id (default sim-client)")
    partner.add_argument("--client-secret", default="sim-secret", help="OAuth client secret (default sim-secret)")
    partner.add_argument("--api-key", default=None, help="require this key in Authorization or X-Api-Key")
    partner.add_argument("--account", action="append", default=[], metavar="NAME=CREDENTIAL",
                         help="a partner account and its credential (repeatable); with any, each delivery "
                              "must carry one account's credential, instead of --api-key/--require-token")
    partner.set_defaults(handler=partner_command)


def config_from_args(args: argparse.Namespace) -> SimConfig:
    """The simulator's config from the parsed options; ConfigError for values it cannot use."""
    from services.partner_sim.accounts import parse_account_args
    from services.partner_sim.partner import SimConfig

    if args.rate is not None and args.rate < 1:
        raise ConfigError(f"--rate must be at least 1, not {args.rate}")
    if not args.per > 0:
        raise ConfigError(f"--per must be a positive number of seconds, not {args.per}")
    if not args.token_ttl > 0:
        raise ConfigError(f"--token-ttl must be a positive number of seconds, not {args.token_ttl}")
    accounts = parse_account_args(args.account)
    if isinstance(accounts, str):
        raise ConfigError(accounts)
    return SimConfig(
        host=args.host,
        port=args.port,
        rate=args.rate,
        per=args.per,
        require_token=args.require_token,
        token_ttl=args.token_ttl,
        client_id=args.client_id,
        client_secret=args.client_secret,
        api_key=args.api_key,
        accounts=accounts,
    )


def partner_command(args: argparse.Namespace) -> int:
    """Handler for ``router sim partner``: runs until SIGTERM/SIGINT, returns the exit code."""
    config = config_from_args(args)
    telemetry.setup("partner-sim")
    telemetry.maybe_serve_metrics(lambda: True)  # /metrics and /healthz on ROUTER_METRICS_PORT, like the workers
    asyncio.run(serve(config))
    return 0


announce_ready = ready_line.announcer("partner")


async def serve(config: SimConfig, *, ready: Callable[[str], None] = announce_ready) -> None:
    """Serve the simulator until SIGTERM or SIGINT; ConfigError if it cannot listen."""
    from services.partner_sim.partner import create_app

    # No access log: benchmarks send many thousands of requests; the ledger says what came.
    await serve_until_signalled(create_app(config), host=config.host, port=config.port, on_ready=ready,
                                shutdown_timeout_s=5.0)

