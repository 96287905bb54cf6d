"""``router gateway``: serve ``POST /v1/hooks/{tenant}/{source}`` (one process, or N sharing the port).

Once listening it prints exactly one line, ``READY gateway=http://HOST:PORT``, to stdout;
logs go to stderr. SIGTERM/SIGINT stop it cleanly: the listener closes, requests in flight
finish (up to ROUTER_GATEWAY_SHUTDOWN_TIMEOUT), then the producer is flushed.

``--workers N`` (N > 1) starts N child ``router gateway --reuse-port`` processes on the same
port (``SO_REUSEPORT``: the kernel spreads connections over them) and supervises them: one
READY line once all listen, SIGTERM forwarded to each, and if one dies the others are stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from router import ready as ready_line
from router import telemetry
from router.errors import ConfigError
from router.procs import die_with_parent, free_port, port_is_free
from router.serving import add_listen_args, serve_until_signalled
from router.settings import Settings

if TYPE_CHECKING:  # aiohttp is imported when serving: `router` builds every subcommand's parser
    from aiohttp import web

log = logging.getLogger("router.gateway")

READY_DEADLINE_S = 60.0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``gateway`` to the ``router`` command's subparsers."""
    p = subparsers.add_parser("gateway", help="the webhook gateway: partner POSTs -> ingest.<source>")
    add_listen_args(p, default_port=8080)
    p.add_argument("--sources", type=Path, default=None, metavar="DIR",
                   help="folder of source specs (default: ROUTER_GATEWAY_SOURCES or sources/)")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="processes sharing the port with SO_REUSEPORT (default 1)")
    p.add_argument("--reuse-port", action="store_true",
                   help="bind with SO_REUSEPORT so other gateway processes can share the port")
    p.add_argument("--dev-secrets", action="store_true",
                   help="accept the published development signing secrets (router dev only)")
    p.set_defaults(handler=run)


announce_ready = ready_line.announcer("gateway")


def run(args: argparse.Namespace) -> int:
    """Entry point of ``router gateway``."""
    from producers.webhooks.devsecrets import check_dev_secrets
    from producers.webhooks.options import GatewayOptions
    from router.spec.sources import load_sources

    settings = Settings.from_env()
    telemetry.setup("gateway", log_level=settings.log_level)  # JSON logs, metrics, traces (DESIGN §8)
    options = GatewayOptions.from_env()
    sources_dir = args.sources or options.sources_dir
    options = dataclasses.replace(options, sources_dir=sources_dir, dev_secrets=args.dev_secrets)
    if args.workers < 1:
        raise ConfigError("--workers must be at least 1")
    settings.kafka_common()  # fails at once, with the fix, when KAFKA_BOOTSTRAP_SERVERS is unset
    sources = load_sources(sources_dir)  # a bad spec or a missing secret stops us before anything listens
    if not sources:
        raise ConfigError(f"no source specs (*.yaml) in {sources_dir}; nothing to receive")
    for name in check_dev_secrets(sources, allowed=options.dev_secrets):
        log.warning("source %s uses the published DEVELOPMENT secret: never expose this gateway", name)
    if args.workers > 1:
        return supervise(args, sources_dir)
    from producers.webhooks.app import create_app
    from router.connections.keyring import KeyRing
    from router.connections.store import DEFAULT_TOPIC, TOPIC_ENV, ConnectionStore

    ring = KeyRing.from_env()  # with a key: each tenant's own secrets, from its connection (docs/connections.md)
    connections = ConnectionStore(settings, ring, os.environ.get(TOPIC_ENV) or DEFAULT_TOPIC) if ring else None
    if connections is None:
        log.warning("no ROUTER_ENCRYPTION_KEY: requests are verified with the source specs' secrets, shared by "
                    "every tenant; configure connections (docs/connections.md)")
    app = create_app(settings, sources, options, connections)
    asyncio.run(serve(app, host=args.host, port=args.port, reuse_port=args.reuse_port,
                      shutdown_timeout_s=options.shutdown_timeout_s))
    print("stopped gateway", flush=True)
    return 0


async def serve(app: web.Application, *, host: str, port: int, reuse_port: bool = False,
                shutdown_timeout_s: float = 10.0, ready: Callable[[str], None] = announce_ready) -> None:
    """Serve ``app`` until SIGTERM or SIGINT; raise ConfigError if it cannot listen."""
    await serve_until_signalled(app, host=host, port=port, on_ready=ready, shutdown_timeout_s=shutdown_timeout_s,
                                reuse_port=reuse_port, backlog=1024)


def supervise(args: argparse.Namespace, sources_dir: Path, env: Mapping[str, str] | None = None) -> int:
    """Run ``args.workers`` gateway processes on one port (SO_REUSEPORT) until SIGTERM/SIGINT."""
    port = args.port or free_port(args.host)
    if not port_is_free(port, args.host):
        raise ConfigError(f"port {port} on {args.host} is in use; pick another with --port")
    argv = [sys.executable, "-m", "router", "gateway", "--host", args.host, "--port", str(port),
            "--sources", str(sources_dir), "--reuse-port", *(["--dev-secrets"] if args.dev_secrets else [])]
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    children: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(args.workers):
            children.append(subprocess.Popen(argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                             env=dict(env or os.environ), preexec_fn=die_with_parent))  # noqa: PLW1509
        _wait_ready(children, stop)
        if stop.is_set():
            return 0
        announce_ready(ready_line.http_url(args.host, port))
        while not stop.wait(0.5):
            dead = [c for c in children if c.poll() is not None]
            if dead:
                raise ConfigError(f"gateway worker {dead[0].pid} exited with code {dead[0].returncode}")
    finally:
        _stop_all(children)
    print("stopped gateway", flush=True)
    return 0


def _wait_ready(children: list[subprocess.Popen[bytes]], stop: threading.Event) -> None:
    """Read each child's stdout until its READY line; ConfigError if one exits or the deadline passes."""
    waiting = {c.stdout: c for c in children if c.stdout is not None}
    with selectors.DefaultSelector() as selector:
        for stream in waiting:
            selector.register(stream, selectors.EVENT_READ)
        end = time.monotonic() + READY_DEADLINE_S
        while waiting and not stop.is_set():
            if time.monotonic() > end:
                raise ConfigError(f"{len(waiting)} gateway worker(s) not ready within {READY_DEADLINE_S:.0f}s")
            for key, _ in selector.select(timeout=0.2):
                child = waiting[key.fileobj]  # type: ignore[index]
                line = child.stdout.readline() if child.stdout else b""
                if not line:
                    child.wait(10)
                    raise ConfigError(f"gateway worker {child.pid} exited with code {child.returncode} before READY")
                if line.startswith(b"READY "):
                    selector.unregister(key.fileobj)
                    del waiting[key.fileobj]  # type: ignore[arg-type]


def _stop_all(children: list[subprocess.Popen[bytes]], grace_s: float = 30.0) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    end = time.monotonic() + grace_s
    for child in children:
        try:
            child.wait(max(0.1, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(10)
        if child.stdout is not None:
            child.stdout.close()
