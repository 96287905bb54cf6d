"""The guard that keeps published signing secrets (router/devsecrets.py) out of production.

``router dev`` sets ``ZENDESK_WEBHOOK_SECRET``, ``STRIPE_WEBHOOK_SECRET`` and
``GITHUB_WEBHOOK_SECRET`` to the development values when they are unset and starts ``router
gateway --dev-secrets``. Those, and the placeholders of ``deploy/.env.example``, are readable by
everyone, so a gateway started without ``--dev-secrets`` refuses to run with any of them.
"""

from __future__ import annotations

from collections.abc import Mapping

from router.devsecrets import PUBLISHED
from router.errors import ConfigError
from router.spec.sources import WebhookSource, decode_standard_webhooks_secret


def _dev_keys() -> frozenset[bytes]:
    keys = {value.encode() for value in PUBLISHED}
    for value in PUBLISHED:
        try:
            keys.add(decode_standard_webhooks_secret(value))
        except ValueError:
            continue  # not base64: only ever used as raw bytes
    return frozenset(keys)


def sources_with_dev_secrets(sources: Mapping[str, WebhookSource]) -> list[str]:
    """Names of the sources that accept a published development secret."""
    dev = _dev_keys()
    return sorted(name for name, source in sources.items() if any(key in dev for key in source.keys))


def check_dev_secrets(sources: Mapping[str, WebhookSource], *, allowed: bool) -> list[str]:
    """Raise ConfigError if a source uses a development secret and ``allowed`` is false; return those sources."""
    names = sources_with_dev_secrets(sources)
    if names and not allowed:
        refs = ", ".join(f"{n} ({' '.join(sources[n].secret_refs)})" for n in names)
        raise ConfigError(f"source(s) {refs} use a published secret (router dev's, or a deploy/.env.example "
                          "placeholder); set a real signing secret (deploy/new-env.py writes random ones), or pass "
                          "--dev-secrets on a development machine")
    return names
