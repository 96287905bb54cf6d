"""`router dev`: the whole pipeline on one machine, on embedded services where none are configured.

Order of start-up (each step fails with one clear line and stops what was started):
load specs → broker → Redis → schema registry → topics → schemas → pipeline processes → READY.
Every child is started with a parent-death signal, so even a SIGKILLed `router dev` leaves
no process behind; on SIGTERM/SIGINT children stop in reverse order.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shlex
import signal
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka.schema_registry import SchemaRegistryClient

from router import ready as ready_line
from router.errors import ConfigError
from router.kafka import admin_client, ensure_topics, wait_for_broker
from router.procs import free_port, port_is_free
from router.schemas import register_all
from router.settings import Settings
from router.spec.args import add_spec_dirs
from router.spec.load import Catalog, load_catalog
from tools.dev.embedded.broker import start_broker
from tools.dev.embedded.procs import ChildProcess
from tools.dev.embedded.redis import DEFAULT_URL, redis_answers, start_redis, start_redis_cluster

DEV_SESSION_TIMEOUT_MS = 6000  # Tansu forms groups in ~3 s with this, ~23 s with the default (DESIGN §7)


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("dev", help="run the whole pipeline on embedded Kafka, Redis and schema registry")
    add_spec_dirs(p)
    p.add_argument("--sources", type=Path, default=None, metavar="DIR",
                   help="webhook source specs for the gateway (default: ROUTER_GATEWAY_SOURCES or sources/)")
    p.add_argument("--port-base", type=int, default=None, metavar="N",
                   help="use ports N (Kafka), N+1 (registry), N+2 (Redis, if started), N+3 (admin), N+4 (gateway), "
                        "N+5 (partner simulator); default: free ports")
    p.add_argument("--log-dir", type=Path, default=Path(".router/logs"), help="child process logs")
    p.add_argument("--redis-cluster", action="store_true",
                   help="when REDIS_URL is unset, start a local 3-master Redis Cluster (redis-server and redis-cli "
                        "on PATH) instead of one Redis, to try cluster mode (docs/redis.md)")
    p.set_defaults(handler=run)


@dataclass
class DevStack:
    """What `router dev` started and the addresses of everything, for the READY line."""

    settings: Settings
    children: list[ChildProcess] = field(default_factory=list)
    addresses: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)  # extra environment for pipeline children
    logs: dict[str, Path] = field(default_factory=dict)  # child name -> its log file

    def stop(self) -> None:
        for child in reversed(self.children):
            child.stop()
        self.children.clear()


PORT_OFFSETS = (0, 1, 2, 3, 4, 5)  # Kafka, registry, Redis, admin, gateway, partner simulator
ADMIN_OFFSET, GATEWAY_OFFSET, PARTNER_OFFSET = 3, 4, 5
DEV_ENV_FILE = "dev.env"  # in the log folder: what CLI commands need to reach this stack


def _port(base: int | None, offset: int) -> int | None:
    return None if base is None else base + offset


def start_child_service(stack: DevStack, name: str, argv: list[str], ready_key: str, log_dir: Path,
                        deadline_s: float = 60.0) -> str:
    """Start a `router ...` child, wait for its ``READY key=url`` line; return the url."""
    env = {**child_env(stack.settings), **stack.env}
    log = log_dir / f"{name}.log"
    log.unlink(missing_ok=True)  # a READY line from an earlier run must not count
    child = ChildProcess(name, [sys.executable, "-m", "router", *argv], log=log, env=env)
    stack.children.append(child)
    stack.logs[name] = log
    child.wait_until(lambda: ready_key in ready_line.read_pairs(log), deadline_s, "printing READY")
    return ready_line.read_pairs(log)[ready_key]


def child_env(settings: Settings) -> dict[str, str]:
    """The environment a pipeline child gets: the parent's, plus the services `router dev` chose."""
    env = dict(os.environ)
    for name, value in (("KAFKA_BOOTSTRAP_SERVERS", settings.kafka_bootstrap_servers),
                        ("REDIS_URL", settings.redis_url), ("SCHEMA_REGISTRY_URL", settings.schema_registry_url)):
        if value:
            env[name] = value
    env["ROUTER_KAFKA_SESSION_TIMEOUT_MS"] = str(settings.session_timeout_ms)
    env["ROUTER_REDIS_KEY_PREFIX"] = settings.redis_key_prefix
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def start_stack(settings: Settings, catalog: Catalog, port_base: int | None, log_dir: Path,
                catalog_dirs: tuple[Path, Path] | None = None, redis_cluster: bool = False,
                sources_dir: Path = Path("sources")) -> DevStack:
    """Start (or reuse) every service and pipeline process; on any failure stop what was started."""
    log_dir.mkdir(parents=True, exist_ok=True)
    for offset in PORT_OFFSETS:
        port = _port(port_base, offset)
        if port is not None and not port_is_free(port):
            raise ConfigError(f"port {port} (--port-base {port_base} + {offset}) is in use; pick another --port-base")
    stack = DevStack(settings.replace(session_timeout_ms=DEV_SESSION_TIMEOUT_MS))
    if "ROUTER_REDIS_KEY_PREFIX" not in os.environ:
        # The embedded broker starts empty every run; so must the router's Redis state (dedupe keys,
        # watermarks, delivered keys), or a shared Redis would swallow the new run's events.
        stack.settings = stack.settings.replace(redis_key_prefix=f"router:dev-{secrets.token_hex(4)}:")
    try:
        if not stack.settings.kafka_bootstrap_servers:
            child, bootstrap = start_broker(_port(port_base, 0), log=log_dir / "kafka.log")
            stack.children.append(child)
            stack.settings = stack.settings.replace(kafka_bootstrap_servers=bootstrap)
        wait_for_broker(stack.settings)
        stack.addresses["kafka"] = str(stack.settings.kafka_bootstrap_servers)
        if not stack.settings.redis_url and redis_cluster:
            children, url = start_redis_cluster(3, log_dir=log_dir)
            stack.children.extend(children)
            stack.settings = stack.settings.replace(redis_url=url)
        elif not stack.settings.redis_url:
            if redis_answers(DEFAULT_URL):
                stack.settings = stack.settings.replace(redis_url=DEFAULT_URL)
            else:
                child, url = start_redis(_port(port_base, 2), log=log_dir / "redis.log")
                stack.children.append(child)
                stack.settings = stack.settings.replace(redis_url=url)
        elif not redis_answers(stack.settings.redis_url):
            raise ConfigError(f"no Redis answers at REDIS_URL={stack.settings.redis_url}")
        stack.addresses["redis"] = str(stack.settings.redis_url)
        if not stack.settings.schema_registry_url:
            port = _port(port_base, 1) or free_port()
            url = start_child_service(stack, "registry", ["registry", "serve", "--port", str(port)], "registry",
                                      log_dir)
            stack.settings = stack.settings.replace(schema_registry_url=url)
        stack.addresses["registry"] = str(stack.settings.schema_registry_url)
        ensure_topics(admin_client(stack.settings), catalog.all_topics(),
                      partitions=stack.settings.topic_partitions,
                      replication_factor=stack.settings.replication_factor,
                      min_insync_replicas=stack.settings.topic_min_insync())
        with SchemaRegistryClient(stack.settings.registry_conf()) as registry:
            register_all(registry, catalog)
        _demo_connections(stack)
        partner_port = _port(port_base, PARTNER_OFFSET) or 0
        partner = start_child_service(stack, "partner", ["sim", "partner", "--port", str(partner_port)], "partner",
                                      log_dir)
        stack.addresses["partner"] = partner
        stack.env.update(demo_env(partner))
        for name, argv, key in pipeline_processes(catalog, catalog_dirs, sources_dir, port_base):
            stack.addresses[key] = start_child_service(stack, name, argv, key, log_dir)
        token = ready_line.read_pairs(log_dir / "admin.log").get("admin_token")
        if token:  # a development token, printed so the person running `router dev` can log in
            stack.addresses["admin_token"] = token
    except BaseException:
        stack.stop()
        raise
    return stack


def _demo_connections(stack: DevStack) -> None:
    """Connect two demo tenants (acme, globex) with different signing secrets; the gateway then verifies
    each tenant with its own (docs/connections.md). A development key is made when none is configured."""
    from router.connections.demo import create_demo_connections, demo_secrets
    from router.connections.keyring import KEY_ENV, KeyRing, generate_key
    from router.connections.store import DEFAULT_TOPIC, TOPIC_ENV
    from router.devsecrets import DEV_SECRETS

    ring = KeyRing.from_env()
    if ring is None:  # a fresh key per run: the embedded broker starts empty every run too
        stack.env[KEY_ENV] = generate_key()
        ring = KeyRing.parse(stack.env[KEY_ENV], KEY_ENV)
    create_demo_connections(stack.settings, ring, demo_secrets(DEV_SECRETS), os.environ.get(TOPIC_ENV) or DEFAULT_TOPIC)
    stack.addresses["tenants"] = "acme,globex"


def pipeline_processes(catalog: Catalog, catalog_dirs: tuple[Path, Path] | None = None,
                       sources_dir: Path = Path("sources"), port_base: int | None = None
                       ) -> list[tuple[str, list[str], str]]:
    """(name, argv, READY key) of each pipeline process `router dev` runs; grows as kinds land."""
    dirs = ["--integrations", str(catalog_dirs[0]), "--schemas", str(catalog_dirs[1])] if catalog_dirs else []
    admin_port, gateway_port = _port(port_base, ADMIN_OFFSET) or 0, _port(port_base, GATEWAY_OFFSET) or 0
    return [
        ("route", ["route", *dirs], "route"),
        ("deliver", ["deliver", *dirs], "deliver"),
        ("admin", ["admin", "--port", str(admin_port), "--dev-token", *dirs], "admin"),
        ("gateway", ["gateway", "--port", str(gateway_port), "--dev-secrets", "--sources", str(sources_dir)],
         "gateway"),
    ]


def write_dev_env(stack: DevStack, log_dir: Path) -> Path:
    """``<log dir>/dev.env``: the addresses and key prefix of this stack, for CLI commands aimed at it
    (``set -a; . .router/logs/dev.env; set +a; router integrations status``). No secret is written."""
    settings = stack.settings
    pairs = {"KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers, "REDIS_URL": settings.redis_url,
             "SCHEMA_REGISTRY_URL": settings.schema_registry_url, "ROUTER_REDIS_KEY_PREFIX": settings.redis_key_prefix}
    path = log_dir / DEV_ENV_FILE
    path.write_text("".join(f"{k}={shlex.quote(v)}\n" for k, v in pairs.items() if v))
    return path


# The shipped example specs name their partner endpoints and credentials by env reference; under
# `router dev` (and only when unset) they point at the partner simulator with development values.
DEMO_CREDENTIALS = {
    "PAGERDUTY_TOKEN": "dev-only-pagerduty-token",
    "CRM_CLIENT_ID": "sim-client",
    "CRM_CLIENT_SECRET": "sim-secret",
    "BRAZE_API_KEY": "dev-only-braze-key",
    "JIRA_USER": "dev-bot",
    "JIRA_API_TOKEN": "dev-only-jira-token",
}


def demo_env(partner_url: str) -> dict[str, str]:
    """Endpoint and credential variables of the example integrations, for the variables not set."""
    from router.devsecrets import DEV_SECRETS  # published development signing secrets

    values = {
        **DEV_SECRETS,
        "PAGERDUTY_EVENTS_URL": f"{partner_url}/v1/pagerduty",
        "CRM_ACCOUNTS_URL": f"{partner_url}/v1/crm",
        "CRM_TOKEN_URL": f"{partner_url}/oauth/token",
        "BRAZE_COHORT_URL": f"{partner_url}/v1/braze",
        "JIRA_ISSUES_URL": f"{partner_url}/v1/jira",
        **DEMO_CREDENTIALS,
    }
    return {k: v for k, v in values.items() if k not in os.environ}


@contextlib.contextmanager
def _stop_signals() -> Iterator[threading.Event]:
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run(args: argparse.Namespace) -> int:
    """Entry point of `router dev`."""
    settings = Settings.from_env()
    catalog = load_catalog(args.integrations, args.schemas)  # a bad spec stops us before anything starts
    sources_dir = args.sources or Path(os.environ.get("ROUTER_GATEWAY_SOURCES") or "sources")
    _check_sources(sources_dir)  # and so does a bad source spec
    with _stop_signals() as stop:
        stack = start_stack(settings, catalog, args.port_base, args.log_dir, (args.integrations, args.schemas),
                            redis_cluster=args.redis_cluster, sources_dir=sources_dir)
        env_file = write_dev_env(stack, args.log_dir)
        try:
            ready_line.announce(**stack.addresses, prefix=stack.settings.redis_key_prefix, env=str(env_file))
            while not stop.wait(0.5):
                dead = [c for c in stack.children if not c.alive()]
                if dead:
                    log = stack.logs.get(dead[0].name)
                    raise ConfigError(f"{dead[0].name} exited with code {dead[0].proc.returncode}"
                                      f"{_last_words(log)}; its log: {log or args.log_dir}")
        finally:
            stack.stop()
            env_file.unlink(missing_ok=True)
    print("stopped", flush=True)
    return 0


def _check_sources(sources_dir: Path) -> None:
    """Load the gateway's source specs as the gateway will (secrets from router dev's defaults)."""
    from router.devsecrets import DEV_SECRETS
    from router.spec.sources import load_sources

    load_sources(sources_dir, {**DEV_SECRETS, **os.environ})


def _last_words(log: Path | None, limit: int = 300) -> str:
    """``: <the child's last log line>``, the likeliest cause of its exit ('' when there is none)."""
    if log is None or not log.exists():
        return ""
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return f": {lines[-1][:limit]}" if lines else ""


