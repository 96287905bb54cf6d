"""Membership snapshots: a text file (one id a line), a CSV column or a Parquet column → canonical ids.

Every format is reduced to the same *canonical* form: the valid ids, stripped, in file order, each
followed by ``\\n`` (the last one may lack it). Invalid lines are reported with their 1-based line
number (the row number for Parquet), never silently dropped; the caller decides whether they reject
the snapshot or are skipped.

A text snapshot of 10 million ids is checked without a Python object per line: numpy finds the
newlines and the few bytes that need a closer look (whitespace, control bytes, non-ASCII); only the
lines holding one of those, or empty or too long, are decoded and checked one by one.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from producers.cohorts.errors import CohortError
from producers.cohorts.members import byte_positions
from router import codes

MAX_ID_BYTES = 256
FORMATS = ("text", "csv", "parquet")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class InvalidLine:
    """One line (or Parquet row) that is not a valid id, and why."""

    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass
class Snapshot:
    """Canonical ids (see the module docstring) plus what was wrong with the rest."""

    data: bytes
    lines: int
    invalid: list[InvalidLine] = field(default_factory=list)


def check_id(raw: str) -> tuple[str | None, str]:
    """``(id, "")`` for a valid id (stripped), else ``(None, reason)``.

    Valid: non-empty after stripping, at most 256 bytes of UTF-8, no control characters (Unicode
    category Cc: U+0000 to U+001F, U+007F to U+009F).
    """
    value = raw.strip()
    if not value:
        return None, "empty"
    bad = _CONTROL.search(value)
    if bad is not None:
        return None, f"control character U+{ord(bad.group()):04X}"
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:  # lone surrogates from undecodable input
        return None, "not valid UTF-8"
    if size > MAX_ID_BYTES:
        return None, f"{size} bytes, over the {MAX_ID_BYTES}-byte limit"
    return value, ""


def format_for(path: str, given: str | None) -> str:
    """The snapshot format: ``given``, else by extension (.csv, .parquet/.pq), else text."""
    if given:
        if given not in FORMATS:
            raise CohortError(f"unknown snapshot format {given!r}; use one of {', '.join(FORMATS)}",
                              code=codes.COHORT_SNAPSHOT_UNREADABLE)
        return given
    suffix = Path(path).suffix.lower()
    return {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}.get(suffix, "text")


def read_snapshot(path: str, fmt: str | None = None, column: str | None = None,
                  stdin: BinaryIO | None = None) -> Snapshot:
    """Read and check a snapshot file (``-`` = standard input)."""
    kind = format_for(path, fmt)
    try:
        if kind == "parquet":
            if path == "-":
                raw = (stdin or sys.stdin.buffer).read()
                return parse_parquet(io.BytesIO(raw), column)
            return parse_parquet(path, column)
        raw = (stdin or sys.stdin.buffer).read() if path == "-" else Path(path).read_bytes()
    except OSError as exc:
        raise CohortError(f"cannot read snapshot {path}: {exc.strerror or exc}", code=codes.COHORT_SNAPSHOT_UNREADABLE
                          ) from None
    return parse_csv(raw, column) if kind == "csv" else parse_text(raw)


def _suspicious(block: np.ndarray) -> np.ndarray:
    # Space and control bytes (other than the newline), DEL and every non-ASCII byte.
    return ((block < 0x21) & (block != 10)) | (block > 0x7E)  # type: ignore[no-any-return]


def parse_text(data: bytes) -> Snapshot:
    """One id per line; ``\\r\\n`` line ends and a UTF-8 byte-order mark are accepted."""
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n")
    size = len(data)
    if size == 0:
        return Snapshot(b"", 0)
    arr = np.frombuffer(data, np.uint8)
    newlines = byte_positions(arr, lambda b: b == 10)
    ends = newlines if data.endswith(b"\n") else np.append(newlines, size)
    starts = np.concatenate((np.zeros(1, np.int64), newlines[: len(ends) - 1] + 1))
    lengths = ends - starts
    odd_bytes = byte_positions(arr, _suspicious)
    slow = np.union1d(np.flatnonzero((lengths == 0) | (lengths > MAX_ID_BYTES)),
                      np.searchsorted(newlines, odd_bytes))
    if len(slow) == 0:
        return Snapshot(data, len(ends))
    parts: list[bytes] = []
    invalid: list[InvalidLine] = []
    prev = 0
    for i in slow.tolist():
        start, end = int(starts[i]), int(ends[i])
        parts.append(data[prev:start])
        try:
            value, why = check_id(data[start:end].decode("utf-8"))
        except UnicodeDecodeError:
            value, why = None, "not valid UTF-8"
        if value is None:
            invalid.append(InvalidLine(i + 1, why))
        else:
            parts.append(value.encode() + b"\n")
        prev = end + 1
    parts.append(data[prev:])
    return Snapshot(b"".join(parts), len(ends), invalid)


class _Canonical:
    """Accumulates valid ids as canonical bytes without holding a Python object per id."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.pending: list[str] = []
        self.invalid: list[InvalidLine] = []

    def add(self, line: int, raw: Any) -> None:
        if raw is None:
            self.invalid.append(InvalidLine(line, "empty (null)"))
            return
        value, why = check_id(raw if isinstance(raw, str) else str(raw))
        if value is None:
            self.invalid.append(InvalidLine(line, why))
            return
        self.pending.append(value)
        if len(self.pending) >= 65536:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.out += ("\n".join(self.pending) + "\n").encode()
            self.pending.clear()

    def snapshot(self, lines: int) -> Snapshot:
        self.flush()
        return Snapshot(bytes(self.out), lines, self.invalid)


def parse_csv(data: bytes, column: str | None) -> Snapshot:
    """A CSV file with a header row; ids from ``column`` (default: the first column).

    Line numbers are physical lines (a quoted field may span several).
    """
    text = data.decode("utf-8-sig", errors="surrogateescape")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise CohortError(f"the CSV header (line 1 to {reader.line_num}) cannot be read: {exc}",
                          code=codes.COHORT_SNAPSHOT_UNREADABLE) from None
    if header is None:
        return Snapshot(b"", 0)
    if column is None:
        index = 0
    elif column in header:
        index = header.index(column)
    else:
        raise CohortError(f"the CSV header has no column {column!r} (columns: {_names(header)})",
                          code=codes.COHORT_SNAPSHOT_UNREADABLE)
    out = _Canonical()
    rows = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:  # a field over csv's 128 KiB limit: that row is invalid, the reader goes on
            rows += 1
            out.invalid.append(InvalidLine(reader.line_num, f"not readable as CSV ({exc})"))
            continue
        rows += 1
        if not row:  # a blank line
            out.add(reader.line_num, "")
        elif index >= len(row):
            out.invalid.append(InvalidLine(reader.line_num, f"no column {index + 1} (the row has {len(row)})"))
        else:
            out.add(reader.line_num, row[index])
    return out.snapshot(rows)


def parse_parquet(source: str | BinaryIO, column: str | None) -> Snapshot:
    """A Parquet column (default: the first); "line" numbers are 1-based row numbers. Needs pyarrow."""
    try:
        import pyarrow.parquet as pq
        import pyarrow.types as pa_types
    except ImportError:
        raise CohortError("reading Parquet needs pyarrow: pip install 'event-router[parquet]'",
                          code=codes.COHORT_SNAPSHOT_UNREADABLE) from None
    try:
        handle = pq.ParquetFile(source)
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError...
        raise CohortError(_one_line(f"not a readable Parquet file: {exc}"), code=codes.COHORT_SNAPSHOT_UNREADABLE
                          ) from None
    names = handle.schema_arrow.names
    if not names:
        raise CohortError("the Parquet file has no column", code=codes.COHORT_SNAPSHOT_UNREADABLE)
    if column is not None and column not in names:
        raise CohortError(f"the Parquet file has no column {column!r} (columns: {_names(names)})",
                          code=codes.COHORT_SNAPSHOT_UNREADABLE)
    name = column or names[0]
    kind = handle.schema_arrow.field(name).type
    if not (pa_types.is_string(kind) or pa_types.is_large_string(kind) or pa_types.is_integer(kind)):
        raise CohortError(f"the Parquet column {name!r} holds {kind}; ids are text or integers",
                          code=codes.COHORT_SNAPSHOT_UNREADABLE)
    out = _Canonical()
    row = 0
    try:
        for batch in handle.iter_batches(batch_size=65536, columns=[name]):
            for value in batch.column(0).to_pylist():
                row += 1
                out.add(row, value)
    except Exception as exc:  # a corrupt page or a column that is not ids: pyarrow raises ArrowInvalid, OSError...
        raise CohortError(_one_line(f"the Parquet file cannot be read after row {row}: {exc}"),
                          code=codes.COHORT_SNAPSHOT_UNREADABLE) from None
    return out.snapshot(row)


def _names(names: list[str]) -> str:
    """Column names for a one-line message: quoted (a name may hold a newline), at most 300 characters."""
    return _one_line(", ".join(repr(n) for n in names))


def _one_line(text: str, limit: int = 300) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
