"""Delivering with each tenant's connection, the pure parts: the spec's checks, the tenant's URL,
its credentials, and lanes that never make one tenant wait on another (docs/connections.md)."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumers.deliver.auth import Auth
from consumers.deliver.config import HttpTarget, Retry
from consumers.deliver.lanes import Item, Lanes
from consumers.deliver.tenancy import Unusable, auth_for, build_route
from router.connections.model import ApiKey, Basic, Bearer, Connection, OAuth2AuthorizationCode
from router.settings import Secret
from router.spec.connection_use import ConnectionUse, parse_use, problems, render_url

SETTINGS = {"type": "object", "required": ["sub", "account"],
            "properties": {"sub": {"type": "string", "pattern": "^[a-z0-9-]{1,63}$"}, "account": {"type": "string"}}}
TEMPLATE = "https://{settings.sub}.partner.example/v1/{settings.account}/events?x=1"


def _target(url: str = TEMPLATE, **use: object) -> HttpTarget:
    section = {"credentials": ["bearer", "api_key", "basic", "oauth2_authorization_code"], "settings": SETTINGS,
               **use}
    return HttpTarget("zd", "pd", url, "POST", {}, 1, 1 << 20, 5.0, {"type": "none"}, None, Retry(),
                      connection=parse_use(section))


def _headers(auth: Auth) -> dict[str, str]:
    return asyncio.run(auth.headers(None, b"", "id"))  # type: ignore[arg-type]


def test_spec_checks_name_each_problem_with_its_path() -> None:
    assert problems({"url": "https://x/{settings.a}"}) == [
        (("url",), "{settings.*} placeholders need a connection section: the values are each tenant's "
                   "connection settings")]
    found = dict(problems({"url": "https://x/{settings.a}", "auth": {"type": "none"},
                           "connection": {"credentials": ["oauth2_client_credentials"],
                                          "settings": {"type": "object", "required": ["b"]}}}))
    assert "exclude each other" in found[("auth",)]
    assert "'a' must be a required property" in found[("url",)]
    assert "token_url" in found[("connection", "token_url")]
    bad_schema = problems({"url": "https://x", "connection": {"credentials": ["bearer"], "settings": {"type": 5}}})
    assert bad_schema[0][0] == ("connection", "settings") and "not a JSON Schema" in bad_schema[0][1]
    assert problems({"url": TEMPLATE, "connection": {"credentials": ["bearer"], "settings": SETTINGS}}) == []


def test_the_url_is_filled_from_the_settings() -> None:
    assert render_url(TEMPLATE, {"sub": "acme", "account": 42}) == \
        "https://acme.partner.example/v1/42/events?x=1"
    with pytest.raises(KeyError):
        render_url(TEMPLATE, {"sub": "acme"})
    for bad in ({"sub": True, "account": 1}, {"sub": "", "account": 1}, {"sub": ["a"], "account": 1},
                {"sub": "a" * 257, "account": 1}):
        with pytest.raises(ValueError, match="setting"):
            render_url(TEMPLATE, bad)


@given(st.text(min_size=1, max_size=256), st.text(min_size=1, max_size=256))
def test_no_setting_can_change_the_shape_of_the_url(sub: str, account: str) -> None:
    url = urlsplit(render_url(TEMPLATE, {"sub": sub, "account": account}))
    assert url.scheme == "https"
    assert url.hostname is not None and url.hostname.endswith(".partner.example"), url
    assert url.path.startswith("/v1/") and url.path.endswith("/events") and url.path.count("/") == 3, url
    assert url.query == "x=1" and url.fragment == "" and url.username is None and url.port is None


def test_each_credential_type_becomes_its_header() -> None:
    use = _target(header="X-Api-Key").connection
    assert use is not None
    assert _headers(auth_for(use, ApiKey(Secret("k1")))) == {"X-Api-Key": "k1"}
    assert _headers(auth_for(use, Bearer(Secret("t1")))) == {"Authorization": "Bearer t1"}
    assert _headers(auth_for(use, Basic("u", Secret("p")))) == {"Authorization": "Basic dTpw"}
    assert _headers(auth_for(use, OAuth2AuthorizationCode(Secret("at")))) == {"Authorization": "Bearer at"}
    only_bearer = parse_use({"credentials": ["bearer"]})
    with pytest.raises(Unusable, match="credentials of type api_key; this integration takes: bearer"):
        auth_for(only_bearer, ApiKey(Secret("k1")))
    with pytest.raises(Unusable, match="no credentials"):
        auth_for(only_bearer, None)


def test_a_route_or_why_there_is_none_without_a_secret_in_the_reason() -> None:
    target = _target()
    good = Connection("acme", "zd", settings={"sub": "acme", "account": "a1"}, credentials=Bearer(Secret("s3cr3t")))
    route = build_route(target, good)
    assert route.url == "https://acme.partner.example/v1/a1/events?x=1"
    for settings, why in (({"sub": "Not Valid", "account": "a"}, "do not fit the integration's schema"),
                          ({"account": "a"}, "'sub' is a required property")):
        bad = Connection("acme", "zd", settings=settings, credentials=Bearer(Secret("s3cr3t")))
        with pytest.raises(Unusable, match=why) as caught:
            build_route(target, bad)
        assert "s3cr3t" not in str(caught.value)


def _item(tenant: str, key: bytes, offset: int) -> Item:
    return Item("delivery.pd", 0, offset, key, b"", [], "zd", tenant, f"e{offset}", f"k{offset}", None, 0.0,
                scope=f"zd/{tenant}")


def test_one_tenants_held_record_never_holds_another_tenants_record_of_the_same_entity() -> None:
    lanes = Lanes()
    acme, globex = _item("acme", b"ticket-1", 0), _item("globex", b"ticket-1", 1)
    lanes.add(acme)
    lanes.add(globex)
    # acme's connection is held (its scope is not active): globex's record of the same entity goes.
    assert lanes.ready(1.0, {"zd/globex"}) == [globex]
    assert lanes.ready(1.0, {"zd/acme", "zd/globex"}) == [acme, globex]
    assert lanes.scopes() == {"zd/acme", "zd/globex"}


def test_a_tenants_records_of_one_entity_keep_their_order() -> None:
    lanes = Lanes()
    first, second = _item("acme", b"ticket-1", 0), _item("acme", b"ticket-1", 1)
    lanes.add(first)
    lanes.add(second)
    assert lanes.ready(1.0, {"zd/acme"}) == [first]
    lanes.start(first)
    lanes.finish(first)
    assert lanes.ready(1.0, {"zd/acme"}) == [second]


def test_connection_use_defaults() -> None:
    use = parse_use({"credentials": ["api_key"]})
    assert use == ConnectionUse(("api_key",), {}, "Authorization", None, None)
    assert use.settings_problem({"anything": 1}) is None


def test_a_token_answer_rotates_the_refresh_token_only_when_the_partner_does() -> None:
    from consumers.deliver.oauth_refresh import refreshed

    old = OAuth2AuthorizationCode(Secret("a1"), Secret("r1"), 1, ("read",))
    kept = refreshed(old, {"access_token": "a2", "expires_in": 3600}, 1000.0)
    assert (kept.access_token.reveal(), kept.refresh_token and kept.refresh_token.reveal()) == ("a2", "r1")
    assert kept.expires_at_ms == 4_600_000 and kept.scopes == ("read",)
    rotated = refreshed(old, {"access_token": "a3", "refresh_token": "r2", "scope": "read write"}, 1000.0)
    assert rotated.refresh_token is not None and rotated.refresh_token.reveal() == "r2"
    assert rotated.expires_at_ms is None and rotated.scopes == ("read", "write")
    for junk in (True, "3600", -5, None):
        assert refreshed(old, {"access_token": "a4", "expires_in": junk}, 1000.0).expires_at_ms is None


def test_our_client_secret_is_a_reference_and_comes_with_what_refreshes_need() -> None:
    base = {"url": "https://x", "connection": {"credentials": ["oauth2_authorization_code"]}}
    plain = {**base, "connection": {**base["connection"], "client_id": "c", "client_secret": "s3cr3t",  # type: ignore[dict-item]
                                    "token_url": "https://t"}}
    found = dict(problems(plain))
    assert "a secret is written in the spec" in found[("connection", "client_secret")]
    assert "s3cr3t" not in str(found)
    alone = {**base, "connection": {**base["connection"], "client_id": "c"}}  # type: ignore[dict-item]
    assert "needs token_url and client_secret" in dict(problems(alone))[("connection",)]
    use = parse_use({"credentials": ["oauth2_authorization_code"], "client_id": "c", "client_secret": "env:S",
                     "token_url": "https://t"})
    assert use.refreshes and not parse_use({"credentials": ["bearer"]}).refreshes
