"""Partner accounts for the simulator: parsing, and telling which account a request came from.

A partner gives each customer its own account and credential; with connections (issue #18)
every tenant connects its own. The simulator holds ``name -> credential`` and, once any
account is configured, a delivery must carry one account's credential: as
``Authorization: Bearer C``, ``X-Api-Key: C``, ``Authorization: C`` or HTTP Basic whose password
is ``C``. The account found is what the ledger and account-scoped fault rules see.

Everything here is a plain function of data (no I/O), tested without a server. Credentials are
never put in a message: errors name the account, not its secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

# Also an HTML pattern attribute, which browsers compile with the "v" flag: "-" escaped in a class.
ACCOUNT_NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._\-]{0,127}"
_ACCOUNT_NAME = re.compile(ACCOUNT_NAME_PATTERN)
MAX_ACCOUNTS = 100_000  # the gateway benchmark connects 10,000 tenants; ten times that is plenty
MAX_CREDENTIAL_CHARS = 4096
NAME_RULE = "an account name is 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit"


def is_account_name(name: object) -> bool:
    """Whether ``name`` is a string matching :data:`ACCOUNT_NAME_PATTERN` (whole string)."""
    return isinstance(name, str) and _ACCOUNT_NAME.fullmatch(name) is not None


def _shown(name: str) -> str:
    """A name as a message may quote it: a hostile one is cut short, not echoed in full."""
    return repr(name if len(name) <= 40 else name[:40] + "...")


def _digest(credential: str) -> bytes:
    return hashlib.sha256(credential.encode()).digest()


@dataclass(frozen=True)
class Accounts:
    """The partner's accounts; replaced as a whole on every change, never mutated.

    ``enforced``: deliveries must carry one account's credential. It is on whenever an account
    is configured, and stays on when revoking takes away the last one, so a revoked credential
    never starts working again because nothing is left to check it against.
    """

    credentials: Mapping[str, str] = field(default_factory=dict, repr=False)  # name -> credential; never shown
    enforced: bool = False
    # sha256(credential) -> name: one dict lookup per presented value instead of a comparison
    # with every account (10,000 tenants); the digest reveals nothing through lookup timing,
    # and the match is confirmed with a constant-time comparison.
    _by_digest: Mapping[bytes, str] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        by_digest = {_digest(credential): name for name, credential in self.credentials.items()}
        object.__setattr__(self, "_by_digest", by_digest)

    @classmethod
    def of(cls, credentials: Mapping[str, str], *, enforced: bool | None = None) -> Accounts:
        """Accounts from a checked mapping (see :func:`parse_accounts`); enforced if not empty."""
        return cls(dict(credentials), bool(credentials) if enforced is None else enforced)

    @property
    def names(self) -> list[str]:
        """The account names, sorted: what the control API shows (never the credentials)."""
        return sorted(self.credentials)

    def without(self, name: str) -> Accounts:
        """These accounts less ``name`` (revoked); still enforced."""
        return Accounts.of({n: c for n, c in self.credentials.items() if n != name}, enforced=True)

    def identify(self, presented: Iterable[str]) -> str | None:
        """The account whose credential is among ``presented``, else None."""
        for value in presented:
            name = self._by_digest.get(_digest(value))
            if name is not None and hmac.compare_digest(value.encode(), self.credentials[name].encode()):
                return name
        return None


def credential_problem(credential: object) -> str | None:
    """What is wrong with a credential, or None: it travels in a header, so one line, no padding."""
    if not isinstance(credential, str) or not credential:
        return "must be a non-empty string"
    if len(credential) > MAX_CREDENTIAL_CHARS:
        return f"must be at most {MAX_CREDENTIAL_CHARS} characters"
    if not credential.isprintable() or credential != credential.strip():
        return "must be printable, on one line, without leading or trailing spaces"
    return None


def parse_accounts(raw: object) -> dict[str, str] | str:
    """``{name: credential, ...}`` checked, or a message saying what is wrong with it.

    Two accounts may not share a credential: a request carrying it would belong to both.
    """
    if not isinstance(raw, dict):
        return "the body must be an object of account name to credential"
    if len(raw) > MAX_ACCOUNTS:
        return f"at most {MAX_ACCOUNTS} accounts"
    owners: dict[str, str] = {}
    for name, credential in raw.items():
        if not is_account_name(name):
            return f"{_shown(name)} is not an account name: {NAME_RULE}"
        problem = credential_problem(credential)
        if problem is not None:
            return f"the credential of {_shown(name)} {problem}"
        other = owners.setdefault(credential, name)
        if other != name:
            return f"accounts {_shown(other)} and {_shown(name)} have the same credential"
    return dict(raw)


def parse_account_args(values: Sequence[str]) -> dict[str, str] | str:
    """The ``--account NAME=CREDENTIAL`` options as a mapping, or a message; a name given twice is refused."""
    raw: dict[str, str] = {}
    for value in values:
        name, sep, credential = value.partition("=")
        if not sep:
            return f"--account takes NAME=CREDENTIAL, not {_shown(name)}"
        if name in raw:
            return f"--account {_shown(name)} is given twice"
        raw[name] = credential
    accounts = parse_accounts(raw)
    return f"--account: {accounts}" if isinstance(accounts, str) else accounts


def basic_credentials(authorization: str) -> tuple[str, str] | None:
    """(user, password) of an ``Authorization: Basic ...`` value; None if it is not Basic; ("", "") if malformed."""
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except ValueError:  # not base64 (binascii.Error), not ASCII, or not UTF-8 once decoded
        return "", ""
    user, _, password = decoded.partition(":")
    return user, password


def presented_credentials(authorization: str, api_key: str) -> list[str]:
    """Every value a request may carry an account credential as, empty ones left out."""
    scheme, _, rest = authorization.partition(" ")
    values = [api_key, authorization]
    if scheme.lower() == "bearer":
        values.append(rest.strip())
    basic = basic_credentials(authorization)
    if basic is not None:
        values.append(basic[1])
    return [value for value in values if value]
