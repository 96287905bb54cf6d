"""`router spec validate|test|schema|init|show-code`: what a partner engineer runs on a spec folder."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console

from router.errors import SpecError
from router.spec.args import add_spec_dirs
from router.spec.load import Catalog, SpecErrors, json_schema, load_catalog
from tools.spec.certify import iter_results
from tools.spec.init import register_init
from tools.spec.showcode import show_code

# Exit statuses: 0 valid / certified; 1 a certification check failed (`spec test`); 2 a spec that
# cannot be loaded, like every other command's one-line errors (router/cli.py).
SPEC_INVALID = 2


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    spec = subparsers.add_parser("spec", help="validate, certify and describe integration specs")
    sub = spec.add_subparsers(dest="spec_command", metavar="ACTION")
    sub.required = True
    for name, handler, text in (
        ("validate", _validate, "check every spec; name file, line and YAML path of each problem"),
        ("test", _test, "run each integration's certification (fixtures and probes)"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("dir", nargs="?", type=Path, default=None, help="same as --integrations")
        add_spec_dirs(p)
        p.set_defaults(handler=handler)
    p = sub.add_parser("schema", help="print the spec's JSON Schema (draft 2020-12)")
    p.set_defaults(handler=_schema)
    register_init(sub)
    p = sub.add_parser("show-code", help="print the Python an integration's mapping and Avro writer compile to, "
                       "each line with the spec file, line and field it comes from")
    p.add_argument("name", metavar="INTEGRATION", help="the integration's name")
    p.add_argument("--no-avro", dest="avro", action="store_false", help="the mapping only, not the Avro writer")
    add_spec_dirs(p)
    p.set_defaults(handler=_show_code, dir=None)


def _dirs(args: argparse.Namespace) -> tuple[Path, Path]:
    return (args.dir or args.integrations), args.schemas


def _load(args: argparse.Namespace, after_errors: str) -> Catalog | None:
    """The catalog, or None after printing each problem (then ``after_errors``) on stderr."""
    integrations, schemas = _dirs(args)
    try:
        return load_catalog(integrations, schemas)
    except SpecErrors as exc:
        for error in exc.errors:
            print(f"{error}  [{error.code}]", file=sys.stderr)
        print(after_errors.format(count=len(exc.errors), folder=integrations), file=sys.stderr)
    except SpecError as exc:
        print(f"{exc}  [{exc.code}]", file=sys.stderr)
    return None


def _validate(args: argparse.Namespace) -> int:
    catalog = _load(args, "{count} problem(s) in {folder}")
    if catalog is None:
        return SPEC_INVALID
    for integration in catalog.integrations:
        print(f"ok  {integration.file}  {integration.name} v{integration.version}: "
              f"{integration.source.topic} -> {integration.destination.topic}")
    print(f"{len(catalog.integrations)} integration(s) valid")
    return 0


def _test(args: argparse.Namespace) -> int:
    catalog = _load(args, "fix these with `router spec validate` first")
    if catalog is None:
        return SPEC_INVALID
    console = Console(highlight=False)
    failed = 0
    for integration, results in iter_results(catalog):
        console.print(f"[bold]{integration.name}[/bold] v{integration.version}  ({integration.file})")
        for result in results:
            mark = {True: "[green]✓[/green]", False: "[red]✗[/red]", None: "[dim]-[/dim]"}[result.passed]
            detail = f"  [dim]{result.detail}[/dim]" if result.detail else ""
            console.print(f"  {mark} {result.check}{detail}")
            failed += result.passed is False
    verdict = "[green]certified[/green]" if not failed else f"[red]{failed} check(s) failed[/red]"
    console.print(f"{len(catalog.integrations)} integration(s): {verdict}")
    return 1 if failed else 0


def _show_code(args: argparse.Namespace) -> int:
    catalog = _load(args, "fix these with `router spec validate` first")
    if catalog is None:
        return SPEC_INVALID
    try:
        integration = catalog.by_name(args.name)
    except SpecError as exc:
        print(f"{exc}  [{exc.code}]", file=sys.stderr)
        return SPEC_INVALID
    print(show_code(integration, avro=args.avro))
    return 0


def _schema(args: argparse.Namespace) -> int:
    print(json.dumps(json_schema(), indent=2))
    return 0
