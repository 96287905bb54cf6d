"""Dead-letter reading and replay, shared by `router dlq` (tools/dlq) and the admin page (services/admin).

``read`` reads DLQ topics to their end (assign only), ``filters`` selects records (pure),
``replay`` sends records back through the pipeline resumably. Making values readable without
leaking PII is ``router.redact`` (also used by health rows and the delivery worker).
"""
