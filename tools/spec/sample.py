"""A partner's sample payload for `router spec init`: read within limits, parsed, refused clearly.

The limits keep what `spec init` writes loadable: the sample becomes a fixture case (event and
expected record) that goes through the YAML loader's limits (1 MiB, 100,000 values, 64 levels,
docs/spec.md "Loading limits"), so a sample that could not be written as a fixture is refused
here, with one line and a stable code, before anything is written. JSON is parsed with orjson,
as the route worker decodes ingest records (an integer beyond 64 bits becomes a float here as it
does there, so no number is too long for YAML).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import orjson

from router import codes
from router.errors import SpecError

MAX_SAMPLE_BYTES = 256 * 1024
MAX_SAMPLE_VALUES = 20_000
MAX_SAMPLE_DEPTH = 32  # the top-level object is level 1
_BOM = b"\xef\xbb\xbf"


def read_sample(path: Path) -> bytes:
    """At most ``MAX_SAMPLE_BYTES + 1`` bytes of a regular file (a FIFO would never end)."""
    file = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise SpecError(f"cannot read the sample: {exc.strerror or exc}", file=file,
                        code=codes.SPEC_UNREADABLE) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise SpecError("not a regular file; pass a JSON file", file=file, code=codes.SPEC_UNREADABLE)
    with os.fdopen(fd, "rb") as handle:
        try:
            return handle.read(MAX_SAMPLE_BYTES + 1)
        except OSError as exc:
            raise SpecError(f"cannot read the sample: {exc.strerror or exc}", file=file,
                            code=codes.SPEC_UNREADABLE) from None


def parse_sample(data: bytes, file: str) -> dict[str, Any]:
    """The sample's JSON object, or a SpecError with one of the ``spec.sample_*`` codes."""
    if len(data) > MAX_SAMPLE_BYTES:
        raise SpecError(f"the sample is over {MAX_SAMPLE_BYTES // 1024} KiB; pass one typical event",
                        file=file, code=codes.SPEC_SAMPLE_TOO_LARGE)
    if data.startswith(_BOM):
        data = data[len(_BOM):]
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        if "depth limit" in str(exc) or "recursion" in str(exc):
            raise SpecError(f"the sample nests deeper than {MAX_SAMPLE_DEPTH} levels", file=file,
                            code=codes.SPEC_SAMPLE_TOO_DEEP) from None
        raise SpecError(f"not JSON: {_one_line(str(exc))}", file=file, code=codes.SPEC_SAMPLE_INVALID) from None
    if not isinstance(value, dict):
        raise SpecError(f"the sample is a JSON {_json_kind(value)}, not an object; pass one event",
                        file=file, code=codes.SPEC_SAMPLE_NOT_OBJECT)
    _check_shape(value, file)
    return value


def _check_shape(root: dict[str, Any], file: str) -> None:
    """Depth and count, walked without recursion (the depth is not known yet)."""
    count = 0
    todo: list[tuple[Any, int]] = [(root, 1)]
    while todo:
        value, depth = todo.pop()
        count += 1
        if count > MAX_SAMPLE_VALUES:
            raise SpecError(f"the sample holds over {MAX_SAMPLE_VALUES:,} values; pass one typical event",
                            file=file, code=codes.SPEC_SAMPLE_TOO_LARGE)
        if isinstance(value, dict | list):
            if depth > MAX_SAMPLE_DEPTH:
                raise SpecError(f"the sample nests deeper than {MAX_SAMPLE_DEPTH} levels", file=file,
                                code=codes.SPEC_SAMPLE_TOO_DEEP)
            children = value.values() if isinstance(value, dict) else value
            todo.extend((child, depth + 1) for child in children)
            count += len(value) if isinstance(value, dict) else 0  # keys count too, as in the YAML loader


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "list"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    return "null" if value is None else "number"


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."
