"""Generated mapping and Avro code can be read: `router spec show-code` prints it with the spec's file
and line of each field, and a traceback through it names the spec file and field (docs/spec.md)."""

from __future__ import annotations

import linecache
import traceback
from pathlib import Path

import pytest

from router.cli import main
from router.errors import MappingError
from router.spec.load import load_catalog
from router.spec.mapping import Meta

ROOT = Path(__file__).resolve().parents[2]
INTEGRATIONS = ROOT / "integrations"
SCHEMAS = ROOT / "schemas" / "avro"
NAME = "zendesk-escalations-to-pagerduty"
SPEC = INTEGRATIONS / f"{NAME}.yaml"
META = Meta("acme", "zendesk", "evt-1", NAME, 0)


def _line_of(key: str) -> int:
    """The line of ``key:`` under mapping.fields in the shipped spec."""
    lines = SPEC.read_text().splitlines()
    start = lines.index("  fields:")
    return next(i + 1 for i, text in enumerate(lines) if i > start and text.startswith(f"    {key}:"))


def _show(capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str, str]:
    code = main(["spec", "show-code", NAME, "--integrations", str(INTEGRATIONS), "--schemas", str(SCHEMAS), *extra])
    out, err = capsys.readouterr()
    return code, out, err


def test_show_code_prints_each_field_with_its_spec_file_and_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _show(capsys)
    assert code == 0
    assert "def build(item, root, meta" in out
    for key in ("incident_key", "title", "severity", "occurred_at", "tags"):
        assert f"# {INTEGRATIONS / NAME}.yaml:{_line_of(key)} mapping.fields.{key}" in out, key
    assert "# constants:" in out
    assert "avro writer of com.example.pagerduty.Incident" in out and "def write(r" in out


def test_show_code_without_the_avro_writer_and_for_an_unknown_name(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _show(capsys, "--no-avro")
    assert code == 0 and "def build(" in out and "def write(" not in out
    code = main(["spec", "show-code", "nope", "--integrations", str(INTEGRATIONS), "--schemas", str(SCHEMAS)])
    err = capsys.readouterr().err
    assert code == 2 and "no integration named 'nope'" in err and NAME in err


def test_a_traceback_through_a_generated_mapping_names_the_spec_file_and_field() -> None:
    integration = load_catalog(INTEGRATIONS, SCHEMAS).by_name(NAME)
    event = {"event_id": "e1", "occurred_at": 1_700_000_000_000,
             "data": {"ticket": {"id": 7, "title": ["not", "a", "string"]}}}
    with pytest.raises(MappingError) as caught:
        integration.mapper(event, META)
    generated = [frame for frame in traceback.extract_tb(caught.value.__traceback__)
                 if frame.filename.startswith("<generated mapping of Incident")]
    assert generated, traceback.format_exception(caught.value)
    frame = generated[-1]
    assert str(SPEC) in frame.filename
    assert frame.line and frame.line.startswith("raise ")
    assert f"{SPEC}:{_line_of('title')} mapping.fields.title" in frame.line


def test_the_avro_writer_is_compiled_under_the_name_show_code_prints(capsys: pytest.CaptureFixture[str]) -> None:
    integration = load_catalog(INTEGRATIONS, SCHEMAS).by_name(NAME)
    filename = integration.schema.writer.__code__.co_filename
    assert filename.startswith("<generated avro writer of com.example.pagerduty.Incident")
    assert any(line.strip().startswith("def write(r") for line in linecache.getlines(filename))
    assert f"compiled as {filename}" in _show(capsys)[1]
