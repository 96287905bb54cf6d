"""The drafted spec and its first fixture as YAML text, with the draft's notes as comments.

PyYAML writes no comments, so the spec is laid out here: sections in block style, each mapping
field on one line in flow style when it fits (one line per field is what a person edits), every
scalar and key written by PyYAML so that quoting is always right (``on``, ``yes`` and dates stay
text). Comments are made ASCII and one line whatever the payload held.
"""

from __future__ import annotations

from typing import Any

import yaml

from router.spec.yamlsrc import PathKey
from tools.spec.draft import Draft

WIDTH = 118
# Sections always written in block style, so that their keys and comments stand on their own lines.
BLOCK: frozenset[PathKey] = frozenset({("source",), ("mapping",), ("mapping", "fields"), ("destination",),
                                       ("destination", "http")})


def render_spec(draft: Draft, header: list[str]) -> str:
    """The spec file's text: ``header`` comment lines, then the spec with its notes."""
    lines = [f"# {_comment(text)}" for text in header]
    _mapping(draft.spec, (), 0, draft, lines)
    return "\n".join(lines) + "\n"


def _mapping(value: dict[str, Any], path: PathKey, indent: int, draft: Draft, lines: list[str]) -> None:
    pad = "  " * indent
    for key, item in value.items():
        here = (*path, key)
        head = f"{pad}{_flow(key)}:"
        note = draft.notes.get(here)
        flow = _flow(item)
        inner_notes = any(len(k) > len(here) and k[:len(here)] == here for k in draft.notes)
        if isinstance(item, dict) and item and (here in BLOCK or inner_notes or len(head) + 1 + len(flow) > WIDTH):
            lines.append(_noted(head, note))
            _mapping(item, here, indent + 1, draft, lines)
        else:
            lines.append(_noted(f"{head} {flow}", note))
    lines.extend(f"{pad}# {_comment(text)}" for text in draft.trailers.get(path, []))


def _flow(value: Any) -> str:
    """One value in flow style on one line (spec values hold no line breaks: paths hold no spaces,
    and the drafted event type is printable text)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=2**31 - 1, allow_unicode=True, sort_keys=False)
    return text.removesuffix("\n").removesuffix("\n...").rstrip("\n")


def _noted(line: str, note: str | None) -> str:
    return f"{line}  # {_comment(note)}" if note else line


def _comment(text: str) -> str:
    """ASCII, printable, one line: a comment that no payload key can break."""
    ascii_text = text.encode("ascii", "backslashreplace").decode("ascii")
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in ascii_text)


class _Dumper(yaml.SafeDumper):
    """Never anchors: a value written twice (two empty lists) is written twice."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def render_fixture(name: str, headers: dict[str, str], event: dict[str, Any], record: dict[str, Any]) -> str:
    """The first certification case: the sample as it came, and the record the drafted mapping made."""
    case: dict[str, Any] = {"name": name, "tenant": "acme"}
    if headers:
        case["headers"] = headers
    case["event"] = event
    case["expect"] = {"record": record}
    body = yaml.dump(case, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False, width=100)
    return ("# Drafted by `router spec init`: the sample payload, and the record the drafted mapping makes of it.\n"
            "# Check expect.record field by field: it is what the partner will receive.\n" + body)
