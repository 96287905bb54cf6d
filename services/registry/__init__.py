"""The embedded Confluent-compatible Schema Registry (``router registry serve``, DESIGN §6).

* ``compat``: pure Avro logic: parsing, "same schema" identity, compatibility levels.
* ``store``: the fold of the ``_schemas`` log (ids and versions) and the Kafka I/O around it.
* ``app``: the REST API, ``create_app(settings, topic=...)``.
* ``cli``: ``router registry serve``.

Nothing is imported here, so ``router`` subcommands that don't serve the registry never load aiohttp
or the Kafka client through this package.
"""
