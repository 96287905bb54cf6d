"""One frozen settings object, read from the environment.

Ecosystem names are used where they exist (``KAFKA_BOOTSTRAP_SERVERS``, ``REDIS_URL``,
``SCHEMA_REGISTRY_URL``, ``KAFKA_SASL_*``); everything else is ``ROUTER_*``. Secrets are
held in :class:`Secret`, whose ``repr``/``str`` never show the value, so logging a
``Settings`` object is safe.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from router.errors import ConfigError

# librdkafka's syslog level for every client this process makes: 4 (warning) for services; the
# `router` command sets 0 for tool commands (dlq, connections, integrations, ...) unless -v, so a
# broker that is down is one `router: error` line, not a screenful of librdkafka FAIL lines.
LIBRDKAFKA_LOG_LEVEL = {"level": 4}


class Secret:
    """A string that never prints itself; call :meth:`reveal` at the one place that needs it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Return the secret value; use only where it is handed to a client."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number; set it to e.g. {default}") from None


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise ConfigError(f"{name}={raw[:40]!r} is not a positive number of seconds; set it to e.g. {default:g}")
    return value


def _opt(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


@dataclass(frozen=True)
class Settings:
    """Everything a router process is configured with. Build it with :meth:`from_env`."""

    kafka_bootstrap_servers: str | None = None
    redis_url: str | None = None
    schema_registry_url: str | None = None
    kafka_security_protocol: str | None = None
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: Secret | None = None
    kafka_ssl_ca_location: str | None = None  # PEM file of the CA that signed the brokers' certificates
    kafka_ssl_certificate_location: str | None = None  # client certificate (mutual TLS)
    kafka_ssl_key_location: str | None = None  # its private key
    kafka_ssl_key_password: Secret | None = None
    schema_registry_basic_auth: Secret | None = None  # "user:password" (Confluent's basic.auth.user.info)
    schema_registry_ssl_ca_location: str | None = None
    min_insync_replicas: int | None = None  # on created topics; None: 2 when replication >= 3, else the broker's
    integrations_dir: Path = Path("integrations")
    schemas_dir: Path = Path("schemas/avro")
    route_group: str = "router.route"
    redis_key_prefix: str = "router:"
    session_timeout_ms: int = 10_000
    group_instance_id: str | None = None  # static membership (KIP-345): one stable id per replica slot
    topic_partitions: int = 3
    replication_factor: int = 1
    admin_token: Secret | None = None
    log_level: str = "INFO"
    # A worker whose batches have failed (Redis, broker) without a success for this long answers 503
    # on /readyz and /healthz (router/progress.py, docs/deploy.md "Probes").
    failing_after_s: float = 60.0
    extra: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read settings from ``env`` (default ``os.environ``); raise ConfigError on bad values."""
        env = os.environ if env is None else env
        password = _opt(env, "KAFKA_SASL_PASSWORD")
        token = _opt(env, "ROUTER_ADMIN_TOKEN")
        key_password = _opt(env, "KAFKA_SSL_KEY_PASSWORD")
        registry_auth = _opt(env, "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO")
        settings = cls(
            kafka_bootstrap_servers=_opt(env, "KAFKA_BOOTSTRAP_SERVERS"),
            redis_url=_opt(env, "REDIS_URL"),
            schema_registry_url=_opt(env, "SCHEMA_REGISTRY_URL"),
            kafka_security_protocol=_opt(env, "KAFKA_SECURITY_PROTOCOL"),
            kafka_sasl_mechanism=_opt(env, "KAFKA_SASL_MECHANISM"),
            kafka_sasl_username=_opt(env, "KAFKA_SASL_USERNAME"),
            kafka_sasl_password=Secret(password) if password else None,
            kafka_ssl_ca_location=_opt(env, "KAFKA_SSL_CA_LOCATION"),
            kafka_ssl_certificate_location=_opt(env, "KAFKA_SSL_CERTIFICATE_LOCATION"),
            kafka_ssl_key_location=_opt(env, "KAFKA_SSL_KEY_LOCATION"),
            kafka_ssl_key_password=Secret(key_password) if key_password else None,
            schema_registry_basic_auth=Secret(registry_auth) if registry_auth else None,
            schema_registry_ssl_ca_location=_opt(env, "SCHEMA_REGISTRY_SSL_CA_LOCATION"),
            min_insync_replicas=_int(env, "ROUTER_MIN_INSYNC_REPLICAS", 2) if _opt(env, "ROUTER_MIN_INSYNC_REPLICAS")
            else None,
            integrations_dir=Path(env.get("ROUTER_INTEGRATIONS") or "integrations"),
            schemas_dir=Path(env.get("ROUTER_SCHEMAS") or "schemas/avro"),
            route_group=env.get("ROUTER_ROUTE_GROUP") or "router.route",
            redis_key_prefix=env.get("ROUTER_REDIS_KEY_PREFIX") or "router:",
            session_timeout_ms=_int(env, "ROUTER_KAFKA_SESSION_TIMEOUT_MS", 10_000),
            group_instance_id=_opt(env, "ROUTER_KAFKA_GROUP_INSTANCE_ID"),
            topic_partitions=_int(env, "ROUTER_TOPIC_PARTITIONS", 3),
            replication_factor=_int(env, "ROUTER_REPLICATION_FACTOR", 1),
            admin_token=Secret(token) if token else None,
            log_level=(env.get("ROUTER_LOG_LEVEL") or "INFO").upper(),
            failing_after_s=_seconds(env, "ROUTER_FAILING_AFTER_S", 60.0),
        )
        if settings.topic_partitions < 1:
            raise ConfigError("ROUTER_TOPIC_PARTITIONS must be at least 1")
        cluster = (settings.redis_url or "").split("://", 1)[0].lower().endswith("+cluster")
        if cluster and ("{" in settings.redis_key_prefix or "}" in settings.redis_key_prefix):
            raise ConfigError(f"ROUTER_REDIS_KEY_PREFIX={settings.redis_key_prefix!r} holds a brace: on Redis "
                              "Cluster it would decide every key's slot (docs/redis.md); drop the braces")
        isr = settings.min_insync_replicas
        if isr is not None and not 1 <= isr <= settings.replication_factor:
            raise ConfigError(f"ROUTER_MIN_INSYNC_REPLICAS={isr} must be between 1 and ROUTER_REPLICATION_FACTOR "
                              f"({settings.replication_factor})")
        if registry_auth is not None and ":" not in registry_auth:
            raise ConfigError("SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO must be user:password")
        if bool(settings.kafka_ssl_certificate_location) != bool(settings.kafka_ssl_key_location):
            raise ConfigError("KAFKA_SSL_CERTIFICATE_LOCATION and KAFKA_SSL_KEY_LOCATION go together (mutual TLS)")
        return settings

    def topic_min_insync(self) -> int | None:
        """``min.insync.replicas`` for the topics the router creates (None: the broker's default)."""
        if self.min_insync_replicas is not None:
            return self.min_insync_replicas
        return 2 if self.replication_factor >= 3 else None

    def registry_conf(self) -> dict[str, str]:
        """confluent-kafka SchemaRegistryClient settings: URL, basic auth, TLS CA."""
        if not self.schema_registry_url:
            raise ConfigError("SCHEMA_REGISTRY_URL is not set")
        conf = {"url": self.schema_registry_url}
        if self.schema_registry_basic_auth:
            conf["basic.auth.user.info"] = self.schema_registry_basic_auth.reveal()
        if self.schema_registry_ssl_ca_location:
            conf["ssl.ca.location"] = self.schema_registry_ssl_ca_location
        return conf

    def replace(self, **changes: object) -> Settings:
        """A copy with ``changes`` applied (settings stay frozen)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def kafka_common(self) -> dict[str, str | int | float | bool]:
        """librdkafka settings shared by every client (bootstrap and security)."""
        if not self.kafka_bootstrap_servers:
            raise ConfigError("KAFKA_BOOTSTRAP_SERVERS is not set; set it, or use `router dev` for the embedded broker")
        # librdkafka's own log at warning and worse for services: its informational lines (e.g.
        # "Purging 1 unserved events from background queue" at close) are not for operators; tool
        # commands keep it quiet unless -v (LIBRDKAFKA_LOG_LEVEL, set by router.cli).
        conf: dict[str, str | int | float | bool] = {"bootstrap.servers": self.kafka_bootstrap_servers,
                                                     "log_level": LIBRDKAFKA_LOG_LEVEL["level"]}
        if self.kafka_security_protocol:
            conf["security.protocol"] = self.kafka_security_protocol
        if self.kafka_sasl_mechanism:
            conf["sasl.mechanism"] = self.kafka_sasl_mechanism
        if self.kafka_sasl_username:
            conf["sasl.username"] = self.kafka_sasl_username
        if self.kafka_sasl_password:
            conf["sasl.password"] = self.kafka_sasl_password.reveal()
        for key, value in (("ssl.ca.location", self.kafka_ssl_ca_location),
                           ("ssl.certificate.location", self.kafka_ssl_certificate_location),
                           ("ssl.key.location", self.kafka_ssl_key_location)):
            if value:
                conf[key] = value
        if self.kafka_ssl_key_password:
            conf["ssl.key.password"] = self.kafka_ssl_key_password.reveal()
        return conf
