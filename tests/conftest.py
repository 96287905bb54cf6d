"""Session services and per-test names. See support/services.py for where services come from."""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Iterator

import psutil
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient

from router.settings import Settings
from support.services import kafka_service, redis_cluster_service, redis_service, unique


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its tier from its folder, so `-m unit` etc. select a tier."""
    for item in items:
        for tier in ("unit", "integration", "e2e", "fault", "fuzz"):
            if f"/tests/{tier}/" in str(item.fspath):
                item.add_marker(getattr(pytest.mark, tier))


# Threads that live as long as the test process by design (started once, on first use).
PROCESS_LIFETIME_THREADS = ("OtelPeriodicExportingMetricReader", "OtelBatchSpanProcessor", "pydevd")
LEFT_BEHIND_GRACE_S = 15.0


def _children() -> set[int]:
    return {p.pid for p in psutil.Process(os.getpid()).children(recursive=True) if p.status() != psutil.STATUS_ZOMBIE}


def _assert_nothing_left(threads: set[threading.Thread], children: set[int] | None, who: str) -> None:
    """Wait up to :data:`LEFT_BEHIND_GRACE_S` for threads and child processes started since the
    snapshot to end by themselves (stopping takes a moment); fail naming what is still there."""

    def left() -> tuple[list[str], set[int]]:
        alive = [t.name for t in threading.enumerate()
                 if t not in threads and t.is_alive() and not t.name.startswith(PROCESS_LIFETIME_THREADS)]
        return alive, (_children() - children) if children is not None else set()

    deadline = time.monotonic() + LEFT_BEHIND_GRACE_S
    while any(left()) and time.monotonic() < deadline:
        time.sleep(0.05)
    alive, procs = left()
    assert not alive and not procs, (f"{who} left behind threads {alive} and child processes {sorted(procs)} "
                                     "(stop them before it ends)")


@pytest.fixture(scope="module", autouse=True)
def nothing_left_behind_by_the_module() -> Iterator[None]:
    """The same check, for threads, for a module's own fixtures (a worker shared by a module's
    examples). Child processes are left to the per-test check: a session service (broker,
    registry) first needed by a later test of the module starts inside the module."""
    threads = set(threading.enumerate())
    yield
    _assert_nothing_left(threads, None, "the module")


@pytest.fixture(autouse=True)
def nothing_left_behind(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that leaves a thread or a child process running after it. Fixtures of a wider
    scope started theirs before this runs, so only the test's own count; a test that uses a
    module-scoped fixture (whose worker may start threads lazily, during the first test) is
    checked with its module instead."""
    shares_module_fixture = any(
        d.scope in ("module", "class", "package") and d.argname != "nothing_left_behind_by_the_module"
        for defs in request.node._fixtureinfo.name2fixturedefs.values() for d in defs)
    threads, children = set(threading.enumerate()), _children()
    yield
    if not shares_module_fixture:
        _assert_nothing_left(threads, children, "the test")


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    with kafka_service() as bootstrap:
        yield bootstrap


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with redis_service() as url:
        yield url


@pytest.fixture(scope="session")
def redis_cluster_url() -> Iterator[str]:
    """A Redis Cluster (3 masters on loopback ports, or ``REDIS_CLUSTER_URL``) for the session."""
    with redis_cluster_service() as url:
        yield url


@pytest.fixture(params=["standalone", "cluster"])
def each_redis(request: pytest.FixtureRequest, redis_url: str, redis_cluster_url: str) -> str:
    """The test runs twice: on the standalone Redis and on the Redis Cluster (docs/redis.md).
    Both are asked for up front: a session service started inside a test would count as its leak."""
    return redis_url if request.param == "standalone" else redis_cluster_url


@pytest.fixture
def settings_each_redis(settings: Settings, each_redis: str) -> Settings:
    """:func:`settings` on each kind of Redis in turn (see :func:`each_redis`)."""
    return dataclasses.replace(settings, redis_url=each_redis)


@pytest.fixture
def settings(kafka_bootstrap: str, redis_url: str) -> Settings:
    """Settings pointing at the session's services, with the fast group join Tansu needs."""
    return Settings(
        kafka_bootstrap_servers=kafka_bootstrap,
        redis_url=redis_url,
        session_timeout_ms=6000,
        topic_partitions=3,
    )


@pytest.fixture
def name() -> str:
    """A unique name for this test's topics, groups and Redis key prefixes."""
    return unique("t")


@pytest.fixture(scope="session")
def registry_url(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `router registry serve` process on the session's broker (its own _schemas topic)."""
    from support.services import start_registry

    with start_registry(kafka_bootstrap, tmp_path_factory.mktemp("registry")) as url:
        yield url


@pytest.fixture
def registry_client(registry_url: str) -> Iterator[SchemaRegistryClient]:
    """A client of the session's registry for this test alone (no schema cache shared), closed after
    it: it holds an HTTP connection pool whose sockets would otherwise be left to the collector."""
    with SchemaRegistryClient({"url": registry_url}) as client:
        yield client
