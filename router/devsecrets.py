"""The published development signing secrets: set by `router dev` (tools/dev), refused by the gateway.

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
