"""The Confluent Schema Registry REST API (the subset ``confluent_kafka.schema_registry`` uses).

Answers use Confluent's bodies and codes: ``{"error_code": 40401, "message": ...}`` with the
HTTP status being the code's first three digits. Errors are returned, not raised; only a store
failure or an unexpected exception reaches the middleware (router/webapp.py's boundary), which
logs it and answers 50001 or 50002 (never a 500 with a stack trace).

Reads answer from the state this process has applied. A read that would answer "not found"
first catches up with the topic once (``store.sync()``), so a schema registered on another
registry process is found here as soon as that process has answered its client.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from aiohttp import web

from router import codes
from router.errors import RegistryError
from router.settings import Settings
from router.webapp import ErrorAnswers, error_middleware, json_response
from services.registry.compat import (
    AvroSchema,
    InvalidSchemaError,
    check_compatibility,
    check_pair,
    parse_avro,
    parse_compatibility,
)
from services.registry.store import (
    SCHEMA_NOT_FOUND,
    SUBJECT_NOT_FOUND,
    VERSION_NOT_FOUND,
    Refusal,
    SchemaEntry,
    SchemaStore,
    SubjectVersion,
)

logger = logging.getLogger(__name__)

STORE = web.AppKey("registry_store", SchemaStore)
CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
ACCEPTED_TYPES = frozenset({CONTENT_TYPE, "application/vnd.schemaregistry+json", "application/json"})

INVALID_SCHEMA = 42201
INVALID_VERSION = 42202
INVALID_COMPATIBILITY = 42203
SUBJECT_LEVEL_NOT_CONFIGURED = 40408
STORE_ERROR = 50001
OPERATION_TIMEOUT = 50002
MAX_VERSION = 2**31 - 1

routes = web.RouteTableDef()


def answer(body: object, status: int = 200) -> web.Response:
    """A JSON response with the Schema Registry content type."""
    return json_response(body, status, content_type=CONTENT_TYPE)


def refuse(error_code: int, message: str) -> web.Response:
    """A Confluent error body; the HTTP status is the code's first three digits."""
    status = error_code if error_code < 1000 else error_code // 100
    return answer({"error_code": error_code, "message": message}, status)


def _refusal(refusal: Refusal) -> web.Response:
    return refuse(refusal.error_code, refusal.message)


def _store_failure(request: web.Request, exc: Exception) -> web.Response:
    timeout = isinstance(exc, RegistryError) and exc.code == codes.REGISTRY_TIMEOUT
    return refuse(OPERATION_TIMEOUT if timeout else STORE_ERROR, str(exc))


# Routing errors and unexpected exceptions as Confluent error bodies (router/webapp.py's boundary).
confluent_errors = error_middleware(ErrorAnswers(
    http=lambda request, exc: refuse(exc.status, exc.reason),
    internal=lambda request, exc: refuse(STORE_ERROR, f"internal error ({type(exc).__name__}); see the registry log"),
    expected=((RegistryError, _store_failure),),
), logger)


def _flag(request: web.Request, name: str) -> bool:
    # The Python client sends Python's own spelling ("True"/"False").
    return request.query.get(name, "").lower() == "true"


def _version(raw: str) -> int | str | None:
    if raw in ("latest", "-1"):
        return "latest"
    try:
        number = int(raw)
    except ValueError:
        return None
    return number if 1 <= number <= MAX_VERSION else None


def _bad_version(raw: str) -> web.Response:
    return refuse(
        INVALID_VERSION,
        f"The specified version '{raw}' is not a valid version id. "
        'Allowed values are between [1, 2^31-1] and the string "latest"',
    )


async def _body(request: web.Request) -> dict[str, Any] | web.Response:
    if "Content-Type" in request.headers and request.content_type not in ACCEPTED_TYPES:
        return refuse(415, f"unsupported content type {request.content_type!r}; send {CONTENT_TYPE}")
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        return refuse(400, f"request body is not JSON: {exc}")
    if not isinstance(body, dict):
        return refuse(400, "request body must be a JSON object")
    return body


async def _schema(request: web.Request) -> AvroSchema | web.Response:
    body = await _body(request)
    if isinstance(body, web.Response):
        return body
    schema_type = str(body.get("schemaType") or "AVRO").upper()
    if schema_type != "AVRO":
        return refuse(INVALID_SCHEMA, f"schemaType {schema_type} is not supported; this registry serves AVRO only")
    if body.get("references"):
        return refuse(INVALID_SCHEMA, "schema references are not supported by this registry")
    text = body.get("schema")
    if not isinstance(text, str):
        return refuse(INVALID_SCHEMA, "request body needs a 'schema' field holding the schema as a string")
    try:
        return parse_avro(text)
    except InvalidSchemaError as exc:
        return refuse(INVALID_SCHEMA, exc.message)


async def _sync_unless(store: SchemaStore, present: Callable[[], bool]) -> None:
    """Catch up with the topic once before answering "not found"."""
    if not present():
        await store.sync()


def _int(raw: str) -> int | None:
    try:
        return int(raw)
    except ValueError:
        return None


@routes.get("/")
async def root(request: web.Request) -> web.Response:
    return answer({})


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """200 while the store tails its topic, 503 once it has failed."""
    store = request.app[STORE]
    status = {"topic": store.topic, "applied_offset": store.applied_offset}
    if store.failure is not None:
        return answer({**status, "status": "failed", "message": str(store.failure)}, 503)
    return answer({**status, "status": "ok"})


@routes.get("/schemas/types")
async def schema_types(request: web.Request) -> web.Response:
    return answer(["AVRO"])


@routes.get("/mode")
async def mode(request: web.Request) -> web.Response:
    return answer({"mode": "READWRITE"})


async def _entry(request: web.Request) -> SchemaEntry | web.Response:
    store, raw = request.app[STORE], request.match_info["id"]
    schema_id = _int(raw)
    if schema_id is None:
        return refuse(SCHEMA_NOT_FOUND, f"Schema {raw} not found")
    await _sync_unless(store, lambda: schema_id in store.state.schemas_by_id)
    entry = store.state.schemas_by_id.get(schema_id)
    return entry if entry is not None else refuse(SCHEMA_NOT_FOUND, f"Schema {raw} not found")


@routes.get("/schemas/ids/{id}")
async def schema_by_id(request: web.Request) -> web.Response:
    """The schema with a global id. ``?subject=`` is accepted: ids are global here."""
    entry = await _entry(request)
    return entry if isinstance(entry, web.Response) else answer({"schema": entry.text})


@routes.get("/schemas/ids/{id}/schema")
async def raw_schema_by_id(request: web.Request) -> web.Response:
    entry = await _entry(request)
    return entry if isinstance(entry, web.Response) else web.Response(text=entry.text, content_type=CONTENT_TYPE)


def _usages(request: web.Request) -> list[tuple[str, int]]:
    state = request.app[STORE].state
    schema_id = _int(request.match_info["id"])
    deleted = _flag(request, "deleted")
    return [
        (name, v.version)
        for name in sorted(state.subjects)
        for v in state.versions(name, deleted=deleted)
        if v.schema_id == schema_id
    ]


@routes.get("/schemas/ids/{id}/subjects")
async def subjects_of_id(request: web.Request) -> web.Response:
    if _int(request.match_info["id"]) not in request.app[STORE].state.schemas_by_id:
        return refuse(SCHEMA_NOT_FOUND, f"Schema {request.match_info['id']} not found")
    return answer(sorted({name for name, _ in _usages(request)}))


@routes.get("/schemas/ids/{id}/versions")
async def versions_of_id(request: web.Request) -> web.Response:
    if _int(request.match_info["id"]) not in request.app[STORE].state.schemas_by_id:
        return refuse(SCHEMA_NOT_FOUND, f"Schema {request.match_info['id']} not found")
    return answer([{"subject": name, "version": version} for name, version in _usages(request)])


@routes.get("/subjects")
async def subjects(request: web.Request) -> web.Response:
    state = request.app[STORE].state
    names = state.subject_names(deleted=_flag(request, "deleted") or _flag(request, "deleted_only"))
    if _flag(request, "deleted_only"):
        names = [name for name in names if not state.versions(name)]
    prefix = request.query.get("subjectPrefix", "")
    names = [name for name in names if name.startswith(prefix)]
    offset, limit = _int(request.query.get("offset", "0")) or 0, _int(request.query.get("limit", "-1")) or -1
    return answer(names[offset:] if limit < 0 else names[offset : offset + limit])


@routes.get("/subjects/{subject}/versions")
async def subject_versions(request: web.Request) -> web.Response:
    store, subject, deleted = request.app[STORE], request.match_info["subject"], _flag(request, "deleted")
    await _sync_unless(store, lambda: bool(store.state.versions(subject, deleted=deleted)))
    versions = store.state.versions(subject, deleted=deleted)
    if not versions:
        return refuse(SUBJECT_NOT_FOUND, f"Subject '{subject}' not found.")
    return answer([v.version for v in versions])


@routes.post("/subjects/{subject}/versions")
async def register(request: web.Request) -> web.Response:
    """Register a schema; the same schema again answers the same id without a new version."""
    subject = request.match_info["subject"]
    schema = await _schema(request)
    if isinstance(schema, web.Response):
        return schema
    outcome = await request.app[STORE].register(subject, schema)
    if isinstance(outcome, Refusal):
        return _refusal(outcome)
    return answer({"id": outcome.schema_id, "subject": subject, "version": outcome.version})


async def _subject_version(request: web.Request, *, deleted: bool) -> SubjectVersion | web.Response:
    store, subject, raw = request.app[STORE], request.match_info["subject"], request.match_info["version"]
    version = _version(raw)
    if version is None:
        return _bad_version(raw)
    await _sync_unless(store, lambda: store.state.version(subject, version, deleted=deleted) is not None)
    found = store.state.version(subject, version, deleted=deleted)
    if found is not None:
        return found
    if not store.state.versions(subject, deleted=deleted):
        return refuse(SUBJECT_NOT_FOUND, f"Subject '{subject}' not found.")
    return refuse(VERSION_NOT_FOUND, f"Version {raw} not found.")


@routes.get("/subjects/{subject}/versions/{version}")
async def subject_version(request: web.Request) -> web.Response:
    found = await _subject_version(request, deleted=_flag(request, "deleted"))
    if isinstance(found, web.Response):
        return found
    text = request.app[STORE].state.schemas_by_id[found.schema_id].text
    subject = request.match_info["subject"]
    return answer({"subject": subject, "version": found.version, "id": found.schema_id, "schema": text})


@routes.get("/subjects/{subject}/versions/{version}/schema")
async def subject_version_schema(request: web.Request) -> web.Response:
    found = await _subject_version(request, deleted=_flag(request, "deleted"))
    if isinstance(found, web.Response):
        return found
    return web.Response(text=request.app[STORE].state.schemas_by_id[found.schema_id].text, content_type=CONTENT_TYPE)


@routes.delete("/subjects/{subject}/versions/{version}")
async def delete_version(request: web.Request) -> web.Response:
    subject, raw = request.match_info["subject"], request.match_info["version"]
    version = _version(raw)
    if version is None:
        return _bad_version(raw)
    outcome = await request.app[STORE].delete(subject, version, permanent=_flag(request, "permanent"))
    if isinstance(outcome, Refusal):
        return _refusal(outcome)
    if not outcome.versions:
        return refuse(VERSION_NOT_FOUND, f"Version {raw} not found.")
    return answer(outcome.versions[0])


@routes.post("/subjects/{subject}")
async def lookup(request: web.Request) -> web.Response:
    """Where a schema is registered under a subject: 40401 unknown subject, 40403 not there."""
    store, subject, deleted = request.app[STORE], request.match_info["subject"], _flag(request, "deleted")
    schema = await _schema(request)
    if isinstance(schema, web.Response):
        return schema
    await _sync_unless(store, lambda: store.state.find(subject, schema.fingerprint, deleted=deleted) is not None)
    found = store.state.find(subject, schema.fingerprint, deleted=deleted)
    if found is None:
        if not store.state.versions(subject, deleted=deleted):
            return refuse(SUBJECT_NOT_FOUND, f"Subject '{subject}' not found.")
        return refuse(SCHEMA_NOT_FOUND, "Schema not found")
    text = store.state.schemas_by_id[found.schema_id].text
    return answer({"subject": subject, "version": found.version, "id": found.schema_id, "schema": text})


@routes.delete("/subjects/{subject}")
async def delete_subject(request: web.Request) -> web.Response:
    """Soft delete (or, with ``?permanent=true``, purge) a subject; answers the versions."""
    subject = request.match_info["subject"]
    outcome = await request.app[STORE].delete(subject, None, permanent=_flag(request, "permanent"))
    if isinstance(outcome, Refusal):
        return _refusal(outcome)
    return answer(outcome.versions)


def _compatibility_answer(request: web.Request, messages: list[str]) -> web.Response:
    body: dict[str, object] = {"is_compatible": not messages}
    if _flag(request, "verbose"):
        body["messages"] = messages
    return answer(body)


@routes.post("/compatibility/subjects/{subject}/versions/{version}")
async def test_against_version(request: web.Request) -> web.Response:
    """Would the schema pass the subject's level against this one version?"""
    store, subject, raw = request.app[STORE], request.match_info["subject"], request.match_info["version"]
    if _version(raw) is None:
        return _bad_version(raw)
    schema = await _schema(request)
    if isinstance(schema, web.Response):
        return schema
    found = await _subject_version(request, deleted=False)
    if isinstance(found, web.Response):
        return found
    old = store.state.parsed(found.fingerprint)
    return _compatibility_answer(
        request, check_pair(store.state.level(subject), schema, old, old_version=found.version)
    )


@routes.post("/compatibility/subjects/{subject}/versions")
async def test_against_all(request: web.Request) -> web.Response:
    """Would the schema pass the subject's level against the versions the level names?"""
    store, subject = request.app[STORE], request.match_info["subject"]
    schema = await _schema(request)
    if isinstance(schema, web.Response):
        return schema
    await _sync_unless(store, lambda: bool(store.state.versions(subject)))
    result = check_compatibility(store.state.level(subject), schema, store.state.history(subject))
    return _compatibility_answer(request, list(result.messages))


async def _set_level(request: web.Request) -> str | web.Response:
    body = await _body(request)
    if isinstance(body, web.Response):
        return body
    level = parse_compatibility(body.get("compatibility"))
    if level is None:
        return refuse(
            INVALID_COMPATIBILITY,
            f"Invalid compatibility level {body.get('compatibility')!r}. Valid values are none, backward, "
            "forward, full, backward_transitive, forward_transitive, and full_transitive",
        )
    await request.app[STORE].set_compatibility(request.match_info.get("subject"), level)
    return level.value


@routes.get("/config")
async def get_global_config(request: web.Request) -> web.Response:
    return answer({"compatibilityLevel": request.app[STORE].state.global_level.value})


@routes.put("/config")
@routes.put("/config/{subject}")
async def put_config(request: web.Request) -> web.Response:
    """Set the global or a subject's level: ``{"compatibility": "FULL"}``."""
    level = await _set_level(request)
    return level if isinstance(level, web.Response) else answer({"compatibility": level})


@routes.delete("/config")
async def delete_global_config(request: web.Request) -> web.Response:
    """Reset the global level to the default (BACKWARD); answers the old one."""
    store = request.app[STORE]
    old = store.state.global_level
    await store.set_compatibility(None, None)
    return answer({"compatibilityLevel": old.value})


@routes.get("/config/{subject}")
async def get_subject_config(request: web.Request) -> web.Response:
    """A subject's own level; with ``?defaultToGlobal=true`` the global one when it has none."""
    store, subject = request.app[STORE], request.match_info["subject"]
    await _sync_unless(store, lambda: subject in store.state.subject_levels)
    level = store.state.subject_levels.get(subject)
    if level is None and _flag(request, "defaultToGlobal"):
        level = store.state.global_level
    if level is None:
        return refuse(
            SUBJECT_LEVEL_NOT_CONFIGURED, f"Subject '{subject}' does not have subject-level compatibility configured"
        )
    return answer({"compatibilityLevel": level.value})


@routes.delete("/config/{subject}")
async def delete_subject_config(request: web.Request) -> web.Response:
    """Drop a subject's own level (it follows the global one again); answers the old one."""
    store, subject = request.app[STORE], request.match_info["subject"]
    await _sync_unless(store, lambda: subject in store.state.subject_levels)
    old = store.state.subject_levels.get(subject)
    if old is None:
        return refuse(
            SUBJECT_LEVEL_NOT_CONFIGURED, f"Subject '{subject}' does not have subject-level compatibility configured"
        )
    await store.set_compatibility(subject, None)
    return answer({"compatibilityLevel": old.value})


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    store = app[STORE]
    await store.start()  # reads the topic to the end before the first request is served
    yield
    await store.stop()  # stops tailing and flushes the producer


def create_app(settings: Settings, *, topic: str = "_schemas", connect_deadline_s: float = 15.0) -> web.Application:
    """The registry application storing its state in ``topic`` on the configured Kafka."""
    app = web.Application(middlewares=[confluent_errors])
    app[STORE] = SchemaStore(settings, topic, connect_deadline_s=connect_deadline_s)
    app.cleanup_ctx.append(_store_ctx)
    app.add_routes(routes)
    return app
