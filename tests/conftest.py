"""Session services and per-test names. See tests/services.py for where services come from."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from router.settings import Settings
from tests.services import kafka_service, redis_service, unique


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its tier from its folder, so `-m unit` etc. select a tier."""
    for item in items:
        for tier in ("unit", "integration", "e2e", "fault", "fuzz"):
            if f"/tests/{tier}/" in str(item.fspath):
                item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    with kafka_service() as bootstrap:
        yield bootstrap


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with redis_service() as url:
        yield url


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
    from tests.services import start_registry

    with start_registry(kafka_bootstrap, tmp_path_factory.mktemp("registry")) as url:
        yield url
