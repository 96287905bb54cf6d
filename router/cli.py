"""The `router` command: one entry point, a subcommand per process kind and tool.

Each subcommand lives in its own module and exposes ``register(subparsers)``; this file only
wires them and turns a ``RouterError`` into a one-line message and a non-zero exit code, so
users never see a stack trace for a problem they can fix.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from importlib import metadata

from router.errors import RouterError

# Modules that add subcommands; each has register(subparsers) -> None.
COMMAND_MODULES = (
    "router.dev",
    "router.spec.cli",
    "router.registry.cli",
    "consumers.route.cli",
    "router.sim.cli",
    "consumers.deliver.cli",
    "producers.webhooks.cli",
    "router.dlq.cli",
    "router.admin.cli",
    "producers.cohorts.cli",
    "router.codedocs",
    "router.connections.cli",
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
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
