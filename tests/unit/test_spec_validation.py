"""Loading integration specs: every kind of bad spec is reported with its code, line and YAML path.

Each test writes a small spec into ``tmp_path`` (next to a copy of the shipped Avro schemas) and
loads the folder the way ``router spec validate`` does. ``VALID`` is a minimal working spec; the
bad specs are ``VALID`` with one line changed, so every expected line number can be read off it.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest

from router.errors import MappingError, SpecError
from router.spec.load import SpecErrors, load_catalog
from router.spec.mapping import Meta
from router.spec.yamlsrc import format_path, load_yaml

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_INTEGRATIONS = ROOT / "integrations"
SHIPPED_SCHEMAS = ROOT / "schemas" / "avro"
SHIPPED_NAMES = {"github-issues-to-jira", "stripe-subscriptions-to-crm", "vip-cohort-to-braze",
                 "zendesk-escalations-to-pagerduty"}

VALID = """\
name: demo
version: 1
source:
  topic: ingest.demo
  event_id: id
mapping:
  schema: com.example.pagerduty.Incident
  fields:
    incident_key: {from: id, required: true}
    title: {from: title, required: true}
    severity: {from: sev, default: 2}
    occurred_at: {from: at, as: timestamp_ms, required: true}
destination:
  name: pd
"""
#  line 4: topic   line 5: event_id   line 7: schema   line 8: fields
#  line 10: title  line 11: severity  line 12: occurred_at   line 14: destination.name

ALLOWED_SOURCE_KEYS = "entity_key, event_id, format, max_bytes, tenants, topic, type, types, version"


def edit(old: str, new: str, text: str = VALID) -> str:
    """``text`` with ``old`` replaced; fails loudly if ``old`` is not there (so no test checks VALID by accident)."""
    assert text.count(old) == 1, f"{old!r} is not (exactly once) in the spec"
    return text.replace(old, new)


@pytest.fixture
def schemas(tmp_path: Path) -> Path:
    """A private copy of the shipped schema folder (tests may add broken .avsc files to it)."""
    folder = tmp_path / "schemas"
    shutil.copytree(SHIPPED_SCHEMAS, folder)
    return folder


@pytest.fixture
def specs(tmp_path: Path) -> Path:
    folder = tmp_path / "integrations"
    folder.mkdir()
    return folder


def errors_of(specs: Path, schemas: Path) -> list[SpecError]:
    with pytest.raises(SpecErrors) as caught:
        load_catalog(specs, schemas)
    return caught.value.errors


def only_error(specs: Path, schemas: Path) -> SpecError:
    errors = errors_of(specs, schemas)
    assert len(errors) == 1, "\n".join(map(str, errors))
    return errors[0]


def assert_located(error: SpecError, file: Path, line: int, path: str, code: str) -> None:
    """The error names the file, line and YAML path, in its fields and in the message a person reads."""
    assert (error.code, error.file, error.line, error.path) == (code, str(file), line, path), str(error)
    assert str(error).startswith(f"{file}:{line}: {path}: " if path else f"{file}:{line}: ")


# ---- the baseline -------------------------------------------------------------------------------


def test_the_minimal_spec_loads(specs: Path, schemas: Path) -> None:
    (specs / "demo.yaml").write_text(VALID)
    catalog = load_catalog(specs, schemas)
    assert [i.name for i in catalog.integrations] == ["demo"]
    assert catalog.integrations[0].destination.topic == "delivery.pd"


def test_the_shipped_integrations_load() -> None:
    catalog = load_catalog(SHIPPED_INTEGRATIONS, SHIPPED_SCHEMAS)
    assert {i.name for i in catalog.integrations} == SHIPPED_NAMES
    assert catalog.source_topics() == ["cohort.vip-users", "ingest.github", "ingest.stripe", "ingest.zendesk"]
    assert catalog.delivery_topics() == ["delivery.braze", "delivery.crm", "delivery.jira", "delivery.pagerduty"]


# ---- YAML ---------------------------------------------------------------------------------------


def test_malformed_yaml_names_the_line_of_the_syntax_error(specs: Path, schemas: Path) -> None:
    file = specs / "demo.yaml"
    file.write_text(edit("  event_id: id\n", "  event_id: id: x\n"))
    error = only_error(specs, schemas)
    assert_located(error, file, 5, "", "spec.yaml")
    assert "YAML syntax error" in error.message


def test_duplicate_key_names_both_lines(specs: Path, schemas: Path) -> None:
    file = specs / "demo.yaml"
    file.write_text(edit("  event_id: id\n", "  event_id: id\n  topic: ingest.other\n"))
    error = only_error(specs, schemas)
    assert_located(error, file, 6, "source.topic", "spec.yaml")
    assert "duplicate key 'topic'" in error.message
    assert "first written on line 4" in error.message


@pytest.mark.parametrize(
    ("old", "new", "line"),
    [
        ("version: 1\n", "version: !!int one\n", 2),  # an explicit tag the value does not fit
        ("  name: pd\n", "  <<: {name: pd}\n", 14),  # a YAML merge key, which SafeLoader cannot compose here
    ],
    ids=["bad-tag", "merge-key"],
)
def test_yaml_that_cannot_be_constructed_is_a_located_spec_error(
    specs: Path, schemas: Path, old: str, new: str, line: int
) -> None:
    """Anything wrong with the YAML itself is a SpecError with its line, never a raw PyYAML/ValueError crash."""
    file = specs / "demo.yaml"
    file.write_text(edit(old, new))
    error = only_error(specs, schemas)
    assert error.code.startswith("spec.")
    assert (error.file, error.line) == (str(file), line)


def test_empty_file_is_reported(specs: Path, schemas: Path) -> None:
    file = specs / "demo.yaml"
    file.write_text("# nothing yet\n")
    error = only_error(specs, schemas)
    assert (error.code, error.file) == ("spec.yaml", str(file))
    assert "empty" in error.message


def test_load_yaml_records_the_line_of_every_path() -> None:
    doc = load_yaml(VALID, "demo.yaml")
    assert doc.line(("source", "event_id")) == 5
    assert doc.line(("mapping", "fields", "title")) == 10
    assert doc.line(("mapping", "fields", "title", "required")) == 10
    assert doc.line(("destination", "name")) == 14
    assert doc.line(("mapping", "fields", "nope", "deeper")) == 8  # nearest written parent
    error = doc.error(("mapping", "fields", "title"), "bad title", code="spec.mapping")
    assert str(error) == "demo.yaml:10: mapping.fields.title: bad title"


def test_load_yaml_keeps_iso_times_as_text() -> None:
    doc = load_yaml("at: 2026-11-20T10:15:00Z\nday: 2026-11-20\n", "x.yaml")
    assert doc.value == {"at": "2026-11-20T10:15:00Z", "day": "2026-11-20"}


def test_format_path_writes_list_indexes_in_brackets() -> None:
    assert format_path(("mapping", "fields", "x", "cond", 0, "then")) == "mapping.fields.x.cond[0].then"
    assert format_path(()) == "(top level)"


# ---- JSON Schema problems -----------------------------------------------------------------------


def test_unknown_key_is_named_with_the_allowed_keys(specs: Path, schemas: Path) -> None:
    file = specs / "demo.yaml"
    file.write_text(edit("  event_id: id\n", "  event_id: id\n  colour: red\n"))
    error = only_error(specs, schemas)
    assert_located(error, file, 6, "source.colour", "spec.unknown_key")
    assert error.message == f"unknown key 'colour'; allowed here: {ALLOWED_SOURCE_KEYS}"


def test_unknown_key_inside_a_field_expression(specs: Path, schemas: Path) -> None:
    file = specs / "demo.yaml"
    file.write_text(edit("title: {from: title, required: true}", "title: {from: title, requird: true}"))
    error = only_error(specs, schemas)
    assert_located(error, file, 10, "mapping.fields.title.requird", "spec.unknown_key")
    assert "allowed here: as, coalesce, cond, const, default" in error.message


def test_x_prefixed_keys_are_free_notes(specs: Path, schemas: Path) -> None:
    (specs / "demo.yaml").write_text(VALID + "x-owner: team-integrations\n")
    assert [i.name for i in load_catalog(specs, schemas).integrations] == ["demo"]


@pytest.mark.parametrize(
    ("old", "new", "line", "path", "shown"),
    [
        ("version: 1\n", "version: one\n", 2, "version", "expected integer, got str 'one'"),
        ("  name: pd\n", "  name: 5\n", 14, "destination.name", "expected string, got int 5"),
    ],
)
def test_wrong_type(specs: Path, schemas: Path, old: str, new: str, line: int, path: str, shown: str) -> None:
    file = specs / "demo.yaml"
    file.write_text(edit(old, new))
    error = only_error(specs, schemas)
    assert_located(error, file, line, path, "spec.wrong_type")
    assert error.message == shown


def test_bad_enum_value_lists_the_choices(specs: Path, schemas: Path) -> None:
    file = specs / "demo.yaml"
    file.write_text(edit("as: timestamp_ms", "as: integer"))
    error = only_error(specs, schemas)
    assert_located(error, file, 12, "mapping.fields.occurred_at.as", "spec.invalid_value")
    assert error.message == ("'integer' is not one of: string, int, long, float, double, boolean, "
                             "timestamp_ms, iso8601, decimal")


@pytest.mark.parametrize(
    ("old", "line", "path", "key"),
    [
        ("destination:\n  name: pd\n", 1, "(top level)", "'destination'"),
        ("  event_id: id\n", 3, "source", "'event_id'"),
    ],
)
def test_missing_required_key(specs: Path, schemas: Path, old: str, line: int, path: str, key: str) -> None:
    file = specs / "demo.yaml"
    file.write_text(edit(old, ""))
    error = only_error(specs, schemas)
    assert_located(error, file, line, path, "spec.missing_key")
    assert error.message == f"missing required key: {key}"


# ---- Avro schemas -------------------------------------------------------------------------------


def test_unknown_avro_schema_lists_the_known_ones(specs: Path, schemas: Path) -> None:
    file = specs / "demo.yaml"
    file.write_text(edit("com.example.pagerduty.Incident", "com.example.pagerduty.Incidnt"))
    error = only_error(specs, schemas)
    assert_located(error, file, 7, "mapping.schema", "spec.unknown_schema")
    assert "com.example.pagerduty.Incidnt.avsc" in error.message
    assert "known: com.example.braze.CohortImport, com.example.crm.AccountUpdate" in error.message


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ('{"type": "record", "name": "Broken", "namespace": "com.example",', "spec.avro_invalid"),  # not JSON
        ('{"type": "record", "name": "Broken", "namespace": "com.example", '
         '"fields": [{"name": "a", "type": "strng"}]}', "spec.avro_invalid"),  # unknown Avro type
        ('{"type": "enum", "name": "Broken", "namespace": "com.example", "symbols": ["A"]}',
         "spec.avro_invalid"),  # not a record
        ('{"type": "record", "name": "Other", "namespace": "com.example", "fields": []}',
         "spec.avro_name"),  # file name is not the full name
    ],
    ids=["not-json", "bad-type", "not-a-record", "misnamed"],
)
def test_invalid_avsc_file_is_named(specs: Path, schemas: Path, text: str, code: str) -> None:
    (specs / "demo.yaml").write_text(VALID)
    broken = schemas / "com.example.Broken.avsc"
    broken.write_text(text)
    with pytest.raises(SpecError) as caught:
        load_catalog(specs, schemas)
    assert (caught.value.code, caught.value.file) == (code, str(broken))
    assert str(caught.value).startswith(f"{broken}: ")


# ---- the mapping against the Avro record --------------------------------------------------------


def test_mapped_field_not_in_the_avro_record(specs: Path, schemas: Path) -> None:
    file = specs / "demo.yaml"
    file.write_text(edit("    severity:", "    colour: {from: c}\n    severity:"))
    error = only_error(specs, schemas)
    assert_located(error, file, 11, "mapping.fields.colour", "spec.mapping")
    assert error.message.startswith("the Avro record Incident has no field 'colour' (it has: incident_key, title")


def test_avro_field_without_default_left_unmapped(specs: Path, schemas: Path) -> None:
    file = specs / "demo.yaml"
    file.write_text(edit("    title: {from: title, required: true}\n", ""))
    error = only_error(specs, schemas)
    assert_located(error, file, 8, "mapping.fields", "spec.mapping")
    assert "Avro field 'title' of Incident has no default and is not mapped" in error.message


def test_a_non_nullable_field_without_default_is_required_without_saying_so(specs: Path, schemas: Path) -> None:
    """The Avro schema already says it (issue 21, finding 4): `required: true` is inferred, and a
    missing value names the input path it read."""
    (specs / "demo.yaml").write_text(edit("title: {from: title, required: true}", "title: {from: title}"))
    [integration] = load_catalog(specs, schemas).integrations
    meta = Meta(tenant="acme", source="demo", event_id="e1", integration="demo", received_at=1)
    with pytest.raises(MappingError) as missing:
        integration.mapper({"id": "e1", "at": "2026-11-20T10:15:00Z"}, meta)
    assert missing.value.code == "map.required_missing"
    assert "field 'title' (from title)" in str(missing.value)


def test_field_that_may_be_missing_is_fine_when_nullable_or_defaulted(specs: Path, schemas: Path) -> None:
    # requester_email is ["null", "string"]; source has an Avro default.
    extra = "    requester_email: email\n    source: src\n"
    (specs / "demo.yaml").write_text(edit("    severity:", extra + "    severity:"))
    assert [i.name for i in load_catalog(specs, schemas).integrations] == ["demo"]


@pytest.mark.parametrize(
    ("expression", "path"),
    [
        ("{const: high}", "mapping.fields.severity.const"),
        ("{from: sev, default: two}", "mapping.fields.severity.default"),
        ("{from: sev, map: {low: three}, default: 2}", "mapping.fields.severity.map.low"),
    ],
    ids=["const", "default", "map-value"],
)
def test_literal_that_does_not_fit_the_avro_type(specs: Path, schemas: Path, expression: str, path: str) -> None:
    file = specs / "demo.yaml"
    file.write_text(edit("{from: sev, default: 2}", expression))
    error = only_error(specs, schemas)
    assert_located(error, file, 11, path, "spec.mapping")
    assert "does not fit the Avro type int" in error.message


@pytest.mark.parametrize("expression", ["{const: null}", "{from: sev, default: null}"], ids=["const", "default"])
def test_null_literal_for_a_non_nullable_field_is_rejected(specs: Path, schemas: Path, expression: str) -> None:
    """severity is a plain Avro int: a null constant or default can only produce a record that cannot be encoded."""
    file = specs / "demo.yaml"
    file.write_text(edit("{from: sev, default: 2}", expression))
    error = only_error(specs, schemas)
    assert (error.code, error.file, error.line) == ("spec.mapping", str(file), 11)
    assert error.path.startswith("mapping.fields.severity")


def test_required_and_default_together(specs: Path, schemas: Path) -> None:
    file = specs / "demo.yaml"
    file.write_text(edit("{from: sev, default: 2}", "{from: sev, default: 2, required: true}"))
    error = only_error(specs, schemas)
    assert_located(error, file, 11, "mapping.fields.severity", "spec.mapping")
    assert error.message == "a field cannot be both required and have a default: drop one"


def test_two_source_kinds_in_one_field(specs: Path, schemas: Path) -> None:
    file = specs / "demo.yaml"
    file.write_text(edit("title: {from: title, required: true}", "title: {from: title, const: x, required: true}"))
    error = only_error(specs, schemas)
    assert_located(error, file, 10, "mapping.fields.title", "spec.mapping")
    assert "(found: from, const)" in error.message


def test_missing_fixtures_folder(specs: Path, schemas: Path) -> None:
    file = specs / "demo.yaml"
    file.write_text(VALID + "fixtures: fixtures/demo/\n")
    error = only_error(specs, schemas)
    assert (error.file, error.line, error.path) == (str(file), 15, "fixtures")
    assert "fixtures folder fixtures/demo/ does not exist next to demo.yaml" in error.message


# ---- across files -------------------------------------------------------------------------------


def test_duplicate_integration_names_across_two_files(specs: Path, schemas: Path) -> None:
    first, second = specs / "a.yaml", specs / "b.yaml"
    first.write_text(VALID)
    second.write_text(edit("version: 1\n", "version: 2\n"))
    error = only_error(specs, schemas)
    assert_located(error, second, 1, "name", "spec.duplicate_name")
    assert f"duplicate integration name 'demo' (also in {first})" in error.message


def test_every_problem_in_every_file_is_reported_in_one_load(specs: Path, schemas: Path) -> None:
    (specs / "a-unknown-key.yaml").write_text(edit("name: demo\n", "name: a\ncolor: red\n"))
    (specs / "b-syntax.yml").write_text(edit("  event_id: id\n", "  event_id: id: x\n"))
    (specs / "c-mapping.yaml").write_text(
        edit("name: demo\n", "name: c\n",
             edit("severity: {from: sev, default: 2}", "severity: {from: sev, default: high}"))
        .replace("    severity:", "    colour: c\n    severity:")
    )
    (specs / "d-schema.yaml").write_text(edit("name: demo\n", "name: d\n",
                                              edit("pagerduty.Incident", "pagerduty.Nope")))
    (specs / "e-fine.yaml").write_text(edit("name: demo\n", "name: e\n"))
    found = sorted((Path(e.file).name, e.line, e.path, e.code) for e in errors_of(specs, schemas))
    assert found == [
        ("a-unknown-key.yaml", 2, "color", "spec.unknown_key"),
        ("b-syntax.yml", 5, "", "spec.yaml"),
        ("c-mapping.yaml", 11, "mapping.fields.colour", "spec.mapping"),
        ("c-mapping.yaml", 12, "mapping.fields.severity.default", "spec.mapping"),
        ("d-schema.yaml", 7, "mapping.schema", "spec.unknown_schema"),
    ]


def test_missing_folders_are_named(tmp_path: Path, schemas: Path) -> None:
    with pytest.raises(SpecError, match="pass --integrations DIR"):
        load_catalog(tmp_path / "nope", schemas)
    (tmp_path / "specs").mkdir()
    with pytest.raises(SpecError, match="pass --schemas DIR"):
        load_catalog(tmp_path / "specs", tmp_path / "no-schemas")


# ---- `router spec validate` ---------------------------------------------------------------------


def run_router(argv: Sequence[str]) -> int:
    """``router <argv>`` through the real CLI (its parser, its handlers)."""
    from router.cli import main

    return main(list(argv))


def test_cli_validate_accepts_the_shipped_integrations(capsys: pytest.CaptureFixture[str]) -> None:
    code = run_router(["spec", "validate", "--integrations", str(SHIPPED_INTEGRATIONS),
                       "--schemas", str(SHIPPED_SCHEMAS)])
    out = capsys.readouterr().out
    assert code == 0
    assert "4 integration(s) valid" in out
    for name in SHIPPED_NAMES:
        assert name in out


def test_cli_validate_rejects_a_bad_folder(specs: Path, schemas: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = specs / "demo.yaml"
    file.write_text(edit("as: timestamp_ms", "as: integer"))
    code = run_router(["spec", "validate", str(specs), "--schemas", str(schemas)])
    err = capsys.readouterr().err
    assert code == 2
    assert f"{file}:12: mapping.fields.occurred_at.as: 'integer' is not one of" in err
    assert "[spec.invalid_value]" in err
    assert f"1 problem(s) in {specs}" in err


def test_cli_validate_rejects_a_missing_schema_folder(specs: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    (specs / "demo.yaml").write_text(VALID)
    assert run_router(["spec", "validate", "--integrations", str(specs), "--schemas", str(tmp_path / "nope")]) == 2
    assert "pass --schemas DIR" in capsys.readouterr().err


def test_the_json_schema_copy_in_docs_is_current() -> None:
    import json
    from pathlib import Path

    from router.spec.load import json_schema

    docs = Path(__file__).resolve().parents[2] / "docs" / "integration.schema.json"
    assert json.loads(docs.read_text()) == json_schema(), "run: router spec schema > docs/integration.schema.json"


# ---- destination auth: each type's keys, secrets by reference ----------------------------------


def test_auth_keys_are_checked_per_type_and_named_with_their_path(specs: Path, schemas: Path) -> None:
    text = VALID + "  http:\n    url: http://127.0.0.1:9/x\n    auth: {type: basic, user: 'env:U', password: 'env:P'}\n"
    (specs / "a.yaml").write_text(text)
    messages = " | ".join(f"{e.path}: {e}" for e in errors_of(specs, schemas))
    assert "destination.http.auth" in messages and "username" in messages and "user" in messages, messages


def test_a_secret_written_in_the_spec_is_refused_without_being_shown(specs: Path, schemas: Path) -> None:
    text = VALID + ("  http:\n    url: http://127.0.0.1:9/x\n"
                    "    auth: {type: basic, username: jira-bot, password: hunter2}\n")
    (specs / "a.yaml").write_text(text)
    error = only_error(specs, schemas)
    assert error.code == "spec.plain_secret"
    assert error.path == "destination.http.auth.password"
    assert "env:NAME" in str(error) and "hunter2" not in str(error)


def test_a_malformed_duration_says_the_form_with_examples(specs: Path, schemas: Path) -> None:
    (specs / "demo.yaml").write_text(VALID.replace("destination:\n", "dedupe: {ttl: 1 hour}\ndestination:\n"))
    error = only_error(specs, schemas)
    assert error.path == "dedupe.ttl"
    assert "500ms, 10s, 5m, 24h or 7d" in str(error), str(error)


def test_router_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        run_router(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith("router 0.")
