"""`router cohort sync`: publish the diff of a membership snapshot to cohort.<audience>."""

from __future__ import annotations

import argparse
import re
import signal
import sys
import threading
import time
from pathlib import Path

from rich.console import Console

from producers.cohorts.guard import DEFAULT_MAX_REMOVAL_SHARE
from producers.cohorts.snapshot import FORMATS
from producers.cohorts.sync import CohortSync, SyncRequest, describe_invalid
from router.errors import ConfigError, RouterError
from router.kafka import wait_for_broker
from router.settings import Settings
from router.spec.durations import parse_duration

AUDIENCE = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")  # the cohort.<audience> topic pattern
DESTINATION = re.compile(r"^[a-z0-9][a-z0-9_-]*$")  # a spec's destination.name


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    cohort = subparsers.add_parser("cohort", help="cohort membership sync")
    commands = cohort.add_subparsers(dest="cohort_command", metavar="COMMAND")
    commands.required = True
    p = commands.add_parser("sync", help="publish the diff of a membership snapshot to cohort.<audience>",
                            description="Diff a membership snapshot against the last synced one and publish "
                                        "CohortMembershipChange records (<= 1,000 ids each) to cohort.<audience>.")
    p.add_argument("--audience", required=True, help="audience name: records go to cohort.<audience>")
    p.add_argument("--snapshot", required=True, metavar="PATH",
                   help="one id a line (text), a CSV or a Parquet file; - for standard input")
    p.add_argument("--destination", default=None, metavar="NAME",
                   help="the destination this sync is for (state and carry-over are per audience and destination)")
    p.add_argument("--tenant", default="default", help="the router-tenant header (default: default)")
    p.add_argument("--format", dest="fmt", choices=FORMATS, default=None,
                   help="snapshot format (default: by extension: .csv, .parquet, else text)")
    p.add_argument("--column", default=None, metavar="NAME", help="CSV/Parquet column of the ids (default: the first)")
    p.add_argument("--on-invalid", choices=("reject", "skip"), default="reject",
                   help="invalid lines: reject the snapshot (default; nothing is published) or skip them")
    p.add_argument("--allow-empty", action="store_true",
                   help="sync a snapshot without a single id (removes every member); refused otherwise")
    p.add_argument("--max-removal-share", type=float, default=DEFAULT_MAX_REMOVAL_SHARE, metavar="SHARE",
                   help="refuse a run that removes more than this share of the last synced members "
                        f"(0 to 1; default {DEFAULT_MAX_REMOVAL_SHARE:g}; 1 = no limit)")
    p.add_argument("--every", default=None, metavar="DURATION",
                   help="repeat on this interval (e.g. 1h) until SIGTERM, re-reading the snapshot each time")
    p.add_argument("--rate", type=float, default=None, metavar="N",
                   help="publish at most N records per second (default: no limit)")
    p.add_argument("--json", action="store_true",
                   help="the result of each sync as one JSON object per line on stdout (for scripts)")
    p.add_argument("--schemas", type=Path, default=Path("schemas/avro"), metavar="DIR",
                   help="folder of Avro schemas (default: schemas/avro/)")
    p.set_defaults(handler=run)


def request_from(args: argparse.Namespace) -> SyncRequest:
    """Check the arguments and build the run's request."""
    if not AUDIENCE.match(args.audience) or len(args.audience) > 200:
        raise ConfigError(f"--audience {args.audience!r}: use letters, digits, '_', '-' and '.' (it names a topic)")
    if args.destination is not None and not DESTINATION.match(args.destination):
        raise ConfigError(f"--destination {args.destination!r}: use a spec destination name (lowercase, digits, "
                          "'_', '-')")
    if args.rate is not None and args.rate <= 0:
        raise ConfigError("--rate must be positive")
    if not 0 <= args.max_removal_share <= 1:  # NaN fails this too
        raise ConfigError(f"--max-removal-share {args.max_removal_share:g}: give a share from 0 to 1 "
                          "(0.5 = half of the last synced members; 1 = no limit)")
    if args.every is not None and args.snapshot == "-":
        raise ConfigError("--every re-reads the snapshot every time; it cannot read standard input")
    return SyncRequest(audience=args.audience, snapshot=args.snapshot, destination=args.destination,
                       tenant=args.tenant, fmt=args.fmt, column=args.column, on_invalid=args.on_invalid,
                       schemas=args.schemas, rate=args.rate, allow_empty=args.allow_empty,
                       max_removal_share=args.max_removal_share)


def run(args: argparse.Namespace) -> int:
    """Entry point: one run, or one per ``--every`` interval until SIGTERM/SIGINT."""
    request = request_from(args)
    try:
        interval = parse_duration(args.every) if args.every else None
    except ValueError as exc:
        raise ConfigError(f"--every: {exc}") from None
    if interval is not None and interval <= 0:
        raise ConfigError("--every must be longer than 0s")
    settings = Settings.from_env()
    wait_for_broker(settings)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    console = Console(stderr=True)
    sync = CohortSync(settings, console)
    try:
        while True:
            started = time.monotonic()
            try:
                result = sync.run(request, stop)
            except RouterError as exc:
                if interval is None or stop.is_set():
                    raise
                print(f"router: error [{exc.code}]: {exc}", file=sys.stderr, flush=True)
            else:
                if result.skipped:
                    print(f"skipped {describe_invalid(result.skipped, request.snapshot)}", file=sys.stderr)
                steps = " ".join(f"{k} {v:.2f}s" for k, v in result.phases.items())
                print(f"sync {result.sync_id}: diff {result.diff_seconds:.2f}s ({steps}), publish "
                      f"{result.publish_seconds:.2f}s, stored state {result.state_bytes / 1e6:.1f} MB, "
                      f"DLQ records carried over {result.carried_records}", file=sys.stderr)
                print(result.as_json() if args.json else result.summary(), flush=True)
            if interval is None or stop.wait(max(0.0, interval - (time.monotonic() - started))):
                return 0
    finally:
        sync.close()
