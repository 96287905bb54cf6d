"""Registering the Avro schemas the integrations use, under the subjects DESIGN §3 names."""

from __future__ import annotations

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from router import codes
from router.errors import RegistryError
from router.spec.load import Catalog

COHORT_SCHEMA = "router.cohort.CohortMembershipChange"


def subjects_for(catalog: Catalog) -> dict[str, str]:
    """subject → schema full name: delivery topics' value subjects (TopicNameStrategy), cohort
    topics' value subjects, and every other schema under its full name."""
    subjects: dict[str, str] = {}
    for integration in catalog.integrations:
        subjects[integration.destination.subject] = integration.schema.full_name
        if integration.source.format == "avro":
            subjects[f"{integration.source.topic}-value"] = COHORT_SCHEMA
    used = set(subjects.values())
    for schema in catalog.schemas:
        if schema.full_name not in used:
            subjects[schema.full_name] = schema.full_name
    return subjects


def register_all(client: SchemaRegistryClient, catalog: Catalog) -> dict[str, int]:
    """Register every subject (idempotent); return integration name → id of its output schema."""
    ids: dict[str, int] = {}
    for subject, full_name in sorted(subjects_for(catalog).items()):
        schema = catalog.schemas.get(full_name)
        if schema is None:
            raise RegistryError(f"schema {full_name} is not in the schema folder (needed for subject {subject})")
        try:
            ids[subject] = client.register_schema(subject, Schema(schema.text, "AVRO"))
        except SchemaRegistryError as exc:
            raise RegistryError(f"registering {full_name} under {subject} failed: {exc.error_message} "
                                f"(HTTP {exc.http_status_code}); an incompatible change needs a new schema "
                                "name or a compatibility setting", code=codes.REGISTRY_REGISTER_FAILED) from None
    return {i.name: ids[i.destination.subject] for i in catalog.integrations}
