"""The gateway's own knobs, read from ``ROUTER_GATEWAY_*`` variables into a frozen dataclass.

Broker, security and topic settings stay in ``router.settings.Settings``; these are the ones
only the gateway has (documented in docs/gateway.md).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from producers.webhooks.limits import DEFAULT_MAX_RECORD_BYTES
from router.errors import ConfigError
from router.spec.durations import parse_duration

MIN_RECORD_BYTES = 4096  # room for the headers and a small body; anything less refuses every webhook


@dataclass(frozen=True)
class GatewayOptions:
    """How the gateway waits, answers and shuts down."""

    sources_dir: Path = Path("sources")
    ack_deadline_s: float = 5.0  # no broker ack within this: 503
    retry_after_s: int = 5  # the Retry-After of a 503
    linger_ms: int = 5  # producer batching delay; adds at most this to the latency
    queue_max_messages: int = 100_000  # local producer queue; full: 503 at once
    ready_timeout_s: float = 1.0  # /readyz's metadata request
    shutdown_timeout_s: float = 10.0  # in-flight requests get this long after SIGTERM
    flush_timeout_s: float = 10.0  # then the producer gets this long to deliver what is queued
    # The largest Kafka record (value, key, headers, framing) produced: the topics' max.message.bytes.
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES
    dev_secrets: bool = False  # accept the published development secrets (router dev only)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> GatewayOptions:
        """Read ``ROUTER_GATEWAY_*``; raise ConfigError naming the variable on a bad value."""
        env = os.environ if env is None else env
        default = cls()

        def seconds(name: str, fallback: float) -> float:
            raw = env.get(name, "").strip()
            if not raw:
                return fallback
            try:
                value = parse_duration(float(raw) if raw.replace(".", "", 1).isdigit() else raw)
            except ValueError as exc:
                raise ConfigError(f"{name}={raw!r}: {exc}") from None
            if value <= 0:
                raise ConfigError(f"{name} must be more than 0")
            return value

        def whole(name: str, fallback: int) -> int:
            raw = env.get(name, "").strip()
            if not raw:
                return fallback
            if not (raw.isascii() and raw.isdigit()):
                raise ConfigError(f"{name}={raw!r} is not a whole number; e.g. {fallback}")
            return int(raw)

        def record_bytes(value: int) -> int:
            if value < MIN_RECORD_BYTES:
                raise ConfigError(f"ROUTER_GATEWAY_MAX_RECORD_BYTES must be at least {MIN_RECORD_BYTES} "
                                  f"(the topics' max.message.bytes; Kafka's default is {DEFAULT_MAX_RECORD_BYTES})")
            return value

        return cls(
            sources_dir=Path(env.get("ROUTER_GATEWAY_SOURCES") or default.sources_dir),
            ack_deadline_s=seconds("ROUTER_GATEWAY_ACK_DEADLINE", default.ack_deadline_s),
            retry_after_s=whole("ROUTER_GATEWAY_RETRY_AFTER", default.retry_after_s),
            linger_ms=whole("ROUTER_GATEWAY_LINGER_MS", default.linger_ms),
            queue_max_messages=max(1, whole("ROUTER_GATEWAY_QUEUE_MAX_MESSAGES", default.queue_max_messages)),
            ready_timeout_s=seconds("ROUTER_GATEWAY_READY_TIMEOUT", default.ready_timeout_s),
            shutdown_timeout_s=seconds("ROUTER_GATEWAY_SHUTDOWN_TIMEOUT", default.shutdown_timeout_s),
            flush_timeout_s=seconds("ROUTER_GATEWAY_FLUSH_TIMEOUT", default.flush_timeout_s),
            max_record_bytes=record_bytes(whole("ROUTER_GATEWAY_MAX_RECORD_BYTES", default.max_record_bytes)),
        )
