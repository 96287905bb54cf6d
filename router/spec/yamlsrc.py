"""YAML with line numbers: every value's YAML path maps to the line it was written on.

Errors in specs must name file, YAML path and line (``integrations/x.yaml:14: mapping.fields.title``),
so the document is composed into nodes once and converted by hand, recording where each
path starts. Duplicate mapping keys, which PyYAML silently accepts, are reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from router.errors import SpecError

PathKey = tuple[str | int, ...]


def format_path(path: PathKey) -> str:
    """``('mapping', 'fields', 'title')`` → ``mapping.fields.title``; ``(…, 0)`` → ``…[0]``."""
    out = ""
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else str(step))
    return out or "(top level)"


@dataclass
class SourceDoc:
    """A parsed YAML document and where each of its paths was written."""

    file: str
    value: Any
    lines: dict[PathKey, int] = field(default_factory=dict)

    def line(self, path: PathKey) -> int | None:
        """The line of ``path``, or of its nearest written parent."""
        while True:
            if path in self.lines:
                return self.lines[path]
            if not path:
                return None
            path = path[:-1]

    def error(self, path: PathKey, message: str, code: str = "spec.invalid") -> SpecError:
        """A SpecError located at ``path`` in this document."""
        return SpecError(message, file=self.file, path=format_path(path), line=self.line(path), code=code)


def load_yaml(text: str, file: str) -> SourceDoc:
    """Parse one YAML document; raise SpecError with the line for syntax errors or duplicate keys."""
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError(
            f"YAML syntax error: {problem}", file=file, line=mark.line + 1 if mark else None, code="spec.yaml"
        ) from None
    doc = SourceDoc(file=file, value=None)
    if node is None:
        raise SpecError("the file is empty; an integration spec is a YAML mapping", file=file, code="spec.yaml")
    doc.value = _convert(node, (), doc)
    return doc


def _convert(node: yaml.Node, path: PathKey, doc: SourceDoc) -> Any:
    doc.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                raise SpecError("mapping keys must be plain names (no merge keys or complex keys)", file=doc.file,
                                path=format_path(path), line=key_node.start_mark.line + 1, code="spec.yaml")
            key = _scalar(key_node, path, doc)
            skey = ("true" if key else "false") if isinstance(key, bool) else str(key)
            if skey in out:
                raise SpecError(
                    f"duplicate key {skey!r} (first written on line {doc.lines[(*path, skey)]})",
                    file=doc.file, path=format_path((*path, skey)), line=key_node.start_mark.line + 1,
                    code="spec.yaml",
                )
            doc.lines[(*path, skey)] = key_node.start_mark.line + 1
            out[skey] = _convert(value_node, (*path, skey), doc)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, (*path, i), doc) for i, item in enumerate(node.value)]
    return _scalar(node, path, doc)


class _Loader(yaml.SafeLoader):
    """SafeLoader that keeps ISO dates and times as strings: events and specs are JSON-shaped."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _scalar(node: yaml.Node, path: PathKey, doc: SourceDoc) -> Any:
    loader = _Loader("")
    try:
        return loader.construct_object(node, deep=True)
    except (yaml.YAMLError, ValueError, TypeError) as exc:
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError(f"cannot read this value: {problem}", file=doc.file, path=format_path(path),
                        line=node.start_mark.line + 1, code="spec.yaml") from None
    finally:
        loader.dispose()
