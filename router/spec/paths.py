"""Dotted paths into decoded events (``data.items.0.sku``), compiled once into getters.

A path is split at load time; the getter walks dicts by key and lists by index and returns
:data:`MISSING` (never raises) when any step is absent or of the wrong kind, so the hot path
has no exception handling per field.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, Final


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Final = _Missing()

Getter = Callable[[Any], Any]


def _index(step: str) -> bool:
    """An ASCII-digit step is a list index; "²" or "٣" is a dict key (str.isdigit says yes to both)."""
    return step.isascii() and step.isdigit()


def split(path: str) -> tuple[str | int, ...]:
    """Split ``a.b.0.c`` into steps; all-digit steps index lists (and still match dict keys)."""
    if not path or path.startswith(".") or path.endswith(".") or ".." in path:
        raise ValueError(f"invalid path {path!r}: use dotted names like data.ticket.id")
    return tuple(int(step) if _index(step) else step for step in path.split("."))


def compile_getter(path: str) -> Getter:
    """A function returning the value at ``path`` in a JSON-like value, or MISSING."""
    split(path)  # validates the form
    names = path.split(".")
    if not any(_index(name) for name in names):
        return _dict_getter(tuple(names))
    # (dict key as written, list index or None): "007" looks up key "007" or index 7.
    steps = tuple((text, int(text) if _index(text) else None) for text in names)

    def get(doc: Any) -> Any:
        for key, index in steps:
            if type(doc) is dict:
                doc = doc.get(key, MISSING)
                if doc is MISSING:
                    return MISSING
            elif type(doc) is list and index is not None:
                if index >= len(doc):
                    return MISSING
                doc = doc[index]
            else:
                return MISSING
        return doc

    return get


def _dict_getter(names: tuple[str, ...]) -> Getter:
    """Unrolled getters for paths of plain keys (the hot case): no loop, no per-step type test.

    Indexing a list, string or number with a text key raises TypeError, so any value that is not
    a dict along the way ends as MISSING, exactly like the general getter.
    """
    if len(names) == 1:
        (a,) = names

        def get1(doc: Any) -> Any:
            return doc.get(a, MISSING) if type(doc) is dict else MISSING

        return get1
    if len(names) == 2:
        a, b = names

        def get2(doc: Any) -> Any:
            try:
                return doc[a][b]
            except (KeyError, TypeError, IndexError):
                return MISSING

        return get2
    if len(names) == 3:
        a, b, c = names

        def get3(doc: Any) -> Any:
            try:
                return doc[a][b][c]
            except (KeyError, TypeError, IndexError):
                return MISSING

        return get3

    def getn(doc: Any) -> Any:
        try:
            for name in names:
                doc = doc[name]
        except (KeyError, TypeError, IndexError):
            return MISSING
        return doc

    return getn


def without(doc: Any, path: str) -> Any:
    """A deep copy of ``doc`` with ``path`` removed (for certification probes)."""
    out = copy.deepcopy(doc)
    *parents, last = split(path)
    node = out
    for step in parents:
        node = node[step if isinstance(node, list) else str(step)]
    if isinstance(node, list):
        del node[int(last)]
    else:
        node.pop(str(last), None)
    return out


def with_value(doc: Any, path: str, value: Any) -> Any:
    """A deep copy of ``doc`` with ``path`` set to ``value`` (creating dicts on the way)."""
    out = copy.deepcopy(doc)
    *parents, last = split(path)
    node = out
    for step in parents:
        node = node[int(step)] if isinstance(node, list) else node.setdefault(str(step), {})
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[str(last)] = value
    return out
