"""A destination's `http` section compiled once at start-up (DESIGN §3): URL, auth, batch, limits."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from router.errors import ConfigError
from router.spec.connection_use import ConnectionUse, parse_use
from router.spec.durations import parse_duration
from router.spec.model import Integration

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_MAX_AGE_S = 4 * 3600.0
DEFAULT_BACKOFF_BASE_S = 0.5
DEFAULT_BACKOFF_CAP_S = 300.0


def resolve(value: Any, where: str) -> str:
    """``env:NAME`` → the variable, ``file:/path`` → the file's stripped text, else the value itself."""
    text = str(value)
    if text.startswith("env:"):
        name = text[4:]
        resolved = os.environ.get(name)
        if resolved is None:
            raise ConfigError(f"{where}: environment variable {name} is not set")
        return resolved
    if text.startswith("file:"):
        path = Path(text[5:])
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{where}: cannot read {path}: {exc.strerror}") from None
    return text


@dataclass(frozen=True)
class RateLimit:
    requests: int
    per_s: float
    scope: str = "destination"  # or "tenant"

    @property
    def interval_ms(self) -> float:
        return self.per_s * 1000.0 / self.requests

    @property
    def burst(self) -> int:
        return max(1, self.requests // 10)


@dataclass(frozen=True)
class Retry:
    max_age_s: float = DEFAULT_MAX_AGE_S
    backoff: str = "exponential"
    base_s: float = DEFAULT_BACKOFF_BASE_S
    cap_s: float = DEFAULT_BACKOFF_CAP_S


@dataclass(frozen=True)
class HttpTarget:
    """How one integration's records are sent."""

    integration: str
    destination: str
    url: str
    method: str
    headers: dict[str, str]
    max_records: int
    max_bytes: int
    timeout_s: float
    auth: dict[str, str]
    rate_limit: RateLimit | None
    retry: Retry
    batch_key: str = "records"
    id_field: str = "idempotency_key"
    dedupe_ttl_s: float = 86400.0
    on_forbidden: str = "reconnect"  # or "dlq"
    extra: dict[str, Any] = field(default_factory=dict)
    # Each tenant's own connection: its credentials, its settings in ``url`` (docs/connections.md).
    connection: ConnectionUse | None = None


def compile_target(integration: Integration) -> HttpTarget:
    """Resolve references and durations of ``integration.destination.http``; ConfigError names what is wrong."""
    http = integration.destination.http
    where = f"{integration.file}: destination.http"
    if not http or "url" not in http:
        raise ConfigError(f"{where}: no url; the delivery worker needs destination.http.url")
    auth = {k: resolve(v, f"{where}.auth.{k}") if k != "type" else str(v) for k, v in (http.get("auth") or {}).items()}
    rate = http.get("rate_limit")
    retry = http.get("retry") or {}
    batch = http.get("batch") or {}
    body = http.get("body") or {}
    return HttpTarget(
        integration=integration.name,
        destination=integration.destination.name,
        # A per-tenant URL is a template filled at send time (consumers/deliver/tenancy.py).
        url=resolve(http["url"], f"{where}.url") if "connection" not in http else str(http["url"]),
        method=str(http.get("method", "POST")),
        headers={k: resolve(v, f"{where}.headers.{k}") for k, v in (http.get("headers") or {}).items()},
        max_records=int(batch.get("max_records", 1)),
        max_bytes=int(batch.get("max_bytes", 1024 * 1024)),
        timeout_s=parse_duration(http.get("timeout", DEFAULT_TIMEOUT_S)),
        auth=auth or {"type": "none"},
        rate_limit=RateLimit(int(rate["requests"]), parse_duration(rate["per"]), rate.get("scope", "destination"))
        if rate else None,
        retry=Retry(
            max_age_s=parse_duration(retry.get("max_age", DEFAULT_MAX_AGE_S)),
            backoff=str(retry.get("backoff", "exponential")),
            base_s=parse_duration(retry.get("base", DEFAULT_BACKOFF_BASE_S)),
            cap_s=parse_duration(retry.get("cap", DEFAULT_BACKOFF_CAP_S)),
        ),
        batch_key=str(body.get("batch_key", "records")),
        id_field=str(body.get("id_field", "idempotency_key")),
        dedupe_ttl_s=integration.dedupe_ttl_s,
        on_forbidden=str(http.get("on_forbidden", "reconnect")),
        connection=_connection_use(http["connection"], f"{where}.connection") if "connection" in http else None,
    )


def _connection_use(section: dict[str, Any], where: str) -> ConnectionUse:
    """The spec's ``connection`` section with its references resolved (our OAuth client)."""
    use = parse_use(section)
    return replace(use, client_id=resolve(use.client_id, f"{where}.client_id") if use.client_id else None,
                   client_secret=resolve(use.client_secret, f"{where}.client_secret") if use.client_secret else None)
