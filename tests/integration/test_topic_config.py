"""Topics the router creates carry min.insync.replicas when the settings ask for it (issue 22)."""

from __future__ import annotations

from confluent_kafka.admin import ConfigResource

from router.kafka import admin_client, ensure_topics
from router.settings import Settings


def _config(settings: Settings, topic: str) -> dict[str, str]:
    admin = admin_client(settings)  # held until the answer is in: a dropped client cancels its requests
    [future] = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topic)]).values()
    return {name: entry.value for name, entry in future.result(30).items()}


def test_created_topics_carry_min_insync_replicas(settings: Settings, name: str) -> None:
    settings = settings.replace(min_insync_replicas=1)
    data, dlq = f"{name}.data", f"{name}.data.dlq"
    created = ensure_topics(admin_client(settings), [data, dlq], partitions=1,
                            replication_factor=settings.replication_factor,
                            min_insync_replicas=settings.topic_min_insync())
    assert sorted(created) == sorted([data, dlq])
    for topic in (data, dlq):
        config = _config(settings, topic)
        assert config.get("min.insync.replicas") == "1", f"{topic}: {config}"
        assert config.get("cleanup.policy") == "delete"
