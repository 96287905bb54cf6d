"""``router registry serve``: the embedded Schema Registry as a process.

Once it listens it prints exactly one line, ``READY registry=http://HOST:PORT``, to stdout
(flushed), so a parent process can wait for it; logs go to stderr. SIGTERM and SIGINT stop it
cleanly: requests in flight finish, the producer is flushed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable
from typing import Any

from router import ready as ready_line
from router.serving import add_listen_args, serve_until_signalled
from router.settings import Settings


def register(subparsers: Any) -> None:
    """Add ``registry serve`` to the ``router`` command's subparsers."""
    registry = subparsers.add_parser("registry", help="the embedded Confluent-compatible Schema Registry")
    commands = registry.add_subparsers(dest="registry_command", metavar="COMMAND")
    commands.required = True
    serve = commands.add_parser("serve", help="serve the Schema Registry REST API, storing schemas in Kafka")
    add_listen_args(serve, default_port=8081)
    serve.add_argument("--topic", default="_schemas", help="compacted topic holding the schemas (default _schemas)")
    serve.set_defaults(handler=serve_command)


def serve_command(args: argparse.Namespace) -> int:
    """Handler for ``router registry serve``: runs until SIGTERM/SIGINT, returns the exit code."""
    settings = Settings.from_env()
    logging.basicConfig(
        level=settings.log_level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(serve(settings, host=args.host, port=args.port, topic=args.topic))
    return 0


announce_ready = ready_line.announcer("registry")


async def serve(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int = 8081,
    topic: str = "_schemas",
    ready: Callable[[str], None] = announce_ready,
) -> None:
    """Serve the registry until SIGTERM or SIGINT; raise ConfigError if it cannot start."""
    from services.registry.app import create_app

    # The port is checked before the store connects to Kafka, so a busy port fails at once.
    await serve_until_signalled(create_app(settings, topic=topic), host=host, port=port, on_ready=ready,
                                access_log=True)

