"""Kafka TLS, schema-registry authentication and min.insync.replicas from the environment (issue 22)."""

from __future__ import annotations

import pytest

from router.errors import ConfigError
from router.settings import Settings

BASE = {"KAFKA_BOOTSTRAP_SERVERS": "broker:9093", "SCHEMA_REGISTRY_URL": "https://registry:8081"}


def test_kafka_tls_with_a_client_certificate_reaches_every_librdkafka_client() -> None:
    settings = Settings.from_env({**BASE, "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                                  "KAFKA_SSL_CA_LOCATION": "/etc/router/ca.pem",
                                  "KAFKA_SSL_CERTIFICATE_LOCATION": "/etc/router/client.pem",
                                  "KAFKA_SSL_KEY_LOCATION": "/etc/router/client.key",
                                  "KAFKA_SSL_KEY_PASSWORD": "key-password-1234"})
    conf = settings.kafka_common()
    assert conf["security.protocol"] == "SASL_SSL"
    assert conf["ssl.ca.location"] == "/etc/router/ca.pem"
    assert conf["ssl.certificate.location"] == "/etc/router/client.pem"
    assert conf["ssl.key.location"] == "/etc/router/client.key"
    assert conf["ssl.key.password"] == "key-password-1234"
    assert "key-password-1234" not in repr(settings)  # a Secret: never printed


def test_a_certificate_without_its_key_is_one_clear_error() -> None:
    with pytest.raises(ConfigError, match="KAFKA_SSL_KEY_LOCATION"):
        Settings.from_env({**BASE, "KAFKA_SSL_CERTIFICATE_LOCATION": "/etc/router/client.pem"})


def test_schema_registry_basic_auth_and_ca() -> None:
    settings = Settings.from_env({**BASE, "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO": "router:registry-pass-99",
                                  "SCHEMA_REGISTRY_SSL_CA_LOCATION": "/etc/router/registry-ca.pem"})
    assert settings.registry_conf() == {"url": "https://registry:8081",
                                        "basic.auth.user.info": "router:registry-pass-99",
                                        "ssl.ca.location": "/etc/router/registry-ca.pem"}
    assert "registry-pass-99" not in repr(settings)
    with pytest.raises(ConfigError, match="user:password"):
        Settings.from_env({**BASE, "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO": "no-colon"})


@pytest.mark.parametrize(("env", "expected"), [
    ({}, None),  # one replica: the broker's default
    ({"ROUTER_REPLICATION_FACTOR": "3"}, 2),  # the usual production pair
    ({"ROUTER_REPLICATION_FACTOR": "2"}, None),  # 2 of 2 would stop writes when one broker is down
    ({"ROUTER_REPLICATION_FACTOR": "3", "ROUTER_MIN_INSYNC_REPLICAS": "3"}, 3),
])
def test_min_insync_replicas_of_created_topics(env: dict[str, str], expected: int | None) -> None:
    assert Settings.from_env({**BASE, **env}).topic_min_insync() == expected


@pytest.mark.parametrize("value", ["0", "4", "two"])
def test_an_impossible_min_insync_is_refused(value: str) -> None:
    with pytest.raises(ConfigError, match="ROUTER_MIN_INSYNC_REPLICAS"):
        Settings.from_env({**BASE, "ROUTER_REPLICATION_FACTOR": "3", "ROUTER_MIN_INSYNC_REPLICAS": value})


def test_a_braced_key_prefix_is_refused_on_a_cluster_only() -> None:
    env = {**BASE, "ROUTER_REDIS_KEY_PREFIX": "router{eu}:"}
    assert Settings.from_env({**env, "REDIS_URL": "redis://redis:6379/0"}).redis_key_prefix == "router{eu}:"
    with pytest.raises(ConfigError, match="ROUTER_REDIS_KEY_PREFIX"):
        Settings.from_env({**env, "REDIS_URL": "redis+cluster://redis:7000"})
