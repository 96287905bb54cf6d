"""A draft loaded and run in memory, as `router spec validate` and `router spec test` will.

The drafted spec goes through the same JSON Schema and compiler as a spec file, its schema
through fastavro, and the sample through the certification harness (the route worker's pure
stages), so the record written as the first fixture's ``expect.record`` is what the mapping
makes of the sample, and a draft that would not validate is never written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import fastavro

from router.errors import SpecError
from router.spec.avro import AvroCatalog, AvroSchema
from router.spec.load import Catalog, SpecErrors, compile_integration, validate_document
from router.spec.model import Integration
from router.spec.yamlsrc import SourceDoc
from tools.spec.certify import Harness, normalize
from tools.spec.draft import Draft


def compile_draft(draft: Draft) -> tuple[Integration, Catalog]:
    """The draft compiled as `spec validate` would compile its files; SpecErrors if it would not load."""
    full_name = draft.spec["mapping"]["schema"]
    text = json.dumps(draft.avro, indent=2)
    schema = AvroSchema(full_name, text, draft.avro, fastavro.parse_schema(draft.avro), f"{full_name}.avsc")
    schemas = AvroCatalog({full_name: schema})
    spec = {k: v for k, v in draft.spec.items() if k != "fixtures"}  # the folder is written afterwards
    doc = SourceDoc(f"{draft.spec['name']}.yaml", spec)
    errors = validate_document(doc)
    if errors:
        raise SpecErrors(errors)
    integration, errors = compile_integration(doc, Path(doc.file), schemas)
    if integration is None:
        raise SpecErrors(errors)
    return integration, Catalog((integration,), schemas)


def expected_record(draft: Draft, payload: dict[str, Any]) -> dict[str, Any]:
    """What the drafted mapping makes of the sample, in the form a fixture's ``expect.record`` holds."""
    integration, catalog = compile_draft(draft)
    harness = Harness(integration, catalog)
    got = harness.run(harness.encode_input(payload), "acme", draft.headers)
    if got.kind != "routed" or got.record is None:
        raise SpecError(f"the drafted spec does not route its own sample ({got.describe()}); please report it")
    record: dict[str, Any] = normalize(got.record)
    return record
