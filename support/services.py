"""Where the tests get their broker and Redis: env first, then testcontainers, then embedded.

Never mocks (DESIGN §7). testcontainers is tried only when a Docker engine answers.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from typing import TypeVar

from tools.dev.embedded.broker import start_broker
from tools.dev.embedded.redis import DEFAULT_URL, redis_answers, start_redis, start_redis_cluster

T = TypeVar("T")


class Budget:
    """One test's time, shared by its waits: each wait gets its own deadline or what is left of the
    budget, whichever is shorter, so a slow run fails naming the condition it waited for instead of
    hitting pytest's global timeout (300 s) with a thread dump."""

    def __init__(self, total_s: float = 270.0) -> None:
        self.end = time.monotonic() + total_s

    def s(self, deadline_s: float) -> float:
        """The deadline for the next wait: ``deadline_s``, or less when the budget is running out."""
        return max(1.0, min(deadline_s, self.end - time.monotonic()))


def docker_engine_answers() -> bool:
    """True when a Docker engine (not just the CLI) answers ``/_ping`` on its socket. Asked by hand
    on a socket we close: the Docker SDK leaves its socket open when the engine is not there."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        return True  # a remote engine: testcontainers will say if it does not answer
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2)
            sock.connect(host.removeprefix("unix://"))
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            status_line = sock.recv(64).split(b"\r\n", 1)[0]
            return status_line.startswith(b"HTTP/1.") and b" 200 " in status_line + b" "
    except OSError:
        return False


@contextlib.contextmanager
def kafka_service() -> Iterator[str]:
    """Yield bootstrap servers for the test session."""
    env = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if env:
        yield env
        return
    if docker_engine_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as kafka:
            yield kafka.get_bootstrap_server()
        return
    child, bootstrap = start_broker()
    try:
        yield bootstrap
    finally:
        child.stop()


@contextlib.contextmanager
def redis_service() -> Iterator[str]:
    """Yield a Redis URL for the test session."""
    env = os.environ.get("REDIS_URL")
    if env:
        yield env
        return
    if redis_answers(DEFAULT_URL):
        yield DEFAULT_URL
        return
    if docker_engine_answers():
        from testcontainers.redis import RedisContainer

        with RedisContainer() as container:
            yield f"redis://{container.get_container_host_ip()}:{container.get_exposed_port(6379)}/0"
        return
    child, url = start_redis()
    try:
        yield url
    finally:
        child.stop()


@contextlib.contextmanager
def redis_cluster_service() -> Iterator[str]:
    """Yield a ``redis+cluster://`` URL: ``REDIS_CLUSTER_URL`` when set, else a local 3-master
    cluster on loopback ports started for the session (redis-server and redis-cli)."""
    env = os.environ.get("REDIS_CLUSTER_URL")
    if env:
        yield env
        return
    children, url = start_redis_cluster(3)
    try:
        yield url
    finally:
        for child in children:
            child.stop()


def unique(prefix: str) -> str:
    """A name no other test (or earlier run) uses: topics, groups, key prefixes."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def wait_for(condition: Callable[[], T | None], *, deadline_s: float, what: str, interval_s: float = 0.05) -> T:
    """Poll ``condition`` until it returns something truthy; return it, or fail with ``what`` at the deadline."""
    end = time.monotonic() + deadline_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {deadline_s}s waiting for {what}")
        time.sleep(interval_s)


@contextlib.contextmanager
def start_registry(bootstrap: str, workdir: os.PathLike[str], topic: str | None = None, port: int | None = None
                   ) -> Iterator[str]:
    """Run `router registry serve` as a child process (on ``port``, or a free one); yield its URL
    once it prints READY. Started again on the same topic and port, it serves the same schemas."""
    import sys
    from pathlib import Path

    from router.procs import free_port
    from tools.dev.embedded.procs import ChildProcess

    port = port or free_port()
    log = Path(workdir) / f"registry-{port}-{unique('run')}.log"
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap}
    argv = [sys.executable, "-m", "router", "registry", "serve", "--port", str(port),
            "--topic", topic or unique("_schemas")]
    child = ChildProcess("the schema registry", argv, log=log, env=env)
    try:
        child.wait_for_line("READY", deadline_s=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        child.stop(grace_s=10)
