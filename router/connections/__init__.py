"""Connections: one tenant's use of one integration (DESIGN §9).

A connection holds the tenant's state, settings, credentials and (for sources) signing secrets.
Connections live in the compacted topic ``_connections``, secrets encrypted with AES-GCM under a
key ring (:mod:`router.connections.keyring`); every process reads the topic into memory and
follows it (:class:`router.connections.store.ConnectionStore`). See docs/connections.md.
"""
