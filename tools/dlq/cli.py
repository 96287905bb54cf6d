"""`router dlq ls|show|replay`: what an SRE runs to understand and drain dead-letter topics.

Tables are drawn with rich; ``--json`` prints one JSON object per line instead. `replay` draws
its progress bar on stderr and ends with one machine-readable line on stdout,
``replayed=<n> skipped=<n> failed=<n>``. Exit codes: 0 done, 1 some records failed or the broker
refused records, 2 bad options or config, 130 interrupted (after committing what was done).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from confluent_kafka import KafkaException
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from router import headers as h
from router.dlq.filters import DlqFilter, iso_ms
from router.dlq.read import DlqRecord, ReadFailed, dlq_topics, open_reader, read_to_end
from router.dlq.replay import ReplayObserver, ReplayRequest, ReplaySummary, parse_rate, replay
from router.errors import ConfigError
from router.redact import AvroDecoder, escape_text, fields_from_env, readable, redact_text, truncate
from router.settings import Settings

SHOW_LIMIT = 50


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``dlq ls|show|replay`` to the ``router`` command."""
    dlq = subparsers.add_parser("dlq", help="inspect and replay dead-letter topics (<topic>.dlq)")
    sub = dlq.add_subparsers(dest="dlq_command", metavar="ACTION")
    sub.required = True

    ls = sub.add_parser("ls", help="every DLQ topic: depth, oldest/newest record, counts by code and integration")
    ls.add_argument("--json", action="store_true", help="one JSON object per topic and line")
    ls.set_defaults(handler=ls_command)

    show = sub.add_parser("show", help="records of one DLQ topic with their error headers; PII masked")
    show.add_argument("topic", metavar="TOPIC", help="a DLQ topic, e.g. ingest.zendesk.dlq")
    _add_filters(show)
    show.add_argument("--limit", type=int, default=SHOW_LIMIT, metavar="N",
                      help=f"show at most N matching records, oldest first (default {SHOW_LIMIT}; 0 = all)")
    show.add_argument("--json", action="store_true", help="one JSON object per record and line")
    show.set_defaults(handler=show_command)

    rp = sub.add_parser("replay", help="send DLQ records back through the pipeline; safe to repeat")
    rp.add_argument("topic", metavar="TOPIC", help="a DLQ topic, e.g. ingest.zendesk.dlq")
    _add_filters(rp)
    rp.add_argument("--to", metavar="TOPIC", default=None,
                    help="destination topic (default: each record's router-original-topic)")
    rp.add_argument("--rate", metavar="N/s", default=None, help="at most N records per second (e.g. 20/s, 600/m)")
    rp.add_argument("--limit", type=int, default=None, metavar="N", help="replay at most N records in this run")
    rp.add_argument("--dry-run", action="store_true", help="print what would be replayed; produce and commit nothing")
    rp.add_argument("--from-start", action="store_true",
                    help="ignore the replay cursor and start at the oldest record (repeats are dropped downstream)")
    rp.add_argument("--no-progress", action="store_true", help="no progress bar")
    rp.add_argument("--json", action="store_true",
                    help="end with one JSON object (counts, cursor, failures) instead of the summary line; no bar")
    rp.set_defaults(handler=replay_command)


def _add_filters(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("filters (all given must match; a repeated option matches any of its values)")
    g.add_argument("--code", action="append", metavar="CODE", help="error code or glob (map.*)")
    g.add_argument("--tenant", action="append", metavar="TENANT", help="router-tenant")
    g.add_argument("--integration", action="append", metavar="NAME", help="router-integration")
    g.add_argument("--event-id", action="append", metavar="ID", help="router-event-id (repeat for several)")
    g.add_argument("--since", metavar="TIME", help="dead-lettered at or after: ISO-8601, epoch ms, or ago (2h, 7d)")
    g.add_argument("--until", metavar="TIME", help="dead-lettered before: ISO-8601, epoch ms, or ago (30m)")


def filter_from_args(args: argparse.Namespace, now_ms: int | None = None) -> DlqFilter:
    """The DlqFilter of the parsed options."""
    return DlqFilter.from_options(codes=args.code, tenants=args.tenant, integrations=args.integration,
                                  event_ids=args.event_id, since=args.since, until=args.until,
                                  now_ms=now_ms if now_ms is not None else int(time.time() * 1000))


def _when(ms: int) -> str:
    return iso_ms(ms)[:19].replace("T", " ") + "Z" if ms else "-"


# ---- ls -------------------------------------------------------------------------------------


@dataclass
class TopicStats:
    """What `router dlq ls` shows for one DLQ topic."""

    topic: str
    depth: int = 0  # failed records, each counted once
    records: int = 0  # DLQ records: more than depth when a worker died between a DLQ write and its commit
    oldest_ms: int = 0
    newest_ms: int = 0
    by_code: Counter[str] = field(default_factory=Counter)
    by_integration: Counter[str] = field(default_factory=Counter)

    seen: set[tuple[str | None, ...]] = field(default_factory=set, repr=False)

    def add(self, record: DlqRecord) -> None:
        self.records += 1
        hdrs = record.headers
        failure = (hdrs.get(h.ORIGINAL_TOPIC), hdrs.get(h.ORIGINAL_PARTITION), hdrs.get(h.ORIGINAL_OFFSET),
                   hdrs.get(h.INTEGRATION), hdrs.get(h.CONSUMER_GROUP))
        if None not in failure[:3]:  # a record without coordinates cannot be told apart: count it
            if failure in self.seen:
                return  # a second copy of a failure already counted
            self.seen.add(failure)
        self.depth += 1
        ts = record.timestamp_ms
        if ts:
            self.oldest_ms = min(self.oldest_ms or ts, ts)
            self.newest_ms = max(self.newest_ms, ts)
        self.by_code[record.headers.get(h.ERROR_CODE) or "-"] += 1
        self.by_integration[record.headers.get(h.INTEGRATION) or "-"] += 1

    def as_json(self) -> dict[str, Any]:
        return {"topic": self.topic, "depth": self.depth, "records": self.records,
                "oldest": iso_ms(self.oldest_ms) if self.oldest_ms else None,
                "newest": iso_ms(self.newest_ms) if self.newest_ms else None,
                "by_code": dict(self.by_code.most_common()), "by_integration": dict(self.by_integration.most_common())}


def topic_stats(settings: Settings) -> list[TopicStats]:
    """Read every DLQ topic to its end (one reader for all of them) and count."""
    topics = dlq_topics(settings)
    stats = {t: TopicStats(t) for t in topics}
    if topics:
        consumer = open_reader(settings)
        try:
            for record in read_to_end(consumer, topics):
                stats[record.topic].add(record)
        finally:
            consumer.close()
    return [stats[t] for t in topics]


def _counts(counter: Counter[str]) -> str:
    return "\n".join(f"{n} {name}" for name, n in counter.most_common())


@contextmanager
def _kafka_errors() -> Iterator[None]:
    """A broker failure as one line (``router: error [dlq.read_failed]``), not a stack trace."""
    try:
        yield
    except KafkaException as exc:
        raise ReadFailed(f"Kafka at {os.environ.get('KAFKA_BOOTSTRAP_SERVERS', '?')}: {exc}") from None


def ls_command(args: argparse.Namespace) -> int:
    """`router dlq ls`."""
    with _kafka_errors():
        stats = topic_stats(Settings.from_env())
    if args.json:
        for s in stats:
            _print_json(s.as_json())
        return 0
    if not sys.stdout.isatty():  # a pipe or a file: plain lines a script can cut, never a drawn table
        sys.stdout.write(ls_text(stats))
        return 0
    Console().print(ls_table(stats) if stats else "no DLQ topics")
    return 0


LS_FIELDS = ("topic", "depth", "oldest", "newest", "by_code", "by_integration")


def ls_text(stats: list[TopicStats]) -> str:
    """`dlq ls` for a pipe: a header line, then one tab-separated line per topic; counts as
    ``code=n,code=n`` (most first)."""
    def counts(counter: Counter[str]) -> str:
        return ",".join(f"{name}={n}" for name, n in counter.most_common()) or "-"

    lines = ["\t".join(LS_FIELDS)]
    lines += ["\t".join((s.topic, str(s.depth), _when(s.oldest_ms), _when(s.newest_ms), counts(s.by_code),
                         counts(s.by_integration))) for s in stats]
    return "\n".join(lines) + "\n"


def ls_table(stats: list[TopicStats]) -> Table:
    """`dlq ls` at a terminal: topic and depth never squeezed; at 80 columns the count columns keep
    room for a code and fold long names, and the two times share one column."""
    table = Table(title="dead-letter topics", title_justify="left")
    table.add_column("topic", overflow="fold", min_width=12, max_width=32)
    table.add_column("depth", justify="right", no_wrap=True, min_width=5)
    table.add_column("oldest / newest", no_wrap=True, min_width=20)
    table.add_column("by code", overflow="fold", min_width=12, ratio=2)
    table.add_column("by integration", overflow="fold", min_width=12, ratio=2)
    for s in stats:
        table.add_row(s.topic, str(s.depth), f"{_when(s.oldest_ms)}\n{_when(s.newest_ms)}", _counts(s.by_code),
                      _counts(s.by_integration))
    return table


# ---- show -----------------------------------------------------------------------------------


@contextmanager
def avro_decoder(settings: Settings) -> Iterator[AvroDecoder | None]:
    """Decode registry-framed Avro values (delivery DLQs) when SCHEMA_REGISTRY_URL is set, for the
    block; the registry client (an HTTP connection pool) is closed after it."""
    if not settings.schema_registry_url:
        yield None
        return
    from confluent_kafka.schema_registry import SchemaRegistryClient

    from router import codec

    # Unknown id, registry down, corrupt bytes: ValueError, and the value is shown as text.
    with SchemaRegistryClient(settings.registry_conf()) as registry:
        yield codec.Codec(codec.registry_fetch(registry)).decode_fetching


ERROR_FIELDS = ((h.ERROR_CODE, "code"), (h.ERROR_STAGE, "stage"), (h.ERROR_MESSAGE, "message"),
                (h.ATTEMPTS, "attempts"), (h.FIRST_FAILED_AT, "first_failed_at"),
                (h.CONSUMER_GROUP, "consumer_group"), (h.HTTP_STATUS, "http_status"),
                (h.RESPONSE_BODY, "response_body"))
ORIGINAL_FIELDS = ((h.ORIGINAL_TOPIC, "topic"), (h.ORIGINAL_PARTITION, "partition"),
                   (h.ORIGINAL_OFFSET, "offset"), (h.ORIGINAL_TIMESTAMP, "timestamp"))


def record_view(record: DlqRecord, fields: frozenset[str], avro: AvroDecoder | None) -> dict[str, Any]:
    """One DLQ record as shown by `router dlq show --json`: error, original coordinates, headers, value."""
    hdrs = record.headers
    error: dict[str, Any] = {name: hdrs[header] for header, name in ERROR_FIELDS if header in hdrs}
    if "response_body" in error:
        error["response_body"] = readable(error["response_body"].encode(), fields).doc
    if "message" in error:  # mapping errors quote the offending value: field 'requester_email': '...'
        error["message"] = redact_text(error["message"], fields)
    original = {name: hdrs[header] for header, name in ORIGINAL_FIELDS if header in hdrs}
    grouped = {header for header, _ in (*ERROR_FIELDS, *ORIGINAL_FIELDS)}
    value = readable(record.value, fields, avro=avro)
    return {
        "topic": record.topic, "partition": record.partition, "offset": record.offset,
        "timestamp": iso_ms(record.timestamp_ms) if record.timestamp_ms else None,
        "key": escape_text(record.key.decode("utf-8", "backslashreplace")) if record.key is not None else None,
        "error": error, "original": original,
        "headers": {k: v for k, v in hdrs.items() if k not in grouped},
        "value_kind": value.kind, "value_bytes": value.size, "value": value.doc,
    }


def _matching(settings: Settings, topic: str, dlq_filter: DlqFilter) -> Iterator[DlqRecord]:
    consumer = open_reader(settings)
    try:
        for record in read_to_end(consumer, [topic]):
            if dlq_filter.matches(record.headers, record.timestamp_ms):
                yield record
    finally:
        consumer.close()


def show_command(args: argparse.Namespace) -> int:
    """`router dlq show TOPIC`."""
    settings = Settings.from_env()
    dlq_filter = filter_from_args(args)
    fields = fields_from_env(os.environ)
    limit = args.limit if args.limit and args.limit > 0 else None
    shown = matched = 0
    table = _show_table()
    with _kafka_errors(), avro_decoder(settings) as avro:
        for record in _matching(settings, args.topic, dlq_filter):
            matched += 1
            if limit is not None and shown >= limit:
                continue
            shown += 1
            view = record_view(record, fields, avro)
            if args.json:
                _print_json(view)
            else:
                _add_show_row(table, record, view)
    if args.json:
        return 0
    console = Console()
    if shown:
        console.print(table)
    more = f", first {shown} shown (--limit)" if shown < matched else ""
    console.print(f"{matched} matching record(s) in {args.topic}{more}; filter: {dlq_filter.describe()}",
                  highlight=False)
    return 0


def _show_table() -> Table:
    table = Table(show_lines=True)
    table.add_column("record", no_wrap=True)
    table.add_column("error", ratio=3, overflow="fold")
    table.add_column("event", ratio=3, overflow="fold")
    table.add_column("value", ratio=4, overflow="fold")
    return table


def _add_show_row(table: Table, record: DlqRecord, view: dict[str, Any]) -> None:
    err, orig, hdrs = view["error"], view["original"], view["headers"]
    record_cell = f"p{record.partition} @{record.offset}\n{_when(record.timestamp_ms)}"
    if view["key"] is not None:
        record_cell += f"\nkey {truncate(view['key'], 24)}"
    error_lines = [err.get("code", "-"), f"stage {err.get('stage', '-')}, attempt {err.get('attempts', '-')}"]
    if "http_status" in err:
        body = orjson.dumps(err.get("response_body")).decode()
        error_lines.append(f"HTTP {err['http_status']}: {truncate(body, 80)}")
    if err.get("message"):
        error_lines.append(truncate(err["message"], 160))
    event_lines = [f"tenant {hdrs.get(h.TENANT, '-')}", f"integration {hdrs.get(h.INTEGRATION, '-')}",
                   f"event {hdrs.get(h.EVENT_ID, '-')}"]
    if orig:
        event_lines.append(f"from {orig.get('topic', '?')}[{orig.get('partition', '?')}]@{orig.get('offset', '?')}")
    if h.REPLAY_COUNT in hdrs:
        event_lines.append(f"replayed {hdrs[h.REPLAY_COUNT]}x")
    value = view["value"]
    value_text = ("(no value)" if view["value_kind"] == "empty" else value if view["value_kind"] == "text"
                  else orjson.dumps(value).decode())
    table.add_row(record_cell, Text("\n".join(error_lines)), Text("\n".join(event_lines)),
                  Text(truncate(value_text, 300)))


def _print_json(obj: Any) -> None:
    sys.stdout.write(orjson.dumps(obj, default=str).decode() + "\n")


# ---- replay ---------------------------------------------------------------------------------


class _ReplayDisplay(ReplayObserver):
    """Progress bar on stderr; dry-run lines and failures as they happen."""

    def __init__(self, progress: bool, dry_run: bool, json_out: bool = False) -> None:
        self.err = Console(stderr=True)
        # With --json stdout carries the one JSON object only: per-record lines go to stderr.
        self.out = Console(highlight=False, soft_wrap=True, stderr=json_out)
        self.dry_run = dry_run
        self.progress: Progress | None = None
        self.task: Any = None
        if progress:
            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TimeElapsedColumn(), console=self.err, transient=False)

    def started(self, request: ReplayRequest, summary: ReplaySummary, total: int) -> None:
        at = " ".join(f"p{p}@{o}" for (_t, p), o in sorted(summary.start.items()))
        end = " ".join(f"p{p}@{o}" for (_t, p), o in sorted(summary.end.items()))
        origin = ("the oldest record (--from-start)" if request.from_start else "the cursor" if summary.resumed
                  else "the oldest record (new cursor)")
        self.err.print(f"replaying {request.topic} ({request.dlq_filter.describe()}) -> "
                       f"{request.to or 'original topics'}{' [dry run]' if request.dry_run else ''}\n"
                       f"cursor {summary.cursor_group}: from {origin} {at or '-'} to the end at start {end or '-'}",
                       highlight=False)
        if self.progress is not None:
            self.progress.start()
            self.task = self.progress.add_task("replaying", total=total)

    def record(self, record: DlqRecord, outcome: str, detail: str) -> None:
        if outcome == "would_replay":
            self.out.print(f"would replay {record.coords} event={record.headers.get(h.EVENT_ID, '-')} "
                           f"tenant={record.headers.get(h.TENANT, '-')} code={record.headers.get(h.ERROR_CODE, '-')}"
                           f" -> {detail}")
        elif outcome == "failed":
            self.err.print(f"failed {record.coords}: {detail}", highlight=False)
        if self.progress is not None:
            self.progress.advance(self.task)

    def committed(self, summary: ReplaySummary) -> None:
        if self.progress is not None:
            done = f"would replay {summary.would_replay}" if summary.dry_run else f"replayed {summary.replayed}"
            self.progress.update(self.task, description=f"{done} skipped {summary.skipped} failed {summary.failed}")

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()


@contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """First SIGINT/SIGTERM: finish the current chunk and stop; a second SIGINT aborts at once."""
    stop = threading.Event()

    def handler(signum: int, _frame: object) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()
        print("stopping after the current chunk is acknowledged and committed (Ctrl-C again to abort)",
              file=sys.stderr, flush=True)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def replay_command(args: argparse.Namespace) -> int:
    """`router dlq replay TOPIC`."""
    settings = Settings.from_env()
    if args.limit is not None and args.limit < 1:
        raise ConfigError("--limit must be at least 1")
    request = ReplayRequest(topic=args.topic, dlq_filter=filter_from_args(args), to=args.to,
                            rate=parse_rate(args.rate) if args.rate else None, limit=args.limit,
                            dry_run=args.dry_run, from_start=args.from_start)
    display = _ReplayDisplay(progress=not (args.no_progress or args.json), dry_run=args.dry_run, json_out=args.json)
    with _stop_on_signals() as stop:
        try:
            summary = replay(settings, request, stop=stop, observer=display)
        finally:
            display.stop()
    if summary.error:
        print(f"router: error [dlq.replay_failed]: {summary.error}", file=sys.stderr)
    if args.json:
        _print_json(summary.as_json())
    else:
        print(summary.line(), flush=True)
    if summary.interrupted:
        return 130
    return 1 if summary.error or summary.failed else 0
