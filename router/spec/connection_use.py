"""How an integration delivers with each tenant's connection (``destination.http.connection``).

Pure: what the spec declares (credential types, settings as JSON Schema, the api-key header, the
token URL), its checks at load with each problem's path, and the tenant's URL: ``{settings.NAME}``
placeholders filled from the connection's settings, each value percent-encoded so that a
tenant's setting can fill a path segment or a host label but never change the URL's shape
(``/``, ``?``, ``#``, ``@`` and ``:`` are encoded).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

PLACEHOLDER = re.compile(r"\{settings\.([A-Za-z_][A-Za-z0-9_]{0,63})\}")
MAX_SETTING_CHARS = 256  # a setting that fills a URL: longer is refused, not sent


@dataclass(frozen=True)
class ConnectionUse:
    """``destination.http.connection`` compiled."""

    credentials: tuple[str, ...]
    settings_schema: Mapping[str, Any]
    header: str = "Authorization"
    token_url: str | None = None
    scope: str | None = None
    on_disconnect: str = "hold"  # or "dlq": a disconnected tenant's records are dead-lettered
    client_id: str | None = None  # our OAuth client at the partner (authorization code)
    client_secret: str | None = None  # a reference until compiled for a worker (consumers/deliver/config.py)
    authorize_url: str | None = None
    revoke_url: str | None = None

    @property
    def refreshes(self) -> bool:
        """Can authorization-code tokens be refreshed (token endpoint and our client known)?"""
        return bool(self.token_url and self.client_id and self.client_secret)

    def settings_problem(self, settings: Mapping[str, Any]) -> str | None:
        """Why ``settings`` do not satisfy the declared schema (the first problem), or None."""
        error = next(iter(Draft202012Validator(self.settings_schema).iter_errors(settings)), None)
        if error is None:
            return None
        where = "/".join(str(p) for p in error.absolute_path) or "settings"
        return f"{where}: {error.message}"[:300]


def parse_use(section: Mapping[str, Any]) -> ConnectionUse:
    """A schema-valid ``connection`` section as a :class:`ConnectionUse`."""
    return ConnectionUse(credentials=tuple(section["credentials"]), settings_schema=section.get("settings") or {},
                         header=str(section.get("header", "Authorization")), token_url=section.get("token_url"),
                         scope=section.get("scope"), on_disconnect=str(section.get("on_disconnect", "hold")),
                         client_id=section.get("client_id"), client_secret=section.get("client_secret"),
                         authorize_url=section.get("authorize_url"), revoke_url=section.get("revoke_url"))


def problems(http: Mapping[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
    """What is wrong with how ``destination.http`` uses connections: (path under http, message)."""
    out: list[tuple[tuple[str | int, ...], str]] = []
    section = http.get("connection")
    names = PLACEHOLDER.findall(str(http.get("url", "")))
    if section is None:
        if names:
            out.append((("url",), "{settings.*} placeholders need a connection section: the values are each "
                                  "tenant's connection settings"))
        return out
    if "auth" in http:
        out.append((("auth",), "auth and connection exclude each other: with connection, each tenant's "
                               "credentials come from its connection"))
    schema = section.get("settings") or {}
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        out.append((("connection", "settings"), f"not a JSON Schema: {exc.message}"[:300]))
        return out
    required = set(schema.get("required") or []) if isinstance(schema, Mapping) else set()
    for name in names:
        if name not in required:
            out.append((("url",), f"{{settings.{name}}}: {name!r} must be a required property of "
                                  "connection.settings, so that every connection has it"))
    types = section.get("credentials") or []
    if "oauth2_client_credentials" in types and not section.get("token_url"):
        out.append((("connection", "token_url"), "oauth2_client_credentials needs the partner's token_url"))
    secret = section.get("client_secret")
    if isinstance(secret, str) and not secret.startswith(("env:", "file:")):  # the value is never echoed
        out.append((("connection", "client_secret"), "a secret is written in the spec: give client_secret as a "
                                                     "reference, env:NAME or file:/path"))
    if section.get("client_id") and not (section.get("token_url") and secret):
        out.append((("connection",), "client_id needs token_url and client_secret too (to refresh tokens)"))
    return out


def render_url(template: str, settings: Mapping[str, Any]) -> str:
    """``template`` with each ``{settings.NAME}`` replaced by the setting, percent-encoded; KeyError
    (the name) when a setting is missing, ValueError when it is not a short scalar."""

    def one(match: re.Match[str]) -> str:
        value = settings[match.group(1)]
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ValueError(f"setting {match.group(1)!r} is not a string or a whole number")
        text = str(value)
        if not text or len(text) > MAX_SETTING_CHARS:
            raise ValueError(f"setting {match.group(1)!r} must have 1 to {MAX_SETTING_CHARS} characters")
        return quote(text, safe="")

    return PLACEHOLDER.sub(one, template)
