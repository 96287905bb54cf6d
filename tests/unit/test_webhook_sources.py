"""Loading ``sources/``: the shipped specs, defaults, and each bad spec reported with line, path and code."""

from __future__ import annotations

from pathlib import Path

import pytest

from producers.webhooks.devsecrets import check_dev_secrets
from router.devsecrets import DEV_SECRETS
from router.errors import ConfigError, SpecError
from router.spec.load import SpecErrors
from router.spec.sources import WebhookSource, decode_standard_webhooks_secret, load_sources

ROOT = Path(__file__).resolve().parents[2]

VALID = """\
name: demo
signature:
  scheme: standard_webhooks
  secrets: ["env:DEMO_SECRET"]
event_id: event_id
entity_key: data.ticket.id
"""
ENV = {"DEMO_SECRET": "whsec_c2VjcmV0LWZvci10ZXN0cw=="}


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None, stem: str = "demo") -> dict[str, WebhookSource]:
    (tmp_path / f"{stem}.yaml").write_text(text)
    return load_sources(tmp_path, ENV if env is None else env)


def errors_of(tmp_path: Path, text: str, env: dict[str, str] | None = None, stem: str = "demo") -> list[SpecError]:
    with pytest.raises(SpecErrors) as info:
        load(tmp_path, text, env, stem)
    return info.value.errors


def test_shipped_sources_load_with_the_dev_secrets() -> None:
    sources = load_sources(ROOT / "sources", DEV_SECRETS)
    assert set(sources) == {"github", "zendesk", "stripe"}
    github = sources["github"]
    assert (github.scheme, github.topic, github.delivery_id_header) == ("github", "ingest.github", "x-github-delivery")
    assert github.keys == (DEV_SECRETS["GITHUB_WEBHOOK_SECRET"].encode(),)
    zendesk, stripe = sources["zendesk"], sources["stripe"]
    assert (zendesk.scheme, zendesk.topic, zendesk.event_id_header) == ("standard_webhooks", "ingest.zendesk",
                                                                       "webhook-id")
    assert zendesk.keys == (decode_standard_webhooks_secret(DEV_SECRETS["ZENDESK_WEBHOOK_SECRET"]),)
    assert stripe.keys == (DEV_SECRETS["STRIPE_WEBHOOK_SECRET"].encode(),)  # Stripe secrets are used as is
    assert stripe.get_event_id is not None and stripe.get_event_id({"id": "evt_1"}) == "evt_1"
    assert "whsec" not in repr(zendesk) and "whsec" not in repr(stripe)  # keys never print
    with pytest.raises(ConfigError, match="published secret"):
        check_dev_secrets(sources, allowed=False)
    assert check_dev_secrets(sources, allowed=True) == ["github", "stripe", "zendesk"]


def test_defaults(tmp_path: Path) -> None:
    source = load(tmp_path, VALID)["demo"]
    assert source.tenants is None and source.allows_tenant("anyone")
    assert source.max_bytes == 1024 * 1024 and source.content_types == {"application/json"}
    assert source.tolerance_s == 300 and source.event_id_header == "webhook-id"


def test_rotation_in_the_environment_and_files(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "github.txt").write_text("first second\n")
    text = ("name: gh\nsignature: {scheme: github, secrets: ['file:keys/github.txt', 'env:GH']}\n"
            "event_id_header: X-GitHub-Delivery\ntenants: [acme]\n")
    source = load(tmp_path, text, {"GH": "third"}, stem="gh")["gh"]
    assert source.keys == (b"first", b"second", b"third")
    # github signs no id: its delivery header is the delivery id, not the event id (that is the body's digest).
    assert source.event_id_header is None and source.get_event_id is None
    assert source.delivery_id_header == "x-github-delivery" and source.digest_event_id
    assert source.allows_tenant("acme") and not source.allows_tenant("other")


def test_github_needs_no_event_id_and_others_keep_theirs(tmp_path: Path) -> None:
    source = load(tmp_path, "name: gh\nsignature: {scheme: github, secrets: ['env:GH']}\n", {"GH": "k"}, "gh")["gh"]
    assert source.digest_event_id and source.delivery_id_header is None and source.event_id_header is None
    stripe = load(tmp_path, "name: st\nsignature: {scheme: stripe, secrets: ['env:S']}\nevent_id_header: X-Id\n",
                  {"S": "k", "GH": "k"}, "st")["st"]
    assert not stripe.digest_event_id and stripe.event_id_header == "x-id" and stripe.delivery_id_header is None


def test_max_depth_default_and_per_source(tmp_path: Path) -> None:
    assert load(tmp_path, VALID)["demo"].max_depth == 64
    assert load(tmp_path, VALID + "max_depth: 8\n")["demo"].max_depth == 8
    for bad, code in (("0", "spec.invalid_value"), ("1025", "spec.invalid_value"), ("deep", "spec.wrong_type")):
        errors = errors_of(tmp_path, VALID + f"max_depth: {bad}\n")
        assert [(e.line, e.path, e.code) for e in errors] == [(7, "max_depth", code)], bad


def test_tenants_in_a_spec_must_be_tenant_names(tmp_path: Path) -> None:
    assert load(tmp_path, VALID + "tenants: [acme, t_1, globex-eu]\n")["demo"].tenants == {"acme", "t_1", "globex-eu"}
    errors = errors_of(tmp_path, VALID + "tenants: [acme, Acme, '../x']\n")
    assert [(e.line, e.path, e.code) for e in errors] == [
        (7, "tenants[1]", "spec.invalid_value"), (7, "tenants[2]", "spec.invalid_value")]


def test_missing_env_var_and_file_are_named_with_line(tmp_path: Path) -> None:
    text = VALID.replace('["env:DEMO_SECRET"]', '["env:DEMO_SECRET", "file:/nonexistent/secret"]')
    errors = errors_of(tmp_path, text, env={})
    assert [(e.line, e.path, e.code) for e in errors] == [
        (4, "signature.secrets[0]", "spec.missing_secret"), (4, "signature.secrets[1]", "spec.missing_secret")]
    assert "DEMO_SECRET is not set" in errors[0].message and "/nonexistent/secret" in errors[1].message


def test_bad_standard_webhooks_secret_is_refused_without_printing_it(tmp_path: Path) -> None:
    errors = errors_of(tmp_path, VALID, env={"DEMO_SECRET": "whsec_not*base64"})
    assert errors[0].code == "spec.invalid_secret" and "not*base64" not in str(errors[0])


@pytest.mark.parametrize(("old", "new", "line", "path", "code"), [
    ("scheme: standard_webhooks", "scheme: hmac", 3, "signature.scheme", "spec.invalid_value"),
    ('  secrets: ["env:DEMO_SECRET"]\n', "", 2, "signature", "spec.missing_key"),
    ('"env:DEMO_SECRET"', '"plain-secret-in-yaml"', 4, "signature.secrets[0]", "spec.invalid_value"),
    ("event_id: event_id", "event_id: event_id\nmax_bytes: 0", 6, "max_bytes", "spec.invalid_value"),
    ("event_id: event_id", "event_id: event_id\ncontent_types: [JSON]", 6, "content_types[0]",
     "spec.invalid_value"),
    ("event_id: event_id", "event_id: event_id\nverify: true", 6, "verify", "spec.unknown_key"),
    ("name: demo", "name: other", 1, "name", "spec.name_mismatch"),
    ("entity_key: data.ticket.id", "entity_key: data..id", 6, "entity_key", "spec.invalid_value"),
])
def test_bad_specs(tmp_path: Path, old: str, new: str, line: int, path: str, code: str) -> None:
    assert VALID.count(old) == 1
    errors = errors_of(tmp_path, VALID.replace(old, new))
    assert [(e.line, e.path, e.code) for e in errors][:1] == [(line, path, code)], [str(e) for e in errors]


def test_scheme_rules(tmp_path: Path) -> None:
    errors = errors_of(tmp_path, "name: demo\nsignature: {scheme: none, secrets: ['env:X'], tolerance: 1m}\n"
                                 "event_id: id\n", env={"X": "y"})
    assert {e.path for e in errors} == {"signature.secrets", "signature.tolerance"}
    errors = errors_of(tmp_path, "name: demo\nsignature: {scheme: stripe, secrets: ['env:X']}\n", env={"X": "y"})
    assert errors[0].code == "spec.missing_key" and "event_id" in errors[0].message
    source = load(tmp_path, "name: demo\nsignature: {scheme: none}\nevent_id: id\n")["demo"]
    assert source.scheme == "none" and source.keys == ()


def test_demo_yaml_beside_demo_yml_is_an_error_not_a_silent_overwrite(tmp_path: Path) -> None:
    (tmp_path / "demo.yml").write_text(VALID)
    errors = errors_of(tmp_path, VALID)
    assert [e.code for e in errors] == ["spec.duplicate_name"]
    assert "duplicate source name 'demo'" in str(errors[0])
