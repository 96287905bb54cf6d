"""Partner accounts for the simulator: parsing and which account a request came from; no server."""

from __future__ import annotations

import base64

import aiohttp
import pytest

from services.partner_sim.accounts import (
    MAX_ACCOUNTS,
    Accounts,
    basic_credentials,
    parse_account_args,
    parse_accounts,
    presented_credentials,
)


def test_accounts_parse_and_identify_by_credential() -> None:
    parsed = parse_accounts({"acme": "key-a", "globex.eu_1": "key-b"})
    assert parsed == {"acme": "key-a", "globex.eu_1": "key-b"}
    accounts = Accounts.of(parsed)
    assert accounts.enforced and accounts.names == ["acme", "globex.eu_1"]
    assert accounts.identify(["nope", "key-b"]) == "globex.eu_1"
    assert accounts.identify(["key-a"]) == "acme"
    assert accounts.identify(["key-a-", "KEY-A", "key-", ""]) is None
    assert accounts.identify([]) is None
    assert "key-a" not in repr(accounts)  # secrets are never printed


def test_no_accounts_are_not_enforced_but_revoking_the_last_one_is() -> None:
    assert not Accounts.of({}).enforced and not Accounts().enforced
    revoked = Accounts.of({"acme": "key-a"}).without("acme")
    assert revoked.enforced and revoked.names == [] and revoked.identify(["key-a"]) is None
    both = Accounts.of({"acme": "key-a", "globex": "key-b"}).without("acme")
    assert both.identify(["key-a"]) is None and both.identify(["key-b"]) == "globex"


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ([], "the body must be an object"),
        ("acme=key", "the body must be an object"),
        (None, "the body must be an object"),
        ({"acme": 1}, "the credential of 'acme' must be a non-empty string"),
        ({"acme": None}, "the credential of 'acme' must be a non-empty string"),
        ({"acme": ["key"]}, "the credential of 'acme' must be a non-empty string"),
        ({"acme": ""}, "the credential of 'acme' must be a non-empty string"),
        ({"acme": "k\r\nX-Evil: 1"}, "must be printable, on one line"),
        ({"acme": " key"}, "without leading or trailing spaces"),
        ({"acme": "k" * 4097}, "must be at most 4096 characters"),
        ({"": "key"}, "'' is not an account name"),
        ({"a b": "key"}, "'a b' is not an account name"),
        ({"-acme": "key"}, "is not an account name"),
        ({"acme/revoke": "key"}, "is not an account name"),
        ({"a" * 129: "key"}, "is not an account name"),
        ({"acme": "same", "globex": "same"}, "accounts 'acme' and 'globex' have the same credential"),
    ],
)
def test_bad_accounts_are_named(raw: object, problem: str) -> None:
    parsed = parse_accounts(raw)
    assert isinstance(parsed, str) and problem in parsed, parsed


def test_a_huge_name_is_not_echoed_in_full() -> None:
    parsed = parse_accounts({"x" * 1_000_000: "key"})
    assert isinstance(parsed, str) and "is not an account name" in parsed and len(parsed) < 300


def test_too_many_accounts() -> None:
    raw = {f"t{i}": f"k{i}" for i in range(MAX_ACCOUNTS + 1)}
    assert parse_accounts(raw) == f"at most {MAX_ACCOUNTS} accounts"


def test_account_args() -> None:
    assert parse_account_args([]) == {}
    assert parse_account_args(["acme=key=with=equals", "globex=b"]) == {"acme": "key=with=equals", "globex": "b"}
    assert parse_account_args(["acme"]) == "--account takes NAME=CREDENTIAL, not 'acme'"
    assert parse_account_args(["acme=a", "acme=b"]) == "--account 'acme' is given twice"
    assert parse_account_args(["acme="]) == "--account: the credential of 'acme' must be a non-empty string"


def test_presented_credentials_in_every_accepted_form() -> None:
    basic = aiohttp.encode_basic_auth("anyone", "key-a")
    assert presented_credentials("", "") == []
    assert presented_credentials("", "key-a") == ["key-a"]
    assert presented_credentials("key-a", "") == ["key-a"]
    assert presented_credentials("Bearer key-a", "") == ["Bearer key-a", "key-a"]
    assert presented_credentials("bearer  key-a ", "") == ["bearer  key-a ", "key-a"]
    assert presented_credentials(basic, "") == [basic, "key-a"]
    assert presented_credentials("Basic !!not-base64", "") == ["Basic !!not-base64"]
    assert basic_credentials(basic) == ("anyone", "key-a")
    assert basic_credentials("Bearer x") is None
    assert basic_credentials("Basic \u00ff") == ("", "")  # not ASCII: no 500 from base64
    assert basic_credentials("Basic " + base64.b64encode(b"u:\xff").decode()) == ("", "")  # not UTF-8
