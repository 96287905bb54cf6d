"""The `router` command: one entry point, a subcommand per process kind and tool.

Each process kind and tool has its own package with a ``cli`` module exposing
``register(subparsers)``; this file (the one module of ``router`` allowed to import them,
tests/unit/test_layers.py) only wires them and turns a ``RouterError`` into a one-line message
and a non-zero exit code, so users never see a stack trace for a problem they can fix.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from importlib import metadata

import redis
from confluent_kafka import KafkaException

from consumers.deliver.cli import register as deliver
from consumers.route.cli import register as route
from producers.cohorts.cli import register as cohort
from producers.webhooks.cli import register as gateway
from router import codes as error_codes
from router.errors import RouterError
from services.admin.cli import register as admin
from services.partner_sim.cli import register as partner_sim
from services.registry.cli import register as registry
from tools.codes.cli import register as codes
from tools.connections.cli import register as connections
from tools.dev.supervisor import register as dev
from tools.dlq.cli import register as dlq
from tools.spec.cli import register as spec

# Each adds its subcommand(s): register(subparsers) -> None. In the order `router --help` lists them.
COMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (  # type: ignore[type-arg]
    dev, spec, registry, route, partner_sim, deliver, gateway, dlq, admin, cohort, codes, connections,
)


def _version() -> str:
    try:
        return metadata.version("event-router")
    except metadata.PackageNotFoundError:  # run from a source tree without an install
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="router", description="Streaming event router for integration platforms.")
    parser.add_argument("--version", action="version", version=f"router {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for register in COMMANDS:
        register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the router CLI; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except RouterError as exc:
        print(f"router: error [{exc.code}]: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except (redis.RedisError, KafkaException) as exc:  # a service a command needs is down: one line, no traceback
        what = "Redis" if isinstance(exc, redis.RedisError) else "Kafka"
        # redis-py and librdkafka name host and port in their messages, never a password.
        print(f"router: error [{error_codes.CLI_UNAVAILABLE}]: {what}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
