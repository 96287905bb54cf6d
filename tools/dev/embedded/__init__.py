"""Embedded services for `router dev` and the tests: Tansu broker, Redis, schema registry."""
