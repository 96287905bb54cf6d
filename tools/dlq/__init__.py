"""`router dlq ls|show|replay`: the operator's command over dead letters.

Reading, filtering and replaying are shared with the admin page and live in router/dlq.
"""
