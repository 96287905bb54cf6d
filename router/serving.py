"""Serving an aiohttp app as a process kind: until SIGTERM/SIGINT, with one clear line on failure.

Shared by the gateway, the admin page, the schema registry and the partner simulator: signal
handlers, a runner whose ``cleanup_ctx`` starts and stops the app's clients, a bind that fails as a
ConfigError naming the port, the READY callback with the bound URL, and an orderly cleanup (stop
listening, finish requests in flight, then the app's own cleanup, e.g. flushing a producer).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING

from router import ready as ready_line
from router.errors import ConfigError
from router.procs import port_is_free

if TYPE_CHECKING:  # aiohttp is imported when a server runs, not for every `router` call
    from aiohttp import web


def add_listen_args(parser: argparse.ArgumentParser, default_port: int) -> None:
    """The ``--host`` and ``--port`` every served process kind takes (loopback unless told)."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=default_port,
                        help=f"port to listen on; 0 picks a free one (default {default_port})")


async def serve_until_signalled(app: web.Application, *, host: str, port: int, on_ready: Callable[[str], None],
                                shutdown_timeout_s: float = 10.0, reuse_port: bool = False,
                                access_log: bool = False, backlog: int = 128) -> None:
    """Serve ``app`` on host:port until SIGTERM or SIGINT; ConfigError if the port cannot be had."""
    from aiohttp import web

    # A port held by something else fails now, before the app connects anywhere. With reuse_port
    # sibling processes share it, so whoever started them checked it once.
    if not reuse_port and not port_is_free(port, host):
        raise ConfigError(f"port {port} on {host} is in use; pick another with --port")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=shutdown_timeout_s,
                           access_log=logging.getLogger("aiohttp.access") if access_log else None)
    try:
        await runner.setup()  # cleanup_ctx: the app's clients start here
        site = web.TCPSite(runner, host, port, reuse_port=reuse_port or None, backlog=backlog)
        try:
            await site.start()
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}; pick another with --port") from None
        on_ready(ready_line.http_url(host, runner.addresses[0][1]))
        await stop.wait()
    finally:
        await runner.cleanup()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
