"""Load a folder of webhook source specs (``sources/<name>.yaml``) into compiled ``WebhookSource``s.

Same pipeline as integration specs (``router.spec.load``): YAML with line numbers → JSON Schema
(``source.schema.json``, shipped in the package) → semantic checks → compiled values. Secrets
are resolved here, at start-up: ``env:VAR`` reads the environment, ``file:PATH`` a file
(relative to the spec). A value may hold several secrets separated by whitespace, so a
rotation can be done in the environment alone. Every problem in every file is collected and
raised as one ``SpecErrors``; a missing variable or file is named, its value never printed.

Secret formats: ``standard_webhooks`` secrets are ``whsec_<base64>`` (the prefix is optional)
and the HMAC key is the decoded bytes, as the Standard Webhooks libraries do; ``stripe`` and
``github`` secrets are used as their UTF-8 bytes, as those partners do (Stripe's own secrets
also start with ``whsec_``, but are not decoded).

Event ids come from signed bytes: the body's ``event_id`` path, or a header the scheme signs
(``webhook-id`` of Standard Webhooks), or — Stripe and ``none`` — a header the spec names. The
``github`` scheme signs neither an id nor a time, so its delivery header (``X-GitHub-Delivery``)
is not trusted as the event id: a body without ``event_id`` gets ``sha256:<hex>`` of the raw body
(:func:`body_digest_event_id`), and the header travels beside it as the delivery id. A replay of a
signed body under a new delivery id is then the same event, which downstream dedupe drops.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from router import codes
from router.errors import SpecError
from router.spec.durations import parse_duration
from router.spec.load import load_folder
from router.spec.model import DEFAULT_MAX_BYTES
from router.spec.paths import Getter, compile_getter
from router.spec.yamlsrc import SourceDoc

Scheme = Literal["standard_webhooks", "stripe", "github", "none"]

DEFAULT_TOLERANCE_S = 300.0
DEFAULT_CONTENT_TYPES = ("application/json",)
STANDARD_WEBHOOKS_ID_HEADER = "webhook-id"
_TIMED_SCHEMES = ("standard_webhooks", "stripe")
# Schemes whose signature covers neither an id nor a time: the event id defaults to a digest of the body.
_DIGEST_SCHEMES = ("github",)

DEFAULT_MAX_DEPTH = 64  # containers (objects, arrays) nested in a body; deeper bodies are refused
MAX_MAX_DEPTH = 1024  # the JSON parser (orjson) refuses anything deeper whatever the spec says
# What a tenant name is (from the URL, and in a spec's ``tenants``): lowercase letters, digits, '_' and
# '-', starting with a letter or digit, at most 63 characters. Anything else is not a tenant (404).
TENANT_PATTERN = r"[a-z0-9][a-z0-9_-]{0,62}"
_TENANT = re.compile(TENANT_PATTERN)


def is_tenant_name(name: str) -> bool:
    """Does ``name`` match :data:`TENANT_PATTERN` (whole string; a trailing newline does not pass)?"""
    return _TENANT.fullmatch(name) is not None


def body_digest_event_id(body: bytes) -> str:
    """The event id of a body that carries none, for schemes that sign no id: ``sha256:<hex>`` of its bytes."""
    return "sha256:" + hashlib.sha256(body).hexdigest()


@dataclass(frozen=True)
class WebhookSource:
    """One webhook source, compiled: what the gateway's hot path needs, as plain values and getters."""

    name: str
    file: Path
    tenants: frozenset[str] | None  # None: every tenant
    scheme: Scheme
    keys: tuple[bytes, ...] = field(repr=False)  # HMAC keys, every one accepted (rotation)
    secret_refs: tuple[str, ...]  # env:VAR / file:PATH, for messages; never the values
    tolerance_s: float
    event_id_path: str | None
    get_event_id: Getter | None
    event_id_header: str | None  # a header trusted as the event id when the body has none
    delivery_id_header: str | None  # github: the unsigned delivery id, carried as router-delivery-id
    get_event_type: Getter | None
    entity_key_path: str | None
    get_entity_key: Getter | None
    max_bytes: int
    content_types: frozenset[str]
    max_depth: int = DEFAULT_MAX_DEPTH

    @property
    def digest_event_id(self) -> bool:
        """Does a body without an event id get :func:`body_digest_event_id` (schemes that sign no id, no time)?"""
        return self.scheme in _DIGEST_SCHEMES

    @property
    def topic(self) -> str:
        """Where accepted events are written: ``ingest.<name>`` (DESIGN §2)."""
        return f"ingest.{self.name}"

    def allows_tenant(self, tenant: str) -> bool:
        """May ``tenant`` post to this source?"""
        return self.tenants is None or tenant in self.tenants


@cache
def source_json_schema() -> dict[str, Any]:
    """The source spec's JSON Schema (draft 2020-12), shipped inside the package."""
    text = resources.files("router.spec").joinpath("source.schema.json").read_text()
    return dict(json.loads(text))


def decode_standard_webhooks_secret(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret; ValueError if it is not base64 or is empty."""
    raw = secret.removeprefix("whsec_")
    try:
        key = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("is not a Standard Webhooks secret (whsec_ followed by base64)") from None
    if not key:
        raise ValueError("is empty")
    return key


def load_sources(sources_dir: Path, env: Mapping[str, str] | None = None) -> dict[str, WebhookSource]:
    """Load every ``*.yaml``/``*.yml`` in ``sources_dir``, keyed by name; raise SpecErrors listing all problems.

    ``env`` (default ``os.environ``) is where ``env:VAR`` secrets are looked up.
    """
    env = os.environ if env is None else env
    loaded = load_folder(sources_dir, "source", "--sources", source_json_schema(),
                         lambda doc, file: compile_source(doc, file, env), lambda source: source.name)
    return {source.name: source for source in loaded}


def compile_source(doc: SourceDoc, file: Path, env: Mapping[str, str]) -> tuple[WebhookSource | None, list[SpecError]]:
    """Semantic checks, secret resolution and compilation of a schema-valid source spec."""
    spec = doc.value
    errors: list[SpecError] = []
    name: str = spec["name"]
    if name != file.stem:
        errors.append(doc.error(("name",), f"name {name!r} must match the file name ({file.stem}.yaml → "
                                f"name: {file.stem}, or rename the file to {name}.yaml)", codes.SPEC_NAME_MISMATCH))
    signature = spec["signature"]
    scheme: Scheme = signature["scheme"]
    refs: list[str] = signature.get("secrets", [])
    if scheme == "none" and refs:
        errors.append(doc.error(("signature", "secrets"), "scheme none takes no secrets; remove them or pick a "
                                "signing scheme", codes.SPEC_INVALID_VALUE))
    if "tolerance" in signature and scheme not in _TIMED_SCHEMES:
        errors.append(doc.error(("signature", "tolerance"), f"scheme {scheme} signs no timestamp; tolerance "
                                "applies to standard_webhooks and stripe only", codes.SPEC_INVALID_VALUE))
    tolerance_s = DEFAULT_TOLERANCE_S
    try:
        tolerance_s = parse_duration(signature.get("tolerance", DEFAULT_TOLERANCE_S))
    except ValueError as exc:
        errors.append(doc.error(("signature", "tolerance"), str(exc)))
    keys: list[bytes] = []
    if scheme != "none":
        for i, ref in enumerate(refs):
            keys.extend(_resolve_secret(doc, ("signature", "secrets", i), ref, scheme, file.parent, env, errors))
    id_header = spec.get("event_id_header") or (STANDARD_WEBHOOKS_ID_HEADER if scheme == "standard_webhooks" else None)
    if spec.get("event_id") is None and id_header is None and scheme not in _DIGEST_SCHEMES:
        errors.append(doc.error((), "missing required key: 'event_id' (the path of the event id in the body; "
                                "or event_id_header, the header that carries it)", codes.SPEC_MISSING_KEY))
    getters: dict[str, Getter | None] = {}
    for key in ("event_id", "event_type", "entity_key"):
        try:
            getters[key] = compile_getter(spec[key]) if key in spec else None
        except ValueError as exc:
            errors.append(doc.error((key,), str(exc)))
    tenants = spec.get("tenants", ["*"])
    for i, tenant in enumerate(tenants):
        if tenant != "*" and not is_tenant_name(tenant):
            errors.append(doc.error(("tenants", i), f"{tenant!r} is not a tenant name (^{TENANT_PATTERN}$: lowercase "
                                    "letters, digits, _ and -, at most 63 characters), or \"*\" for any",
                                    codes.SPEC_INVALID_VALUE))
    if errors:
        return None, errors
    # github's delivery header is unsigned: it is the delivery id, not the event id (see the module docstring).
    trusted_header = None if scheme in _DIGEST_SCHEMES else id_header
    return WebhookSource(
        name=name,
        file=file,
        tenants=None if "*" in tenants else frozenset(tenants),
        scheme=scheme,
        keys=tuple(keys),
        secret_refs=tuple(refs),
        tolerance_s=tolerance_s,
        event_id_path=spec.get("event_id"),
        get_event_id=getters["event_id"],
        event_id_header=trusted_header.lower() if trusted_header else None,
        delivery_id_header=id_header.lower() if id_header and scheme in _DIGEST_SCHEMES else None,
        get_event_type=getters["event_type"],
        entity_key_path=spec.get("entity_key"),
        get_entity_key=getters["entity_key"],
        max_bytes=int(spec.get("max_bytes", DEFAULT_MAX_BYTES)),
        content_types=frozenset(spec.get("content_types", DEFAULT_CONTENT_TYPES)),
        max_depth=int(spec.get("max_depth", DEFAULT_MAX_DEPTH)),
    ), []


def _resolve_secret(doc: SourceDoc, path: tuple[str | int, ...], ref: str, scheme: Scheme, folder: Path,
                    env: Mapping[str, str], errors: list[SpecError]) -> list[bytes]:
    """The HMAC keys behind one ``env:``/``file:`` reference; problems are appended to ``errors``."""
    kind, _, target = ref.partition(":")
    if kind == "env":
        raw = env.get(target, "")
        if not raw.strip():
            errors.append(doc.error(path, f"environment variable {target} is not set (or is empty); set it to the "
                                    "webhook signing secret", codes.SPEC_MISSING_SECRET))
            return []
        where = f"environment variable {target}"
    else:
        secret_file = Path(target) if Path(target).is_absolute() else folder / target
        try:
            raw = secret_file.read_text()
        except OSError as exc:
            errors.append(doc.error(path, f"cannot read secret file {secret_file}: {exc.strerror}",
                                    codes.SPEC_MISSING_SECRET))
            return []
        if not raw.strip():
            errors.append(doc.error(path, f"secret file {secret_file} is empty", codes.SPEC_MISSING_SECRET))
            return []
        where = f"secret file {secret_file}"
    keys: list[bytes] = []
    for n, value in enumerate(raw.split(), start=1):
        if scheme != "standard_webhooks":
            keys.append(value.encode())
            continue
        try:
            keys.append(decode_standard_webhooks_secret(value))
        except ValueError as exc:
            errors.append(doc.error(path, f"secret {n} in {where} {exc}", codes.SPEC_INVALID_SECRET))
    return keys


__all__ = ["DEFAULT_MAX_DEPTH", "TENANT_PATTERN", "WebhookSource", "body_digest_event_id",
           "decode_standard_webhooks_secret", "is_tenant_name", "load_sources", "source_json_schema"]
