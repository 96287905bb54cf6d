"""Event router: shared core (settings, errors, specs, embedded services, schema registry)."""

__version__ = "0.1.0"
