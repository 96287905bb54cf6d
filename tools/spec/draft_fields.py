"""Output fields drafted from sample objects: one flat Avro field per value, lists item by item.

Nested objects are flattened into dotted-path mappings (``issue.user.login`` → field
``issue_user_login``, or ``user_login`` under the main object): one line per value is what a
partner engineer edits fastest (delete what the partner does not need, rename the rest). Lists of
objects become ``each:`` records drafted from every item, lists of plain values ``each:`` lists;
what cannot be drafted (empty lists, lists of lists, values of mixed shapes, keys no dotted path
can name) is left out with a note saying why. Every drafted field is nullable with a null default
(later events may lack what the sample has), except the identity fields the caller names.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from router.errors import MappingError
from router.spec.coerce import to_timestamp_ms

Steps = tuple[str, ...]

MAX_FIELDS = 1000  # over the whole draft, nested records included
MAX_LIST_DEPTH = 3  # `each:` inside `each:` inside `each:`
MAX_NAME_CHARS = 100
TIMESTAMP = {"type": "long", "logicalType": "timestamp-millis"}
_INT64 = 2**63
_SECONDS = (946_684_800, 4_102_444_800)  # 2000-01-01 .. 2100-01-01: epoch seconds
_MILLIS = (_SECONDS[0] * 1000, _SECONDS[1] * 1000)
_ISO = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}([.,]\d{1,9})?)?\s?(Z|z|[+-]\d{2}(:?\d{2})?)?")
_PATH_STEP = re.compile(r"[^.\s]+")  # the spec's path pattern, one step (integration.schema.json)
_TIME_WORDS = ("created", "updated", "modified", "timestamp", "time", "date", "ts", "when")
_TIME_SUFFIXES = ("_at", "At", "_on", "_time", "Time", "_timestamp", "_date", "Date", "_ts")


@dataclass
class FieldDraft:
    """One output field: its mapping, its Avro field, and a note for its YAML line."""

    name: str
    spec: dict[str, Any]
    avro: dict[str, Any]
    note: str = ""
    inner_notes: dict[tuple[str, ...], str] = field(default_factory=dict)  # (fields, name, …) inside `each`


@dataclass
class Drafting:
    """What is shared while drafting one schema: record names, the field budget, notes."""

    record_name: str
    names: set[str] = field(default_factory=set)
    count: int = 0
    over_budget: int = 0
    skipped: list[str] = field(default_factory=list)

    def record(self, hint: str) -> str:
        base = f"{self.record_name}{_camel(hint)}Item"
        name, n = base, 2
        while name in self.names:
            name, n = f"{base}{n}", n + 1
        self.names.add(name)
        return name


def addressable(key: str, first: bool) -> bool:
    """Can a dotted path name this key? No dots or spaces; no ``$`` where it would read as a name; no
    digits other than 0-9 in an all-digit key (``²``: router/spec/paths.py would read it as an index)."""
    return (_PATH_STEP.fullmatch(key) is not None and not (first and key.startswith("$"))
            and (key.isascii() or not key.isdigit()))


def show(steps: Steps) -> str:
    """A path for a one-line note: plain steps as written, others JSON-quoted (``data."a.b"``), ASCII,
    bounded."""
    text = ".".join(step if re.fullmatch(r"[A-Za-z0-9_*+\-]{1,40}", step) else json.dumps(step) for step in steps)
    return text if len(text) <= 80 else text[:77] + "..."


def avro_name(steps: Steps) -> str:
    """An Avro field name for a path: ASCII letters, digits and ``_``, not starting with a digit."""
    words = [re.sub(r"^-(?=\d)", "minus", re.sub(r"^\+", "plus", step)) for step in steps]  # GitHub's +1 and -1
    text = unicodedata.normalize("NFKD", "_".join(words)).encode("ascii", "ignore").decode()
    text = re.sub(r"[^A-Za-z0-9_]+", "_", text).strip("_") or "field"
    if text[0].isdigit():
        text = f"_{text}"
    return text[:MAX_NAME_CHARS]


def unique(name: str, used: set[str], alternative: str | None = None) -> str:
    """``name``, else ``alternative``, else ``name_2``, ``name_3``…; the chosen one is marked used."""
    for candidate in (name, alternative):
        if candidate is not None and candidate not in used:
            used.add(candidate)
            return candidate
    n = 2
    while f"{name}_{n}" in used:
        n += 1
    used.add(f"{name}_{n}")
    return f"{name}_{n}"


def is_timestamp(key: str, value: Any) -> bool:
    """An ISO-8601 date-time string, or epoch seconds/ms under a time-like key (``created``, ``*_at``)."""
    if isinstance(value, str):
        if len(value) > 40 or not _ISO.fullmatch(value):
            return False
        try:
            to_timestamp_ms(value)
        except (MappingError, OverflowError, ValueError):
            return False
        return True
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return False
    return time_like(key) and (_SECONDS[0] <= value <= _SECONDS[1] or _MILLIS[0] <= value <= _MILLIS[1])


def time_like(key: str) -> bool:
    """A key that names a time: ``created``, ``updated_at``, ``paidAt``, ``due_date``."""
    return key.lower() in _TIME_WORDS or key.endswith(_TIME_SUFFIXES)


def leaves(objects: list[dict[str, Any]], drafting: Drafting, at: Steps) -> dict[Steps, list[Any]]:
    """Every path to a value that is not an object, with the values the objects hold there (in
    first-seen order); keys no path can name, empty objects and object/value clashes are noted."""
    found: dict[Steps, list[Any]] = {}
    objects_at: set[Steps] = set()
    for obj in objects:
        for steps, value in _walk(obj, (), drafting, at):
            if isinstance(value, dict):
                objects_at.add(steps)
            else:
                found.setdefault(steps, []).append(value)
    for steps in [s for s in found if s in objects_at]:
        drafting.skipped.append(f"{show(at + steps)}: an object in one item and a value in another")
        del found[steps]
    return found


def _walk(obj: dict[str, Any], steps: Steps, drafting: Drafting, at: Steps) -> Iterator[tuple[Steps, Any]]:
    for key, value in obj.items():
        here = (*steps, key)
        if not addressable(key, first=not steps):
            drafting.skipped.append(f"{show(at + here)}: no dotted path can name this key (a dot, a space or a "
                                    "leading $); map it with a rename upstream or leave it out")
            continue
        if isinstance(value, dict):
            if not value:
                drafting.skipped.append(f"{show(at + here)}: an empty object in the sample")
            yield here, value
            yield from _walk(value, here, drafting, at)
        else:
            yield here, value


def draft_value(name: str, path: str, key: str, values: list[Any], drafting: Drafting, at: Steps,
                depth: int) -> FieldDraft | None:
    """The field for one path's values (None, with a note, when they cannot be drafted)."""
    where = show((*at, *path.split(".")))
    present = [v for v in values if v is not None]
    if drafting.count >= MAX_FIELDS:
        drafting.over_budget += 1
        return None
    lists = [v for v in present if isinstance(v, list)]
    if lists and len(lists) != len(present):
        drafting.skipped.append(f"{where}: a list in one place and a value in another")
        return None
    if lists:
        return _list_field(name, path, [item for lst in lists for item in lst], drafting, at, depth)
    drafting.count += 1
    avro_type, spec, note = scalar_type(key, present)
    if not present and time_like(key):
        avro_type, spec, note = TIMESTAMP, {"as": "timestamp_ms"}, "REVIEW: null in the sample; a time, by its name"
    elif not present:
        note = "REVIEW: null in the sample, so typed as text"
    spec = {"from": path, **spec}
    return FieldDraft(name, spec, {"name": name, "type": ["null", avro_type], "default": None}, note)


def scalar_type(key: str, present: list[Any]) -> tuple[Any, dict[str, Any], str]:
    """(Avro type, mapping options, note) for the non-null plain values seen at one key."""
    if present and all(is_timestamp(key, v) for v in present):
        kind = "ISO-8601 text" if isinstance(present[0], str) else "epoch time"
        return TIMESTAMP, {"as": "timestamp_ms"}, f"{kind} in the sample: epoch ms"
    kinds = {type(v) for v in present}
    if kinds == {bool}:
        return "boolean", {}, ""
    if kinds and kinds <= {int, float} and not all(-_INT64 <= v < _INT64 for v in present if type(v) is int):
        return "string", {"as": "string"}, "a number beyond 64 bits in the sample: kept as text"
    if kinds == {int}:
        return "long", {}, ""
    if kinds and kinds <= {int, float}:
        return "double", {}, ""
    if kinds == {str}:
        return "string", {}, ""
    return "string", {"as": "string"}, "mixed or unknown types in the sample: kept as text" if kinds else ""


def _list_field(name: str, path: str, items: list[Any], drafting: Drafting, at: Steps,
                depth: int) -> FieldDraft | None:
    where = show((*at, *path.split(".")))
    present = [v for v in items if v is not None]
    if depth >= MAX_LIST_DEPTH:
        drafting.skipped.append(f"{where}: lists nested deeper than {MAX_LIST_DEPTH} levels")
        return None
    if not present:
        drafting.skipped.append(f"{where}: an empty list in the sample, so its item type is unknown")
        return None
    if all(isinstance(v, dict) for v in present):
        inner = (*at, *path.split("."), "*")
        sub = record_fields(present, drafting, inner, depth + 1)
        if not sub:
            drafting.skipped.append(f"{where}: its items hold nothing to map")
            return None
        drafting.count += 1
        record = {"type": "record", "name": drafting.record(name), "fields": [f.avro for f in sub]}
        spec = {"each": path, "fields": {f.name: f.spec for f in sub}}
        notes: dict[tuple[str, ...], str] = {("fields", f.name): f.note for f in sub if f.note}
        for f in sub:
            notes.update({("fields", f.name, *k): v for k, v in f.inner_notes.items()})
        return FieldDraft(name, spec, {"name": name, "type": {"type": "array", "items": record}, "default": []},
                          "", notes)
    if any(isinstance(v, dict | list) for v in present):
        drafting.skipped.append(f"{where}: a list of lists, or of objects and values mixed")
        return None
    drafting.count += 1
    item_type, options, _note = scalar_type("", present)
    if item_type == TIMESTAMP:  # only under a time-like key; a list's items have none
        item_type, options = "string", {}
    if len(present) != len(items):
        item_type = ["null", item_type]
    spec = {"each": path, "item": {"from": "$event", **options}}
    return FieldDraft(name, spec, {"name": name, "type": {"type": "array", "items": item_type}, "default": []})


def record_fields(objects: list[dict[str, Any]], drafting: Drafting, at: Steps, depth: int) -> list[FieldDraft]:
    """The fields of a record drafted from list items: every path any item holds, nullable."""
    used: set[str] = set()
    out = []
    for steps, values in leaves(objects, drafting, at).items():
        name = unique(avro_name(steps), used)
        drafted = draft_value(name, ".".join(steps), steps[-1], values, drafting, at, depth)
        if drafted is not None:
            out.append(drafted)
        else:
            used.discard(name)
    return out


def _camel(text: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", text) if part)
