"""The `router` command: one entry point, a subcommand per process kind and tool.

Each process kind and tool has its own package with a ``cli`` module exposing
``register(subparsers)``; this file (the one module of ``router`` allowed to import them,
tests/unit/test_layers.py) only wires them and turns a ``RouterError`` into a one-line message
and a non-zero exit code, so users never see a stack trace for a problem they can fix.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from importlib import metadata

from router import codes as error_codes
from router.errors import RouterError
from router.settings import LIBRDKAFKA_LOG_LEVEL

# Each module's ``register(subparsers)`` adds the subcommand(s) named with it, in the order
# `router --help` lists them. A module is imported only when its command runs (or for --help):
# a worker does not pay for importing every other kind (start-up CPU, issue 20).
COMMANDS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("dev",), "tools.dev.supervisor"),
    (("spec",), "tools.spec.cli"),
    (("registry",), "services.registry.cli"),
    (("route",), "consumers.route.cli"),
    (("sim",), "services.partner_sim.cli"),
    (("deliver", "integrations"), "consumers.deliver.cli"),
    (("gateway",), "producers.webhooks.cli"),
    (("dlq",), "tools.dlq.cli"),
    (("admin",), "services.admin.cli"),
    (("cohort",), "producers.cohorts.cli"),
    (("codes",), "tools.codes.cli"),
    (("connections",), "tools.connections.cli"),
)


# Commands a person or a script runs and reads (not long-running services): their Kafka client log
# is quiet unless -v, so a failure is the one line `router: error [...]`.
TOOLS = frozenset({"dlq", "connections", "integrations", "codes", "spec", "cohort"})


def _version() -> str:
    try:
        return metadata.version("event-router")
    except metadata.PackageNotFoundError:  # run from a source tree without an install
        return "unknown (not installed)"


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The CLI's parser; with ``command``, only the module that adds it is imported and registered
    (any other name, or None, registers every command)."""
    parser = argparse.ArgumentParser(prog="router", description="Streaming event router for integration platforms.")
    parser.add_argument("--version", action="version", version=f"router {_version()}")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="tool commands: show the Kafka client's own log lines (quiet by default)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    wanted = [module for names, module in COMMANDS if command in names]
    for module in wanted or [module for _names, module in COMMANDS]:
        importlib.import_module(module).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the router CLI; returns the process exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    # The first word that is not an option names the command (the top level takes no option values).
    parser = build_parser(next((a for a in argv if not a.startswith("-")), None))
    args = parser.parse_args(argv)
    if args.command in TOOLS:
        LIBRDKAFKA_LOG_LEVEL["level"] = 6 if args.verbose else 0
    try:
        return int(args.handler(args) or 0)
    except RouterError as exc:
        print(f"router: error [{exc.code}]: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        what = _service_of(exc)
        if what is None:
            raise
        # A service a command needs is down: one line, no traceback. redis-py and librdkafka name
        # host and port in their messages, never a password.
        print(f"router: error [{error_codes.CLI_UNAVAILABLE}]: {what}: {exc}", file=sys.stderr)
        return 2


def _service_of(exc: BaseException) -> str | None:
    """"Redis" or "Kafka" for their clients' errors, else None. Looked up among the modules already
    imported: a command that never imported a client cannot have raised its error (and the CLI
    does not import them for commands that do not need them)."""
    redis_errors = sys.modules.get("redis.exceptions")
    if redis_errors is not None and isinstance(exc, redis_errors.RedisError | redis_errors.RedisClusterException):
        return "Redis"
    kafka = sys.modules.get("confluent_kafka")
    if kafka is not None and isinstance(exc, kafka.KafkaException):
        return "Kafka"
    return None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
