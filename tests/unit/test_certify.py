"""`router spec test`: the certification checklist of each integration.

The shipped integrations must certify; a copy of one of them, broken in a known way in
``tmp_path``, must fail the check that is about that breakage and say what is wrong.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import shutil
from pathlib import Path

import pytest

from router.errors import SpecError
from router.spec.load import Catalog, load_catalog
from tools.spec.certify import CHECKS, CheckResult, certify, load_cases
from tools.spec.cli import register

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas" / "avro"
ZENDESK = "zendesk-escalations-to-pagerduty"
ZENDESK_SPEC = f"{ZENDESK}.yaml"


@pytest.fixture(scope="module")
def shipped() -> Catalog:
    return load_catalog(ROOT / "integrations", SCHEMAS)


def zendesk_copy(tmp_path: Path, spec_edit: tuple[str, str] | None = None,
                 fixture_edit: tuple[str, str, str] | None = None) -> Catalog:
    """The zendesk integration and its fixtures copied into tmp_path, with one text edit to each, then loaded."""
    folder = tmp_path / "integrations"
    folder.mkdir()
    shutil.copy(ROOT / "integrations" / ZENDESK_SPEC, folder / ZENDESK_SPEC)
    fixtures = Path("fixtures") / "zendesk-escalations"
    shutil.copytree(ROOT / "integrations" / fixtures, folder / fixtures)
    edits = ([(ZENDESK_SPEC, *spec_edit)] if spec_edit else []) + ([fixture_edit] if fixture_edit else [])
    for file, old, new in edits:
        path = folder / file
        text = path.read_text()
        assert text.count(old) == 1, f"{old!r} is not (exactly once) in {path}"
        path.write_text(text.replace(old, new))
    return load_catalog(folder, SCHEMAS)


def by_check(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {r.check: r for r in results}


@pytest.mark.parametrize("name", ["stripe-subscriptions-to-crm", "vip-cohort-to-braze", ZENDESK])
def test_the_shipped_integrations_certify(shipped: Catalog, name: str) -> None:
    results = certify(shipped.by_name(name), shipped)
    failed = [f"{r.check}: {r.detail}" for r in results if r.passed is False]
    assert failed == []
    checks = by_check(results)
    assert set(CHECKS) <= set(checks)
    assert checks["mapping fixtures"].passed is True
    assert checks["duplicate event"].passed is True
    assert checks["oversized payload"].passed is True
    assert checks["explicit cases"].passed is True


def test_zendesk_runs_every_probe(shipped: Catalog) -> None:
    checks = by_check(certify(shipped.by_name(ZENDESK), shipped))
    assert all(checks[c].passed is True for c in CHECKS), checks
    assert checks["required-field failure"].detail == "title, occurred_at"


def test_a_wrong_expected_value_fails_the_mapping_fixtures_naming_the_field(tmp_path: Path) -> None:
    catalog = zendesk_copy(tmp_path, fixture_edit=(
        "fixtures/zendesk-escalations/01-high-priority.yaml", "    severity: 1\n", "    severity: 3\n"))
    checks = by_check(certify(catalog.by_name(ZENDESK), catalog))
    mapping = checks["mapping fixtures"]
    assert mapping.passed is False
    assert mapping.detail == "a high-priority escalation pages with severity 1: severity: expected 3, got 1"
    assert all(r.passed is not False for c, r in checks.items() if c != "mapping fixtures")


def test_an_expected_error_that_does_not_happen_fails_the_explicit_cases(tmp_path: Path) -> None:
    catalog = zendesk_copy(tmp_path, fixture_edit=(
        "fixtures/zendesk-escalations/05-title-wrong-type.yaml", "{error: map.type_error}",
        "{error: map.required_missing}"))
    explicit = by_check(certify(catalog.by_name(ZENDESK), catalog))["explicit cases"]
    assert explicit.passed is False
    assert "expected dlq map.required_missing, got dlq map.type_error" in explicit.detail


def test_a_required_field_that_is_not_enforced_fails_the_probe(shipped: Catalog) -> None:
    """The spec declares requester_email required, but the mapper in use was compiled without it."""
    integration = shipped.by_name(ZENDESK)
    raw = copy.deepcopy(integration.raw)
    raw["mapping"]["fields"]["requester_email"] = {"from": "data.ticket.requester.email", "required": True}
    drifted = dataclasses.replace(integration, raw=raw)
    probe = by_check(certify(drifted, shipped))["required-field failure"]
    assert probe.passed is False
    assert probe.detail == "without data.ticket.requester.email: expected dlq map.required_missing, got routed"


def test_a_required_field_read_from_a_list_index_passes_the_probe(tmp_path: Path) -> None:
    """title is required and read from the first tag: removing it must fail the mapping (not shift the list)."""
    catalog = zendesk_copy(tmp_path, spec_edit=(
        "title: {from: data.ticket.title, required: true}", "title: {from: data.ticket.tags.0, required: true}"))
    probe = by_check(certify(catalog.by_name(ZENDESK), catalog))["required-field failure"]
    assert probe.passed is True, probe.detail


def test_certify_reports_a_required_path_the_sample_fixture_lacks(tmp_path: Path) -> None:
    """A checklist comes back (the mapping fixtures fail), never a KeyError from building the probe input."""
    catalog = zendesk_copy(tmp_path, spec_edit=(
        "requester_email: data.ticket.requester.email",
        "requester_email: {from: data.ticket.assignee.email, required: true}"))
    checks = by_check(certify(catalog.by_name(ZENDESK), catalog))
    assert checks["mapping fixtures"].passed is False
    assert "expected a record, got dlq map.required_missing" in checks["mapping fixtures"].detail


def test_no_mapping_fixture_fails_every_probe(tmp_path: Path) -> None:
    catalog = zendesk_copy(tmp_path)
    for case in (tmp_path / "integrations" / "fixtures" / "zendesk-escalations").glob("0[12]-*.yaml"):
        case.unlink()
    checks = by_check(certify(catalog.by_name(ZENDESK), catalog))
    assert checks["mapping fixtures"].passed is False
    assert checks["duplicate event"].detail == "needs at least one mapping fixture to probe"


def test_cli_spec_test(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "400")  # rich wraps at the terminal width: keep each check on one line
    parser = argparse.ArgumentParser(prog="router")
    register(parser.add_subparsers(dest="command"))

    def run(*argv: str) -> int:
        args = parser.parse_args(["spec", "test", *argv, "--schemas", str(SCHEMAS)])
        return int(args.handler(args))

    assert run(str(ROOT / "integrations")) == 0
    assert "4 integration(s): certified" in capsys.readouterr().out
    zendesk_copy(tmp_path, fixture_edit=(
        "fixtures/zendesk-escalations/01-high-priority.yaml", "    severity: 1\n", "    severity: 3\n"))
    assert run(str(tmp_path / "integrations")) == 1
    out = capsys.readouterr().out
    assert "severity: expected 3, got 1" in out
    assert "1 check(s) failed" in out


def test_a_misspelt_fixture_key_is_an_error_naming_the_allowed_keys(tmp_path: Path) -> None:
    """Issue 21, finding 3: `tennant:` was ignored and the default tenant hid the typo."""
    (tmp_path / "01.yaml").write_text("name: typo\ntennant: globex\nevent: {id: 1}\nexpect: {outcome: ignored}\n")
    with pytest.raises(SpecError) as raised:
        load_cases(tmp_path)
    assert raised.value.code == "spec.fixture"
    assert "tennant" in str(raised.value) and "tenant" in str(raised.value) and "headers" in str(raised.value)
    (tmp_path / "01.yaml").write_text("event: {id: 1}\nexpect: {outcome: maybe}\n")
    with pytest.raises(SpecError, match="ignored"):
        load_cases(tmp_path)
