"""The connection model: (tenant, integration), its state, settings, credentials and signing secrets.

Plain frozen dataclasses, no I/O. Every secret value is a :class:`router.settings.Secret`, whose
``repr``/``str`` never show it, so printing or logging a :class:`Connection` is safe. Building a
model from untrusted input (the CLI, a record of the topic) goes through the ``parse_*``
functions, which raise :class:`ConnectionsError` with a stable ``connections.*`` code.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from router import codes
from router.errors import RouterError
from router.settings import Secret
from router.spec.sources import TENANT_PATTERN, is_tenant_name

State = Literal["active", "paused", "needs_reconnect", "disconnected"]
STATES: tuple[State, ...] = get_args(State)

# Source names (^[A-Za-z0-9_-]{1,100}$) and integration names (^[a-z0-9][a-z0-9-]{0,99}$) both fit;
# no '/', so ``tenant/integration`` is an unambiguous record key.
INTEGRATION_PATTERN = r"[A-Za-z0-9_-]{1,100}"
_INTEGRATION = re.compile(INTEGRATION_PATTERN)
MAX_SIGNING_SECRETS = 10  # several during a rotation; bounded so a request's work stays bounded
MAX_SECRET_CHARS = 4096
MASK = "••••"


class ConnectionsError(RouterError):
    """A connection that cannot be built, found, stored or read; ``code`` is ``connections.*``."""

    code = codes.CONNECTIONS_INVALID


def check_tenant(tenant: str) -> str:
    """``tenant`` if it is a tenant name, else ConnectionsError ``connections.invalid_tenant``."""
    if not isinstance(tenant, str) or not is_tenant_name(tenant):
        raise ConnectionsError(f"{_shown(tenant)} is not a tenant name (^{TENANT_PATTERN}$: lowercase letters, "
                               "digits, _ and -, at most 63 characters)", code=codes.CONNECTIONS_INVALID_TENANT)
    return tenant


def check_integration(integration: str) -> str:
    """``integration`` if it is a source or integration name, else ``connections.invalid_integration``."""
    if not isinstance(integration, str) or _INTEGRATION.fullmatch(integration) is None:
        raise ConnectionsError(f"{_shown(integration)} is not an integration or source name "
                               f"(^{INTEGRATION_PATTERN}$)", code=codes.CONNECTIONS_INVALID_INTEGRATION)
    return integration


def check_state(state: str) -> State:
    """``state`` as a :data:`State`, else ``connections.invalid_state``."""
    if state not in STATES:
        raise ConnectionsError(f"{_shown(state)} is not a connection state; one of: {', '.join(STATES)}",
                               code=codes.CONNECTIONS_INVALID_STATE)
    return state  # type: ignore[return-value]


def _shown(value: object) -> str:
    """A short, one-line rendering of untrusted input for a message."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def mask(secret: Secret) -> str:
    """``••••`` and, for values long enough that it gives nothing away, the last four characters."""
    value = secret.reveal()
    return MASK + value[-4:] if len(value) >= 16 else MASK


# -- credentials: one variant per way a partner authenticates us ----------------------------------


@dataclass(frozen=True)
class ApiKey:
    """An API key, sent as the spec says (a header, usually)."""

    api_key: Secret
    type: Literal["api_key"] = "api_key"


@dataclass(frozen=True)
class Basic:
    """HTTP Basic authentication."""

    username: str
    password: Secret
    type: Literal["basic"] = "basic"


@dataclass(frozen=True)
class Bearer:
    """A static bearer token."""

    token: Secret
    type: Literal["bearer"] = "bearer"


@dataclass(frozen=True)
class OAuth2ClientCredentials:
    """OAuth 2.0 client credentials grant (RFC 6749 §4.4); the token URL comes from the spec."""

    client_id: str
    client_secret: Secret
    scopes: tuple[str, ...] = ()
    type: Literal["oauth2_client_credentials"] = "oauth2_client_credentials"


@dataclass(frozen=True)
class OAuth2AuthorizationCode:
    """Tokens from the OAuth 2.0 authorization code grant (RFC 6749 §4.1), refreshed with the refresh token."""

    access_token: Secret
    refresh_token: Secret | None = None
    expires_at_ms: int | None = None  # when the access token expires (epoch ms), if the partner said
    scopes: tuple[str, ...] = ()
    token_type: str = "Bearer"  # noqa: S105 (a token type, not a token)
    type: Literal["oauth2_authorization_code"] = "oauth2_authorization_code"


Credentials = ApiKey | Basic | Bearer | OAuth2ClientCredentials | OAuth2AuthorizationCode
CREDENTIAL_TYPES = ("api_key", "basic", "bearer", "oauth2_client_credentials", "oauth2_authorization_code")


@dataclass(frozen=True)
class Connection:
    """One tenant's connection to one integration (or webhook source)."""

    tenant: str
    integration: str
    state: State = "active"
    state_reason: str = ""  # why it is not active (needs_reconnect: the partner's answer)
    settings: Mapping[str, Any] = field(default_factory=dict)
    credentials: Credentials | None = None
    signing_secrets: tuple[Secret, ...] = ()  # newest first; every one is accepted (rotation)
    created_at_ms: int = 0
    updated_at_ms: int = 0
    key_id: str = ""  # the key its secrets were encrypted under, as read from the topic ("" if never stored)

    @property
    def key(self) -> str:
        """The record key in ``_connections``: ``tenant/integration``."""
        return f"{self.tenant}/{self.integration}"

    @property
    def active(self) -> bool:
        return self.state == "active"


def record_key(tenant: str, integration: str) -> bytes:
    """The ``_connections`` record key of (tenant, integration)."""
    return f"{tenant}/{integration}".encode()


def parse_record_key(key: bytes | None) -> tuple[str, str]:
    """(tenant, integration) of a record key; ConnectionsError ``connections.invalid_record`` if it is not one."""
    try:
        tenant, sep, integration = (key or b"").decode().partition("/")
    except UnicodeDecodeError:
        tenant, sep, integration = "", "", ""
    if not sep or not is_tenant_name(tenant) or _INTEGRATION.fullmatch(integration) is None:
        raise ConnectionsError(f"record key {_shown(key)} is not tenant/integration",
                               code=codes.CONNECTIONS_INVALID_RECORD)
    return tenant, integration


# -- secret documents: the plaintext that is encrypted, and how untrusted input becomes credentials ----


def _optional_secret(doc: Mapping[str, Any], name: str, what: str) -> Secret | None:
    return None if doc.get(name) is None else _secret(doc, name, what)


def _secret(doc: Mapping[str, Any], name: str, what: str) -> Secret:
    value = doc.get(name)
    if not isinstance(value, str) or not value or len(value) > MAX_SECRET_CHARS:
        raise ConnectionsError(f"{what}: {name!r} must be a non-empty string of at most {MAX_SECRET_CHARS} "
                               "characters", code=codes.CONNECTIONS_INVALID_CREDENTIALS)
    return Secret(value)


def _text(doc: Mapping[str, Any], name: str, what: str, default: str | None = None) -> str:
    value = doc.get(name, default)
    if not isinstance(value, str) or not value:
        raise ConnectionsError(f"{what}: {name!r} must be a non-empty string",
                               code=codes.CONNECTIONS_INVALID_CREDENTIALS)
    return value


def _scopes(doc: Mapping[str, Any], what: str) -> tuple[str, ...]:
    value = doc.get("scopes", [])
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise ConnectionsError(f"{what}: 'scopes' must be a list of strings",
                               code=codes.CONNECTIONS_INVALID_CREDENTIALS)
    return tuple(value)


def parse_credentials(doc: object) -> Credentials:
    """Credentials from a JSON object with a ``type``; ConnectionsError ``connections.invalid_credentials``.

    Messages name fields, never values.
    """
    if not isinstance(doc, Mapping):
        raise ConnectionsError("credentials must be a JSON object with a 'type'",
                               code=codes.CONNECTIONS_INVALID_CREDENTIALS)
    kind = doc.get("type")
    what = f"credentials of type {kind}"
    if kind == "api_key":
        return ApiKey(_secret(doc, "api_key", what))
    if kind == "basic":
        return Basic(_text(doc, "username", what), _secret(doc, "password", what))
    if kind == "bearer":
        return Bearer(_secret(doc, "token", what))
    if kind == "oauth2_client_credentials":
        return OAuth2ClientCredentials(_text(doc, "client_id", what), _secret(doc, "client_secret", what),
                                       _scopes(doc, what))
    if kind == "oauth2_authorization_code":
        expires = doc.get("expires_at_ms")
        if expires is not None and (isinstance(expires, bool) or not isinstance(expires, int)):
            raise ConnectionsError(f"{what}: 'expires_at_ms' must be a whole number (epoch milliseconds)",
                                   code=codes.CONNECTIONS_INVALID_CREDENTIALS)
        return OAuth2AuthorizationCode(_secret(doc, "access_token", what),
                                       _optional_secret(doc, "refresh_token", what), expires,
                                       _scopes(doc, what), _text(doc, "token_type", what, "Bearer"))
    raise ConnectionsError(f"credential type {_shown(kind)} is not one of: {', '.join(CREDENTIAL_TYPES)}",
                           code=codes.CONNECTIONS_INVALID_CREDENTIALS)


def credentials_document(credentials: Credentials) -> dict[str, Any]:
    """The plaintext JSON object of ``credentials`` (secrets revealed): only ever encrypted, never printed."""
    doc: dict[str, Any] = {"type": credentials.type}
    for name, value in vars(credentials).items():
        if name == "type" or value is None:
            continue
        doc[name] = value.reveal() if isinstance(value, Secret) else list(value) if isinstance(value, tuple) else value
    return doc


def masked_credentials(credentials: Credentials) -> dict[str, Any]:
    """``credentials`` for display: secrets masked (:func:`mask`), other fields as they are."""
    doc: dict[str, Any] = {"type": credentials.type}
    for name, value in vars(credentials).items():
        if name == "type" or value is None:
            continue
        doc[name] = mask(value) if isinstance(value, Secret) else list(value) if isinstance(value, tuple) else value
    return doc


def parse_signing_secrets(values: object) -> tuple[Secret, ...]:
    """Signing secrets from a JSON list of strings; ``connections.invalid_secret`` otherwise."""
    if not isinstance(values, list) or len(values) > MAX_SIGNING_SECRETS:
        raise ConnectionsError(f"signing secrets must be a list of at most {MAX_SIGNING_SECRETS} strings",
                               code=codes.CONNECTIONS_INVALID_SECRET)
    out = []
    for value in values:
        if not isinstance(value, str) or not value.strip() or len(value) > MAX_SECRET_CHARS or value != value.strip():
            raise ConnectionsError(f"a signing secret must be a non-empty string of at most {MAX_SECRET_CHARS} "
                                   "characters without surrounding spaces", code=codes.CONNECTIONS_INVALID_SECRET)
        out.append(Secret(value))
    return tuple(out)


def parse_settings(doc: object) -> dict[str, Any]:
    """Settings: a JSON object (values the spec references per tenant); ``connections.invalid_settings``."""
    if not isinstance(doc, Mapping) or not all(isinstance(k, str) for k in doc):
        raise ConnectionsError("settings must be a JSON object", code=codes.CONNECTIONS_INVALID_SETTINGS)
    return dict(doc)
