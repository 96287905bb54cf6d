"""Dead-letter tooling shared by `router dlq` and the admin page.

``read`` reads DLQ topics to their end (assign only), ``filters`` selects records (pure),
``redact`` makes values readable without leaking PII (pure), ``replay`` sends records back
through the pipeline resumably, ``cli`` is the `router dlq ls|show|replay` command.
"""
