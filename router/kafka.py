"""Kafka client configuration and topic administration shared by every process kind."""

from __future__ import annotations

import time
from collections.abc import Iterable

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from router.errors import ConfigError
from router.settings import Settings

# Tansu reports only the configs given at creation (DESIGN §7): always pass them explicitly.
DATA_TOPIC_CONFIG = {"retention.ms": str(7 * 24 * 3600 * 1000), "cleanup.policy": "delete"}
DLQ_TOPIC_CONFIG = {"retention.ms": str(30 * 24 * 3600 * 1000), "cleanup.policy": "delete"}
COMPACTED_TOPIC_CONFIG = {"retention.ms": "-1", "cleanup.policy": "compact"}


def producer_config(settings: Settings, **overrides: str | int | bool) -> dict[str, str | int | float | bool]:
    """Idempotent, acks=all producer: a delivery report means the broker has the record."""
    conf: dict[str, str | int | float | bool] = {
        **settings.kafka_common(),
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "lz4",
        "message.max.bytes": 2_000_000,
    }
    conf.update(overrides)
    return conf


def consumer_config(
    settings: Settings, group: str, **overrides: str | int | bool
) -> dict[str, str | int | float | bool]:
    """Manual-commit consumer; offsets are committed by the loop that owns the batch."""
    conf: dict[str, str | int | float | bool] = {
        **settings.kafka_common(),
        "group.id": group,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": settings.session_timeout_ms,
        "heartbeat.interval.ms": max(500, settings.session_timeout_ms // 6),
        "partition.assignment.strategy": "cooperative-sticky",
        "fetch.message.max.bytes": 2_000_000,
    }
    conf.update(overrides)
    return conf


def member_config(settings: Settings, group: str, **overrides: str | int | bool
                  ) -> dict[str, str | int | float | bool]:
    """``consumer_config`` for a worker that joins ``group``: with static membership when
    ``ROUTER_KAFKA_GROUP_INSTANCE_ID`` names this replica's slot (docs/embedded-broker.md)."""
    conf = consumer_config(settings, group, **overrides)
    if settings.group_instance_id:
        conf["group.instance.id"] = settings.group_instance_id
    return conf


def admin_client(settings: Settings) -> AdminClient:
    """An AdminClient for the configured cluster."""
    return AdminClient(dict(settings.kafka_common()))


def dlq_topic(topic: str) -> str:
    """The dead-letter topic beside ``topic`` (DESIGN §2)."""
    return f"{topic}.dlq"


def ensure_topics(
    admin: AdminClient,
    topics: Iterable[str],
    *,
    partitions: int,
    replication_factor: int = 1,
    config: dict[str, str] | None = None,
    timeout: float = 30.0,
    min_insync_replicas: int | None = None,
) -> list[str]:
    """Create the ``topics`` that do not exist yet; return the names created.

    Topics ending in ``.dlq`` get the DLQ retention, others ``config`` or the data default; every
    one gets ``min_insync_replicas`` when given (``Settings.topic_min_insync``), so an ``acks=all``
    write is only acknowledged once that many replicas hold it.
    """
    wanted = sorted(set(topics))
    if not wanted:
        return []
    existing = set(admin.list_topics(timeout=timeout).topics)
    new = [
        NewTopic(
            name,
            num_partitions=partitions,
            replication_factor=replication_factor,
            config={**(DLQ_TOPIC_CONFIG if name.endswith(".dlq") else (config or DATA_TOPIC_CONFIG)),
                    **({"min.insync.replicas": str(min_insync_replicas)} if min_insync_replicas else {})},
        )
        for name in wanted
        if name not in existing
    ]
    if not new:
        return []
    created: list[str] = []
    for name, future in admin.create_topics(new, request_timeout=timeout).items():
        try:
            future.result(timeout)
            created.append(name)
        except KafkaException as exc:
            err = exc.args[0]
            if isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            raise ConfigError(f"could not create topic {name!r}: {err}") from None
    return created


def wait_for_broker(settings: Settings, deadline_s: float = 30.0) -> None:
    """Block until the broker answers a metadata request, or raise ConfigError."""
    admin = admin_client(settings)
    end = time.monotonic() + deadline_s
    last: Exception | None = None
    while time.monotonic() < end:
        try:
            admin.list_topics(timeout=2)
            return
        except KafkaException as exc:
            last = exc
    raise ConfigError(
        f"no Kafka broker answered at {settings.kafka_bootstrap_servers} within {deadline_s:.0f}s ({last}); "
        "check KAFKA_BOOTSTRAP_SERVERS"
    )
