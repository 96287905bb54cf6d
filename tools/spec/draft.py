"""`router spec init`: a sample payload → a drafted integration spec and its Avro output schema.

Pure functions (no file is read or written here; tools/spec/init.py does the I/O). The draft
maps every value of the sample (tools/spec/draft_fields.py), guesses the event's identity by
name (tools/spec/draft_identity.py), and leaves the destination as placeholders that validate
(`url: env:<NAME>_URL`, `auth: {type: none}`), each guess carrying a ``REVIEW:`` note for its
YAML comment.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from router import codes
from router import headers as h
from router.errors import SpecError
from router.spec.yamlsrc import PathKey
from tools.spec.draft_fields import (
    Drafting,
    FieldDraft,
    Steps,
    avro_name,
    draft_value,
    leaves,
    unique,
)
from tools.spec.draft_identity import HEADER_EVENT_ID, Identity, guess_identity

NAME_FORM = re.compile(r"[a-z0-9][a-z0-9-]{0,99}")
SOURCE_FORM = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
DESTINATION_FORM = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
SCHEMA_FORM = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+")
_FORMS = {"name": (NAME_FORM, "lowercase letters, digits and dashes, e.g. github-issues-to-jira"),
          "source": (SOURCE_FORM, "lowercase letters, digits, _ and -, e.g. github (topic ingest.github)"),
          "destination": (DESTINATION_FORM, "lowercase letters, digits, _ and -, e.g. jira (topic delivery.jira)"),
          "schema": (SCHEMA_FORM, "an Avro full name, namespace and name, e.g. com.example.jira.Issue")}


@dataclass(frozen=True)
class DraftOptions:
    """What names the drafted files and topics."""

    name: str
    source: str
    destination: str
    schema: str  # the output record's Avro full name

    @classmethod
    def make(cls, stem: str, name: str | None = None, source: str | None = None, destination: str | None = None,
             schema: str | None = None) -> DraftOptions:
        """Options from the command line; defaults from the sample's file name. SpecError
        (``spec.init_invalid_option``) for a value in the wrong form, naming the form."""
        source = source if source is not None else (_slug(stem, "_-") or "partner")[:63]
        destination = destination if destination is not None else "partner"
        name = name if name is not None else _slug(f"{source}-to-{destination}", "-")[:100]
        if schema is None:
            namespace = avro_name((destination,)).lower()
            record = _camel(source) or "Partner"
            schema = f"{namespace}.{'Source' if record[0].isdigit() else ''}{record}Event"
        options = cls(name=name, source=source, destination=destination, schema=schema)
        for key, (form, hint) in _FORMS.items():
            value = getattr(options, key)
            if not form.fullmatch(value):
                raise SpecError(f"--{key} {value!r}"[:120] + f" is not in the expected form: {hint}",
                                code=codes.SPEC_INIT_INVALID_OPTION)
        return options


@dataclass
class Draft:
    """A drafted spec and schema, the notes for their YAML comments, and the fixture's headers."""

    spec: dict[str, Any]
    avro: dict[str, Any]
    identity: Identity
    notes: dict[PathKey, str] = field(default_factory=dict)
    trailers: dict[PathKey, list[str]] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


def draft_integration(payload: dict[str, Any], options: DraftOptions, body: bytes) -> Draft:
    """The drafted spec and Avro schema for a sample ``payload`` (``body``: its bytes as sent)."""
    identity = guess_identity(payload)
    namespace, _, record_name = options.schema.rpartition(".")
    drafting = Drafting(record_name)
    drafting.names.add(record_name)
    fields = _top_fields(payload, identity, drafting)
    avro = {"type": "record", "name": record_name, "namespace": namespace,
            "doc": f"Drafted by `router spec init` from a sample ingest.{options.source} event: review it.",
            "fields": [f.avro for f in fields]}
    env = re.sub(r"[^A-Z0-9]", "_", options.destination.upper())
    source: dict[str, Any] = {"topic": f"ingest.{options.source}", "format": "json"}
    notes: dict[PathKey, str] = {}
    if identity.type_path is not None:
        source["type"], source["types"] = identity.type_path, [identity.event_type]
        notes[("source", "type")] = identity.why["type"]
        notes[("source", "types")] = "REVIEW: the sample's type only: list every type to take, or \"*\" for all"
    source["tenants"] = ["*"]
    for key in ("event_id", "entity_key", "version"):
        value = getattr(identity, key)
        if value is not None:
            source[key] = value
            notes[("source", key)] = identity.why[key]
    spec: dict[str, Any] = {
        "name": options.name, "version": 1,
        "description": "Drafted from a sample payload by `router spec init`: review the lines marked REVIEW.",
        "source": source}
    if identity.version is not None:
        spec["ordering"] = {"on_stale": "drop"}
    spec["dedupe"] = {"ttl": "24h"}
    spec["mapping"] = {"schema": options.schema, "fields": {f.name: f.spec for f in fields}}
    spec["destination"] = {"name": options.destination, "http": {
        "url": f"env:{env}_URL", "method": "POST", "batch": {"max_records": 50}, "timeout": "10s",
        "auth": {"type": "none"}, "retry": {"max_age": "4h", "backoff": "exponential"}}}
    spec["fixtures"] = f"fixtures/{options.name}/"
    for f in fields:
        notes.update({("mapping", "fields", f.name, *k): v for k, v in f.inner_notes.items()})
        if f.note:
            notes[("mapping", "fields", f.name)] = f.note
    notes[("destination", "http", "url")] = f"REVIEW: the partner's endpoint, read from {env}_URL where delivery runs"
    notes[("destination", "http", "auth")] = "REVIEW: the partner's credentials; secrets are env: or file: references"
    trailers: dict[PathKey, list[str]] = {("destination", "http"): [
        f"auth: {{type: bearer, token: env:{env}_TOKEN}}",
        f"auth: {{type: basic, username: env:{env}_USER, password: env:{env}_PASSWORD}}",
        f"auth: {{type: oauth2_client_credentials, token_url: https://auth.example/token, client_id: env:{env}_ID, "
        f"client_secret: env:{env}_SECRET}}"]}
    skipped = [f"not mapped: {line}" for line in drafting.skipped]
    if drafting.over_budget:
        skipped.append(f"not mapped: {drafting.over_budget} more value(s), past {len(fields)} drafted fields")
    if skipped:
        trailers[("mapping", "fields")] = skipped
    if identity.entity_key is None:
        trailers[("source",)] = ["REVIEW: no entity key guessed (an object with an id): events are neither keyed",
                                 "nor ordered; add entity_key (and version) if the partner's events are about one"]
    headers = {}
    if identity.event_id == HEADER_EVENT_ID:  # what the gateway writes when neither body nor headers name an id
        headers[h.EVENT_ID] = f"sha256:{hashlib.sha256(body).hexdigest()}"
    return Draft(spec, avro, identity, notes, trailers, headers)


def _top_fields(payload: dict[str, Any], identity: Identity, drafting: Drafting) -> list[FieldDraft]:
    """The output fields: the gateway's event id when the body has none, the identity values, the
    main object's values (named from the main object), then the envelope's."""
    roles = {identity.type_path: "type", identity.event_id: "event_id", identity.entity_key: "entity_key",
             identity.version: "version"}
    found = leaves([payload], drafting, ())
    main = identity.main
    under_main = [s for s in found if main and s[:len(main)] == main and len(s) > len(main)]
    ordered = sorted(found, key=lambda s: (".".join(s) not in roles, s not in under_main))
    used: set[str] = set()
    out: list[FieldDraft] = []
    if identity.event_id == HEADER_EVENT_ID:
        name = unique("event_id", used)
        out.append(FieldDraft(name, {"from": HEADER_EVENT_ID}, {"name": name, "type": "string"},
                              "the event id the gateway wrote (router-event-id)"))
    names: dict[Steps, str] = {}
    for steps in sorted(found, key=lambda s: s not in under_main):  # the main object's values get the plain names
        relative = steps[len(main):] if steps in under_main else steps
        preferred = avro_name(relative)
        names[steps] = unique(preferred, used, f"event_{preferred}" if main and steps not in under_main else None)
    for steps in ordered:
        drafted = draft_value(names[steps], ".".join(steps), steps[-1], found[steps], drafting, (), 0)
        if drafted is None:
            continue
        role = roles.get(".".join(steps))
        out.append(_identity_field(drafted, role, steps) if role else drafted)
    return out


def _identity_field(drafted: FieldDraft, role: str, steps: Steps) -> FieldDraft:
    """An identity value is always there (validate refuses the event otherwise): not nullable, so
    required; ids are text, whatever their JSON type (a probe rewrites them as text)."""
    avro = {"name": drafted.name, "type": drafted.avro["type"][1], "doc": f"{role} in the source"}
    spec = dict(drafted.spec)
    if role in ("event_id", "entity_key"):
        avro["type"], spec = "string", {"from": ".".join(steps), "as": "string"}
    label = {"event_id": "the event id", "entity_key": "the entity key", "type": "the event type",
             "version": "the version"}[role]
    return FieldDraft(drafted.name, spec, avro, "; ".join(filter(None, (label, drafted.note))))


def _slug(text: str, keep: str) -> str:
    text = re.sub(rf"[^a-z0-9{re.escape(keep)}]+", "-" if "-" in keep else "_", text.lower())
    return text.strip("-_")


def _camel(text: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", text) if part)


__all__ = ["Draft", "DraftOptions", "draft_integration"]
