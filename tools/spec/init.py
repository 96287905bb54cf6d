"""`router spec init --sample payload.json`: draft a spec, its Avro schema and a first fixture.

This module does the I/O: read the sample within its limits, refuse to overwrite, write the
three files. Drafting is pure (tools/spec/draft.py) and the draft is compiled and run in memory
before anything is written (tools/spec/draft_check.py), so what is written validates and
certifies as written. Every refusal is one `router: error [code]: …` line and exit 2.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from router import codes
from router.errors import SpecError
from tools.spec.draft import DraftOptions, draft_integration
from tools.spec.draft_check import expected_record
from tools.spec.draft_yaml import render_fixture, render_spec
from tools.spec.sample import parse_sample, read_sample

FIXTURE_FILE = "01-sample.yaml"


def register_init(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add `router spec init` to the `router spec` subcommands."""
    p = sub.add_parser("init", help="draft a spec, an Avro schema and a first fixture from a sample payload")
    p.add_argument("--sample", type=Path, required=True, help="a partner's JSON body, as sent (at most 256 KiB)")
    p.add_argument("--name", help="integration name (default: <source>-to-<destination>)")
    p.add_argument("--source", help="source name: records come from ingest.<source> (default: the sample's "
                                    "file name)")
    p.add_argument("--destination", help="destination name: records go to delivery.<destination> (default: partner)")
    p.add_argument("--schema", help="the output record's Avro full name (default: <destination>.<Source>Event)")
    p.add_argument("--out", type=Path, default=Path("."),
                   help="write integrations/ and schemas/avro/ under this folder (default: .)")
    p.add_argument("--force", action="store_true", help="overwrite files that exist")
    p.set_defaults(handler=run_init)


def targets(out: Path, options: DraftOptions) -> tuple[Path, Path, Path]:
    """(spec, Avro schema, first fixture) paths under ``out``, in the layout `spec validate` reads."""
    integrations = out / "integrations"
    return (integrations / f"{options.name}.yaml", out / "schemas" / "avro" / f"{options.schema}.avsc",
            integrations / "fixtures" / options.name / FIXTURE_FILE)


def run_init(args: argparse.Namespace) -> int:
    """Draft from ``args.sample`` and write the three files; 0, or a SpecError (exit 2)."""
    sample: Path = args.sample
    options = DraftOptions.make(sample.stem, args.name, args.source, args.destination, args.schema)
    files = targets(args.out, options)
    existing = [str(f) for f in files if f.exists() or f.is_symlink()]
    if existing and not args.force:
        raise SpecError(f"{', '.join(existing)} already exist(s); pass --force to overwrite, or choose "
                        "another --name or --out", code=codes.SPEC_INIT_EXISTS)
    body = read_sample(sample)
    payload = parse_sample(body, str(sample))
    draft = draft_integration(payload, options, body)
    record = expected_record(draft, payload)
    header = [f"Drafted by `router spec init --sample {sample.name}`: every line marked REVIEW is a guess.",
              "Then: router spec validate; router spec test (docs/spec.md, \"From a sample payload\")."]
    texts = (render_spec(draft, header), json.dumps(draft.avro, indent=2, ensure_ascii=False) + "\n",
             render_fixture("the sample payload maps as drafted", draft.headers, payload, record))
    for file, text in zip(files, texts, strict=True):
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise SpecError(f"cannot write {file}: {exc.strerror or exc}", code=codes.SPEC_INIT_UNWRITABLE) from None
    for file in files:
        print(f"wrote {file}")
    reviews = sum(text.count("REVIEW") for text in texts)
    print(f"{reviews} line(s) marked REVIEW; then: router spec validate {files[0].parent} --schemas "
          f"{files[1].parent}; router spec test {files[0].parent} --schemas {files[1].parent}")
    return 0
