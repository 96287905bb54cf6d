"""The published signing secrets: set by `router dev` (tools/dev), refused by the gateway elsewhere.

``router dev`` sets ``ZENDESK_WEBHOOK_SECRET``, ``STRIPE_WEBHOOK_SECRET`` and
``GITHUB_WEBHOOK_SECRET`` to these values when they are unset and starts ``router gateway
--dev-secrets``. Everyone can read them here, so a gateway started without ``--dev-secrets``
refuses to run with any of them (producers/webhooks/devsecrets.py).
"""

from __future__ import annotations

# Not secret: development only. Standard Webhooks format (whsec_<base64>) for the Zendesk source,
# Stripe's (an opaque string used as is) for the Stripe source, UTF-8 bytes for the GitHub one.
DEV_SECRETS: dict[str, str] = {
    "ZENDESK_WEBHOOK_SECRET": "whsec_RouterDevOnlyZendeskSecretNotForProduction00",
    "STRIPE_WEBHOOK_SECRET": "whsec_router_dev_only_stripe_secret_not_for_production",
    "GITHUB_WEBHOOK_SECRET": "router-dev-only-github-secret-not-for-production",
}

# The placeholders of deploy/.env.example: committed, so as public as the development secrets.
# A gateway started with only the example file refuses them (deploy/new-env.py writes real ones).
EXAMPLE_PLACEHOLDERS: dict[str, str] = {
    "ZENDESK_WEBHOOK_SECRET": "whsec_UmVwbGFjZU1lV2l0aFRoZVplbmRlc2tTZWNyZXQ=",
    "STRIPE_WEBHOOK_SECRET": "whsec_replace_me_with_the_stripe_signing_secret",
    "GITHUB_WEBHOOK_SECRET": "replace-me-with-the-github-webhook-secret",
}

PUBLISHED: tuple[str, ...] = (*DEV_SECRETS.values(), *EXAMPLE_PLACEHOLDERS.values())
