"""The error-code catalogue: every stable code the router emits, declared once.

A code is a contract: it is the ``router-error-code`` header of a dead letter, a metric label,
the ``code`` of a gateway or admin error body, the ``[code]`` of a CLI error line, and what
``router dlq replay --code`` filters on. Each one is declared here, exactly once, with where it
is seen, whether it is *retryable*, one line of meaning and what to do. Raise sites name the
constant (``codes.DECODE_INVALID_JSON``), never the string, so a typo is a mypy error and a new
code cannot appear without an entry (tests/unit/test_error_codes.py scans the source for bare
code literals). The constants are plain ``str``: headers, labels and bodies carry the same bytes.

**Retryable** means the same record or request, sent again unchanged later, can succeed (a
transient condition). **Terminal** means something must change first: the record, the spec,
the partner's side or the router itself. For a dead letter: retryable codes are worth a plain
``router dlq replay`` once the outage is over; terminal ones only after the fix.

Run ``router codes --write`` after changing an entry: it regenerates docs/error-codes.md and
the dead-letter table of docs/dlq.md (tools/codes/cli.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

if TYPE_CHECKING:
    from router.errors import Stage

Area = Literal["dlq", "gateway", "spec", "config", "registry", "admin", "cohort", "connections", "tool", "worker",
               "fallback"]
InternalStage = Literal["decode", "map", "encode", "deliver"]


@dataclass(frozen=True, slots=True)
class ErrorCode:
    """One catalogue entry. ``seen`` says where a person meets it (``DLQ``, ``HTTP 400``, ``exit 2``, ``log``)."""

    code: str
    area: Area
    seen: str
    retryable: bool
    meaning: str
    action: str = ""
    stages: tuple[Stage, ...] = ()  # the router-error-stage values a dead letter with this code carries


CATALOGUE: dict[str, ErrorCode] = {}


def _declare(code: str, area: Area, seen: str, *, retryable: bool, meaning: str, action: str = "",
             stages: tuple[Stage, ...] = ()) -> str:
    if code in CATALOGUE:
        raise ValueError(f"error code {code!r} is declared twice")
    CATALOGUE[code] = ErrorCode(code, area, seen, retryable, meaning, action, stages)
    return code


def _dlq(code: str, *stages: Stage, retryable: bool = False, meaning: str, action: str = "") -> str:
    return _declare(code, "dlq", "DLQ", retryable=retryable, meaning=meaning, action=action, stages=stages)


FIX_SPEC_OR_SENDER = "fix the sender or the spec, then replay"

# ---- dead letters: route stages ---------------------------------------------------------------

DECODE_EMPTY: Final = _dlq("decode.empty", "decode", meaning="the record has no value (a tombstone)",
                           action="nothing to deliver; find who wrote a tombstone to an ingest topic")
DECODE_TOO_LARGE: Final = _dlq("decode.too_large", "decode", meaning="the value is over the source's `max_bytes`",
                               action="raise `max_bytes` in the source spec if the size is legitimate, then replay")
DECODE_INVALID_JSON: Final = _dlq("decode.invalid_json", "decode", meaning="the value is not valid JSON",
                                  action=FIX_SPEC_OR_SENDER)
DECODE_NOT_OBJECT: Final = _dlq("decode.not_object", "decode",
                                meaning="the value is JSON (or Avro) but not an object (a record)",
                                action=FIX_SPEC_OR_SENDER)
DECODE_AVRO: Final = _dlq("decode.avro", "decode",
                          meaning="not registry-framed Avro, or bytes that do not match their schema",
                          action="fix the producer of the topic")
DECODE_UNKNOWN_SCHEMA: Final = _dlq("decode.unknown_schema", "decode",
                                    meaning="the Avro schema id is not in the schema registry",
                                    action="check the worker's SCHEMA_REGISTRY_URL; replay once the id is there")
VALIDATE_MISSING_TENANT: Final = _dlq("validate.missing_tenant", "validate",
                                      meaning="no `router-tenant` header (the gateway sets it)",
                                      action="write ingest topics through the gateway")
VALIDATE_MISSING_EVENT_ID: Final = _dlq("validate.missing_event_id", "validate",
                                        meaning="no event id at the source's `event_id` path",
                                        action=FIX_SPEC_OR_SENDER)
VALIDATE_MISSING_VERSION: Final = _dlq("validate.missing_version", "validate",
                                       meaning="no version at the source's `version` path (ordering needs it)",
                                       action=FIX_SPEC_OR_SENDER)
VALIDATE_BAD_VERSION: Final = _dlq("validate.bad_version", "validate",
                                   meaning="a version that is neither a finite number within int64 nor an ISO-8601 "
                                           "time", action=FIX_SPEC_OR_SENDER)
VALIDATE_MISSING_ENTITY_KEY: Final = _dlq("validate.missing_entity_key", "validate",
                                          meaning="no entity key at the source's `entity_key` path (ordering needs "
                                                  "it)", action=FIX_SPEC_OR_SENDER)
VALIDATE_BAD_HEADER: Final = _dlq("validate.bad_header", "validate",
                                  meaning="a `router-` header that cannot be what it says (e.g. `router-received-at` "
                                          "not epoch ms of at most 16 digits)",
                                  action="fix the producer that wrote the header")
VALIDATE_EVENT_ID_TOO_LONG: Final = _dlq("validate.event_id_too_long", "validate",
                                         meaning="an event id over 256 characters (`router.headers.MAX_EVENT_ID_CHARS`;"
                                                 " the gateway refuses these, so the record came straight to Kafka)",
                                         action=FIX_SPEC_OR_SENDER)
VALIDATE_ENTITY_KEY_TOO_LONG: Final = _dlq("validate.entity_key_too_long", "validate",
                                           meaning="an entity key over 512 characters "
                                                   "(`router.headers.MAX_ENTITY_KEY_CHARS`)",
                                           action=FIX_SPEC_OR_SENDER)
VALIDATE_INVALID: Final = _dlq("validate.invalid", "validate",
                               meaning="`ValidateError`'s default; every check names a precise code, so not "
                                       "emitted today")
ORDER_STALE: Final = _dlq("order.stale", "order",
                          meaning="a version not newer than the entity's watermark (`ordering.on_stale: dlq`)",
                          action="none needed: a newer version of the entity was already routed")
MAP_REQUIRED_MISSING: Final = _dlq("map.required_missing", "map",
                                   meaning="a field marked `required` has no value in the event",
                                   action=FIX_SPEC_OR_SENDER)
MAP_TYPE_ERROR: Final = _dlq("map.type_error", "map",
                             meaning="a value that cannot be converted to the field's type (also for values nested "
                                     "too deep to show)", action=FIX_SPEC_OR_SENDER)
ENCODE_SCHEMA_MISMATCH: Final = _dlq("encode.schema_mismatch", "encode",
                                     meaning="the mapped record does not fit the output Avro schema",
                                     action="fix the mapping or the schema, then replay")
ENCODE_TOO_LARGE: Final = _dlq("encode.too_large", "encode",
                               meaning="the broker refused the output record for good (too large)",
                               action="raise the delivery topic's `max.message.bytes` or map less, then replay")

# ---- dead letters: delivery -------------------------------------------------------------------

DELIVER_UNKNOWN_INTEGRATION: Final = _dlq("deliver.unknown_integration", "deliver",
                                          meaning="no integration loaded by this delivery worker matches the "
                                                  "record's `router-integration`",
                                          action="deploy the spec to the delivery workers, then replay")
DELIVER_MISSING_EVENT_ID: Final = _dlq("deliver.missing_event_id", "deliver",
                                       meaning="no `router-event-id` header, so no idempotency key",
                                       action="write delivery topics through a route worker")
DELIVER_BAD_HEADER: Final = _dlq("deliver.bad_header", "deliver",
                                 meaning="`router-event-id` or `router-tenant` missing, empty, not UTF-8 or over 256 "
                                         "characters: identity is never guessed (two undecodable ids would become one)",
                                 action="write delivery topics through a route worker")
DELIVER_DECODE: Final = _dlq("deliver.decode", "deliver",
                             meaning="the value is not registry-framed Avro the worker can read (or its schema "
                                     "could not be fetched)",
                             action="check the schema registry; replay once it answers")
DELIVER_HTTP_4XX: Final = _dlq("deliver.http_4xx", "deliver",
                               meaning="the partner refused the record for good: a 4xx other than 401/408/425/"
                                       "429 (403 only with `on_forbidden: dlq`), a 501, or any other non-2xx (3xx)",
                               action="read `router-http-status` and `router-response-body`; fix, then replay")
DELIVER_RETRIES_EXHAUSTED: Final = _dlq("deliver.retries_exhausted", "deliver", retryable=True,
                                        meaning="transient failures (5xx, 429, timeouts) lasted past "
                                                "`retry.max_age`", action="replay once the partner recovers")
DELIVER_NO_CONNECTION: Final = _dlq("deliver.no_connection", "deliver", retryable=True,
                                    meaning="the integration delivers with each tenant's connection, and the "
                                            "record's tenant has none (never connected, or deleted)",
                                    action="connect the tenant (`router connections create`), then replay")
DELIVER_DISCONNECTED: Final = _dlq("deliver.disconnected", "deliver", retryable=True,
                                   meaning="the record's tenant disconnected the integration, whose spec says "
                                           "`connection.on_disconnect: dlq`",
                                   action="reconnect the tenant, then replay (or leave it: the tenant left)")
DELIVER_UNKNOWN: Final = _dlq("deliver.unknown", "deliver",
                              meaning="a dead letter written without a reason (a worker bug; should never appear)",
                              action="report it with the record's coordinates")

# ---- dead letters: anything unforeseen (`internal.<stage>`) -----------------------------------

_BUG = "report it (the message names the exception type); replay after the fix"
INTERNAL_DECODE: Final = _dlq("internal.decode", "decode", "deliver",
                              meaning="an exception no check foresaw while decoding (stage `deliver` in a delivery "
                                      "worker)", action=_BUG)
INTERNAL_MAP: Final = _dlq("internal.map", "map", meaning="an exception no check foresaw while mapping", action=_BUG)
INTERNAL_ENCODE: Final = _dlq("internal.encode", "encode", meaning="an exception no check foresaw while encoding",
                              action=_BUG)
INTERNAL_DELIVER: Final = _dlq("internal.deliver", "deliver",
                               meaning="an exception no check foresaw while sending a batch", action=_BUG)
_INTERNAL: Final[dict[InternalStage, str]] = {"decode": INTERNAL_DECODE, "map": INTERNAL_MAP,
                                              "encode": INTERNAL_ENCODE, "deliver": INTERNAL_DELIVER}


def internal(stage: InternalStage) -> str:
    """The ``internal.<stage>`` code of an unforeseen exception in ``stage``."""
    return _INTERNAL[stage]


# ---- gateway: the `code` of a problem+json answer ---------------------------------------------


def _gateway(code: str, status: int, meaning: str, *, retryable: bool = False, action: str = "") -> str:
    return _declare(code, "gateway", f"HTTP {status}", retryable=retryable, meaning=meaning, action=action)


GATEWAY_INVALID_JSON: Final = _gateway("gateway.invalid_json", 400, "the body is not valid JSON")
GATEWAY_MISSING_EVENT_ID: Final = _gateway("gateway.missing_event_id", 400, "the event has no event id")
GATEWAY_INVALID_EVENT_ID: Final = _gateway("gateway.invalid_event_id", 400,
                                           "the event id is not a string or an integer")
GATEWAY_INVALID_ENTITY_KEY: Final = _gateway("gateway.invalid_entity_key", 400,
                                             "the entity key is not a string or a number")
GATEWAY_TOO_DEEP: Final = _gateway("gateway.too_deep", 400, "the body is nested deeper than the source's `max_depth`")
GATEWAY_EVENT_ID_TOO_LONG: Final = _gateway("gateway.event_id_too_long", 400, "the event id is over 256 characters")
GATEWAY_ENTITY_KEY_TOO_LONG: Final = _gateway("gateway.entity_key_too_long", 400,
                                              "the entity key is over 512 characters")
GATEWAY_INCOMPLETE_BODY: Final = _gateway("gateway.incomplete_body", 400, "the body ended before its declared end",
                                          retryable=True, action="send the whole body again")
GATEWAY_BAD_SIGNATURE: Final = _gateway("gateway.bad_signature", 401, "the signature does not verify",
                                        action="check the tenant's signing secret")
GATEWAY_STALE_TIMESTAMP: Final = _gateway("gateway.stale_timestamp", 401, "the signed timestamp is too far from now",
                                          action="check the sender's clock; re-sign")
GATEWAY_UNKNOWN_SOURCE: Final = _gateway("gateway.unknown_source", 404, "no such webhook source")
GATEWAY_UNKNOWN_TENANT: Final = _gateway("gateway.unknown_tenant", 404, "this tenant may not post to this source",
                                         action="connect the tenant (or add it to `source.tenants`)")
GATEWAY_INVALID_TENANT: Final = _gateway("gateway.invalid_tenant", 404,
                                         "the tenant in the URL is not a tenant name (not echoed)")
GATEWAY_NOT_FOUND: Final = _gateway("gateway.not_found", 404, "nothing is served at this path")
GATEWAY_METHOD_NOT_ALLOWED: Final = _gateway("gateway.method_not_allowed", 405, "method not allowed on this path")
GATEWAY_TOO_LARGE: Final = _gateway("gateway.too_large", 413,
                                    "the body, or the Kafka record it makes, is larger than the source accepts")
GATEWAY_UNSUPPORTED_MEDIA_TYPE: Final = _gateway("gateway.unsupported_media_type", 415, "unsupported content type")
GATEWAY_UNAVAILABLE: Final = _gateway("gateway.unavailable", 503,
                                      "the event could not be stored durably right now", retryable=True,
                                      action="retry after `Retry-After`")
GATEWAY_INTERNAL: Final = _gateway("gateway.internal", 500, "an unexpected failure; the gateway log has the details",
                                   retryable=True, action="report it; retrying may succeed")
GATEWAY_HTTP: Final = _declare("gateway.http_<status>", "gateway", "HTTP <status>", retryable=False,
                               meaning="another answer aiohttp itself gave (e.g. 400 for a malformed request), "
                                       "in the same problem+json shape")


def gateway_http(status: int) -> str:
    """The ``gateway.http_<status>`` code of an answer aiohttp itself gave."""
    return GATEWAY_HTTP.replace("<status>", str(status))


# ---- integration specs, fixtures and sources (`file:line: path: message  [code]`, exit 2) ------


def _spec(code: str, meaning: str) -> str:
    return _declare(code, "spec", "exit 2", retryable=False, meaning=meaning, action="fix the file named in the line")


SPEC_PLAIN_SECRET: Final = _spec("spec.plain_secret", "a destination secret (token, key, password, client_secret, "
                                 "secret) written as its value instead of an env: or file: reference")
SPEC_INVALID: Final = _spec("spec.invalid", "a spec problem without a more precise code, or several with "
                                            "different codes (each line then ends with its own)")
SPEC_UNREADABLE: Final = _spec("spec.unreadable", "the file cannot be read, or is not a regular file")
SPEC_YAML: Final = _spec("spec.yaml", "not acceptable YAML: syntax, forbidden characters or tags, several documents, "
                                      "duplicate or merge keys, an empty file")
SPEC_TOO_LARGE: Final = _spec("spec.too_large", "over 1 MiB, or over 100,000 values")
SPEC_TOO_DEEP: Final = _spec("spec.too_deep", "nested deeper than 64 levels")
SPEC_YAML_ALIASES: Final = _spec("spec.yaml_aliases", "aliases that expand too far, or refer to themselves")
SPEC_NOT_UTF8: Final = _spec("spec.not_utf8", "the file is not UTF-8")
SPEC_UNKNOWN_KEY: Final = _spec("spec.unknown_key", "a key the schema does not allow here")
SPEC_MISSING_KEY: Final = _spec("spec.missing_key", "a required key is missing")
SPEC_WRONG_TYPE: Final = _spec("spec.wrong_type", "a value of the wrong type")
SPEC_INVALID_VALUE: Final = _spec("spec.invalid_value", "a value the schema or a rule refuses")
SPEC_DUPLICATE_NAME: Final = _spec("spec.duplicate_name", "two integrations (or sources) with the same name")
SPEC_NAME_MISMATCH: Final = _spec("spec.name_mismatch", "a source's `name` differs from its file name")
SPEC_MAPPING: Final = _spec("spec.mapping", "a mapping field that cannot compile (bad path, template or option)")
SPEC_UNKNOWN_SCHEMA: Final = _spec("spec.unknown_schema", "`mapping.schema` names no `.avsc` in the schema folder")
SPEC_AVRO_INVALID: Final = _spec("spec.avro_invalid", "an `.avsc` file that is not JSON, not Avro, or not a record")
SPEC_AVRO_NAME: Final = _spec("spec.avro_name", "an `.avsc` file not named after its schema's full name")
SPEC_MISSING_SECRET: Final = _spec("spec.missing_secret", "a source's signing secret is unset or empty")
SPEC_INVALID_SECRET: Final = _spec("spec.invalid_secret", "a source's signing secret is not in the scheme's format")
SPEC_FIXTURE: Final = _spec("spec.fixture", "a certification fixture case without `event`/`raw` or one `expect`")

# ---- `router spec init --sample payload.json` (exit 2) -----------------------------------------


def _init(code: str, meaning: str, action: str) -> str:
    return _declare(code, "spec", "exit 2", retryable=False, meaning=meaning, action=action)


SPEC_SAMPLE_INVALID: Final = _init("spec.sample_invalid", "the sample payload is not UTF-8 JSON (the message names "
                                   "where it stops being JSON)",
                                   "pass the partner's JSON body as it was sent")
SPEC_SAMPLE_NOT_OBJECT: Final = _init("spec.sample_not_object", "the sample payload is JSON but not an object",
                                      "pass one event: a JSON object, not a list of events")
SPEC_SAMPLE_TOO_LARGE: Final = _init("spec.sample_too_large", "the sample payload is over 256 KiB or holds over "
                                     "20,000 values", "pass a smaller, typical event")
SPEC_SAMPLE_TOO_DEEP: Final = _init("spec.sample_too_deep", "the sample payload nests objects and lists deeper "
                                    "than 32 levels", "pass a typical event")
SPEC_INIT_EXISTS: Final = _init("spec.init_exists", "a file `spec init` would write already exists",
                                "choose another --name or --out, or pass --force to overwrite")
SPEC_INIT_INVALID_OPTION: Final = _init("spec.init_invalid_option", "a --name, --source, --destination or "
                                        "--schema value that is not in the form a spec needs",
                                        "the message gives the form and an example")
SPEC_INIT_UNWRITABLE: Final = _init("spec.init_unwritable", "a file `spec init` must write cannot be written",
                                    "check the --out folder and its permissions")

# ---- settings, registry, admin ----------------------------------------------------------------

CONFIG_INVALID: Final = _declare("config.invalid", "config", "exit 2", retryable=False,
                                 meaning="settings, options, ports or binaries: how the process was started",
                                 action="the message names the setting to change")
CLI_UNAVAILABLE: Final = _declare(
    "cli.unavailable", "config", "exit 2", retryable=True,
    meaning="a command could not reach Redis or Kafka (refused, timed out, or an answer it could not use)",
    action="check REDIS_URL / KAFKA_BOOTSTRAP_SERVERS and that the service is up, then run it again")
REGISTRY_ERROR: Final = _declare("registry.error", "registry", "exit 2", retryable=False,
                                 meaning="a schema needed for a subject is not in the schema folder",
                                 action="add the `.avsc` file")
REGISTRY_REGISTER_FAILED: Final = _declare("registry.register_failed", "registry", "exit 2", retryable=False,
                                           meaning="the registry refused a schema (usually an incompatible change)",
                                           action="use a new schema name or change the subject's compatibility")
REGISTRY_INVALID_SCHEMA: Final = _declare("registry.invalid_schema", "registry", "HTTP 422 (42201)", retryable=False,
                                          meaning="a schema text that is not valid Avro")
REGISTRY_STORE: Final = _declare("registry.store", "registry", "HTTP 500 (50001), log", retryable=True,
                                 meaning="the embedded registry could not read or write its `_schemas` topic")
REGISTRY_TIMEOUT: Final = _declare("registry.timeout", "registry", "HTTP 500 (50002), log", retryable=True,
                                   meaning="a `_schemas` write was not acknowledged (or read back) in time")
REGISTRY_STOPPED: Final = _declare("registry.stopped", "registry", "HTTP 500 (50001), log", retryable=True,
                                   meaning="the embedded registry is stopping")
ADMIN_UNAUTHORIZED: Final = _declare("admin.unauthorized", "admin", "HTTP 401", retryable=False,
                                     meaning="no valid admin token or session",
                                     action="send `Authorization: Bearer <ROUTER_ADMIN_TOKEN>`")
ADMIN_CROSS_ORIGIN: Final = _declare("admin.cross_origin", "admin", "HTTP 403", retryable=False,
                                     meaning="a state-changing request from another origin")
ADMIN_CSRF_INVALID: Final = _declare("admin.csrf_invalid", "admin", "HTTP 403", retryable=False,
                                     meaning="a form token that is missing, expired or not this session's",
                                     action="reload the page")
ADMIN_LOGIN_THROTTLED: Final = _declare("admin.login_throttled", "admin", "HTTP 429", retryable=True,
                                        meaning="too many wrong tokens from this address or overall",
                                        action="wait for `Retry-After`")

# ---- cohort sync (`router cohort sync`, exit 2) ----------------------------------------------


def _cohort(code: str, meaning: str, *, retryable: bool = False, action: str = "") -> str:
    return _declare(code, "cohort", "exit 2", retryable=retryable, meaning=meaning, action=action)


COHORT_ERROR: Final = _cohort("cohort.error", "`CohortError`'s default; every raise names a precise code, so not "
                                              "emitted today")
COHORT_SNAPSHOT_UNREADABLE: Final = _cohort("cohort.snapshot_unreadable",
                                            "the snapshot file cannot be read as the format given")
COHORT_INVALID_SNAPSHOT: Final = _cohort("cohort.invalid_snapshot", "the snapshot has invalid ids; nothing published",
                                         action="fix the file, or `--on-invalid skip`")
COHORT_EMPTY_SNAPSHOT: Final = _cohort("cohort.empty_snapshot", "the snapshot holds no id",
                                       action="`--allow-empty` if the audience really is empty")
COHORT_TOO_MANY_REMOVALS: Final = _cohort("cohort.too_many_removals",
                                          "the snapshot would remove more than the allowed share of the audience",
                                          action="`--max-removal-share` if intended")
COHORT_STATE_CORRUPT: Final = _cohort("cohort.state_corrupt", "the stored cohort state does not check out",
                                      action="delete the key named in the message to sync everything again")
COHORT_LOCKED: Final = _cohort("cohort.locked", "another sync of this audience holds the lock", retryable=True,
                               action="wait for it, or run again")
COHORT_LEASE_LOST: Final = _cohort("cohort.lease_lost", "the sync lost its lease; another run took over",
                                   retryable=True, action="run again")
COHORT_INTERRUPTED: Final = _cohort("cohort.interrupted", "stopped by a signal or a lost lease mid-publish",
                                    retryable=True, action="run again: the next run redoes the diff")
COHORT_PUBLISH_FAILED: Final = _cohort("cohort.publish_failed", "records were not acknowledged by the broker",
                                       retryable=True, action="run again")
COHORT_CARRY_TIMEOUT: Final = _cohort("cohort.carry_timeout", "the DLQs could not be read to their end in time",
                                      retryable=True, action="run again")

# ---- connections (`router connections`, the `_connections` topic) ------------------------------


def _conn(code: str, seen: str, meaning: str, *, retryable: bool = False, action: str = "") -> str:
    return _declare(code, "connections", seen, retryable=retryable, meaning=meaning, action=action)


CONNECTIONS_EXISTS: Final = _conn("connections.exists", "exit 2",
                                  meaning="`router connections create` for a (tenant, integration) that already has a "
                                          "connection",
                                  action="use `router connections set`")
CONNECTIONS_INVALID: Final = _conn("connections.invalid", "exit 2",
                                   meaning="`ConnectionsError`'s default; every raise names a precise code")
CONNECTIONS_INVALID_CREDENTIALS: Final = _conn("connections.invalid_credentials", "exit 2",
                                               meaning="credentials that do not fit their type (missing or empty "
                                                       "fields, unknown type)",
                                               action="fix the --credentials JSON")
CONNECTIONS_INVALID_INTEGRATION: Final = _conn("connections.invalid_integration", "exit 2",
                                               meaning="an integration name that is not a spec name",
                                               action="name a loaded integration")
CONNECTIONS_INVALID_KEY: Final = _conn("connections.invalid_key", "exit 2",
                                       meaning="ROUTER_ENCRYPTION_KEY or its key file is not base64 of 32 bytes (or "
                                               "`kid:base64,...`)",
                                       action="fix the key ring")
CONNECTIONS_INVALID_RECORD: Final = _conn("connections.invalid_record", "log",
                                          meaning="a `_connections` record that does not parse (skipped; the connection"
                                                  " it named is not in effect)",
                                          action="rewrite it with `router connections set`")
CONNECTIONS_INVALID_REF: Final = _conn("connections.invalid_ref", "exit 2",
                                       meaning="a secret given other than as `env:VAR`, `file:PATH` or `-` (stdin), or "
                                               "too large",
                                       action="pass secrets by reference, never on the command line")
CONNECTIONS_INVALID_SECRET: Final = _conn("connections.invalid_secret", "exit 2",
                                          meaning="a signing secret that is empty, too long or not valid for its "
                                                  "scheme",
                                          action="fix the secret")
CONNECTIONS_INVALID_SETTINGS: Final = _conn("connections.invalid_settings", "exit 2",
                                            meaning="settings that are not a JSON object or KEY=VALUE pairs",
                                            action="fix --settings / --setting")
CONNECTIONS_INVALID_STATE: Final = _conn("connections.invalid_state", "exit 2",
                                         meaning="a state other than active, paused, needs_reconnect, disconnected")
CONNECTIONS_INVALID_TENANT: Final = _conn("connections.invalid_tenant", "exit 2",
                                          meaning="a tenant name that does not match `^[a-z0-9][a-z0-9_-]{0,62}$`")
CONNECTIONS_MISSING_SECRET: Final = _conn("connections.missing_secret", "exit 2",
                                          meaning="a secret reference that resolves to nothing (unset variable, missing"
                                                  " file, empty)",
                                          action="set the variable or file")
CONNECTIONS_NO_KEY: Final = _conn("connections.no_key", "exit 2",
                                  meaning="no encryption key configured (ROUTER_ENCRYPTION_KEY or "
                                          "ROUTER_ENCRYPTION_KEY_FILE)",
                                  action="set one: secrets are never stored in clear")
CONNECTIONS_NOT_FOUND: Final = _conn("connections.not_found", "exit 2",
                                     meaning="no connection for that tenant and integration",
                                     action="`router connections ls`")
CONNECTIONS_UNAVAILABLE: Final = _conn("connections.unavailable", "exit 2",
                                       meaning="the `_connections` topic could not be read or written (broker down or "
                                               "slow)",
                                       retryable=True,
                                       action="run again")
CONNECTIONS_UNDECRYPTABLE: Final = _conn("connections.undecryptable", "log",
                                         meaning="a sealed secret that does not decrypt with its key (wrong key, or "
                                                 "moved to another connection); the connection is not in effect",
                                         action="re-create the connection's secrets")
CONNECTIONS_UNKNOWN_KEY: Final = _conn("connections.unknown_key", "log",
                                       meaning="a sealed secret under a key id the key ring does not hold",
                                       action="add the old key back, run `router connections rotate-key`, then drop it")

# ---- `router dlq` and worker internals --------------------------------------------------------

DLQ_READ_FAILED: Final = _declare("dlq.read_failed", "tool", "exit 2", retryable=True,
                                  meaning="`router dlq` could not read a topic from Kafka")
DLQ_REPLAY_FAILED: Final = _declare("dlq.replay_failed", "tool", "exit 2", retryable=True,
                                    meaning="replayed records not acknowledged, or the cursor not committed",
                                    action="run again: repeats are dropped downstream")
ROUTE_BATCH_FAILED: Final = _declare("route.batch_failed", "worker", "log", retryable=True,
                                     meaning="the broker did not acknowledge a batch's outputs; the route worker "
                                             "rewinds and retries")
ROUTE_DECISIONS_DISCARDED: Final = _declare("route.decisions_discarded", "worker", "log", retryable=True,
                                            meaning="an earlier batch's decide failed, so this one is decided again "
                                                    "after it")
DELIVER_AUTH_FAILED: Final = _declare("deliver.auth_failed", "worker", "log", retryable=False,
                                      meaning="the token endpoint refused the credentials: the integration needs "
                                              "reconnecting (handled; never a dead letter)")
DELIVER_TOKEN_UNAVAILABLE: Final = _declare("deliver.token_unavailable", "worker", "log", retryable=True,
                                            meaning="the token endpoint failed in a way that passes; the request "
                                                    "is retried with a backoff (handled; never a dead letter)")

# ---- the roots' defaults ----------------------------------------------------------------------

ROUTER_ERROR: Final = _declare("router.error", "fallback", "exit 2", retryable=False,
                               meaning="`RouterError`'s default; nothing raises the root without a code today")
RECORD_ERROR: Final = _declare("record.error", "fallback", "DLQ", retryable=False,
                               meaning="`RecordError`'s default; nothing raises it without a code today")
