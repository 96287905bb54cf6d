"""YAML with line numbers: every value's YAML path maps to the line it was written on.

Errors in specs must name file, YAML path and line (``integrations/x.yaml:14: mapping.fields.title``),
so the document is composed into nodes once and converted by hand, recording where each
path starts. Duplicate mapping keys, which PyYAML silently accepts, are reported.

Every YAML file the router reads (integration specs, fixture cases, webhook source specs) comes
through here, and this is where hostile files stop: at most 1 MiB, 64 levels of nesting, and
10,000 values added by aliases (an "alias bomb" of 1.5 KB expands to hundreds of millions), each
refusal a one-line SpecError with file, line and a stable code. Aliases are kept as references
while composing and expanded here under that budget, never by PyYAML.
"""

from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.events import AliasEvent, CollectionStartEvent

from router import codes
from router.errors import SpecError

PathKey = tuple[str | int, ...]
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")

MAX_YAML_BYTES = 1 << 20  # 1 MiB: the largest spec, fixture or source file read
MAX_YAML_DEPTH = 64  # nested mappings and lists, the top-level mapping being level 1; aliases count
MAX_ALIAS_NODES = 10_000  # values that aliases may add to a document once expanded (a bomb adds millions)
MAX_YAML_VALUES = 100_000  # values (keys, scalars, collections, aliases) written in one file: ~3 s of parsing
MAX_NUMBER_CHARS = 100  # a number written longer than this is refused (big and base-60 numbers cost quadratic time)


def format_path(path: PathKey) -> str:
    """``('mapping', 'fields', 'title')`` → ``mapping.fields.title``; ``(…, 0)`` → ``…[0]``.

    A key that is empty or holds a control character (a newline, say) is written quoted in
    brackets, ``…["a\\nb"]``, so that an error about it stays on one line.
    """
    out = ""
    for step in path:
        if isinstance(step, int):
            out += f"[{step}]"
        elif not step or _CONTROL.search(step):
            out += f"[{json.dumps(step)}]"  # ASCII: no line separator (U+2028, U+0085) survives
        else:
            out += f".{step}" if out else step
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

    def error(self, path: PathKey, message: str, code: str = codes.SPEC_INVALID) -> SpecError:
        """A SpecError located at ``path`` in this document."""
        return SpecError(message, file=self.file, path=format_path(path), line=self.line(path), code=code)


def load_yaml_file(path: Path) -> SourceDoc:
    """Read and parse one YAML file, within the limits of :func:`load_yaml`; every failure is a SpecError.

    The file is opened without blocking and must be a regular file (a FIFO or a device named
    ``*.yaml`` would otherwise hang or never end), and at most ``MAX_YAML_BYTES + 1`` bytes are read.
    """
    file = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise SpecError(f"cannot read the file: {exc.strerror or exc}", file=file, code=codes.SPEC_UNREADABLE) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise SpecError("not a regular file; a spec is a YAML text file", file=file, code=codes.SPEC_UNREADABLE)
    with os.fdopen(fd, "rb") as handle:
        try:
            data = handle.read(MAX_YAML_BYTES + 1)
        except OSError as exc:
            raise SpecError(f"cannot read the file: {exc.strerror or exc}", file=file,
                            code=codes.SPEC_UNREADABLE) from None
    return load_yaml(data, file)


def load_yaml(text: str | bytes, file: str) -> SourceDoc:
    """Parse one YAML document into JSON-like values, each path located; raise SpecError on any problem.

    Bytes must be UTF-8. Refused, each with the line where it was found: more than
    ``MAX_YAML_BYTES`` or ``MAX_YAML_VALUES`` (``spec.too_large``), a byte that is not UTF-8
    (``spec.not_utf8``), more than ``MAX_YAML_DEPTH`` nested collections, aliases counted
    (``spec.too_deep``), aliases that expand to more than ``MAX_ALIAS_NODES`` values or into
    themselves, or more than that many aliases (``spec.yaml_aliases``), and syntax errors,
    duplicate keys, merge or complex keys, numbers longer than ``MAX_NUMBER_CHARS`` and tags
    other than JSON-like ones (``spec.yaml``).
    """
    text = _text_within_limits(text, file)
    loader: _Loader | None = None
    try:
        loader = _Loader(text)  # checks every character first
        node = loader.get_single_node()
    except _Refused as exc:
        raise SpecError(exc.problem or "", file=file, line=exc.problem_mark.line + 1 if exc.problem_mark else None,
                        code=exc.code) from None
    except yaml.reader.ReaderError as exc:
        raise SpecError(f"YAML syntax error: character {_char(exc.character)} is not allowed in YAML "
                        "(write it as an escape in a double-quoted string)", file=file,
                        line=text.count("\n", 0, max(0, exc.position)) + 1, code=codes.SPEC_YAML) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        context = getattr(exc, "context", None)  # "while parsing a flow sequence", "expected a single document…"
        context_mark = getattr(exc, "context_mark", None)
        if context and context.endswith("; first occurrence") and context_mark:  # PyYAML's duplicate anchor
            problem = f"{context.removesuffix('; first occurrence')} (first on line {context_mark.line + 1})"
        elif context:
            problem = f"{context}, {problem}"
        raise SpecError(_one_line(f"YAML syntax error: {problem}"), file=file,
                        line=mark.line + 1 if mark else None, code=codes.SPEC_YAML) from None
    finally:
        if loader is not None:
            loader.dispose()
    if node is None:
        raise SpecError("the file is empty; an integration spec is a YAML mapping", file=file, code=codes.SPEC_YAML)
    doc = SourceDoc(file=file, value=None)
    walk = _Walk(doc, _Loader(""))
    try:
        doc.value = walk.convert(node, (), 0)
    finally:
        walk.loader.dispose()
    return doc


def _text_within_limits(text: str | bytes, file: str) -> str:
    too_large = f"over {MAX_YAML_BYTES:,} bytes, the limit for a YAML file"
    if isinstance(text, str):
        if len(text) > MAX_YAML_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_YAML_BYTES:
            raise SpecError(too_large, file=file, code=codes.SPEC_TOO_LARGE)
        return text
    if len(text) > MAX_YAML_BYTES:
        raise SpecError(too_large, file=file, code=codes.SPEC_TOO_LARGE)
    try:
        return text.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_start = text.rfind(b"\n", 0, exc.start) + 1
        raise SpecError(f"byte 0x{text[exc.start]:02x} in column {exc.start - line_start + 1} is not UTF-8; "
                        "a spec file is UTF-8 text", file=file, line=text.count(b"\n", 0, exc.start) + 1,
                        code=codes.SPEC_NOT_UTF8) from None


def _char(value: object) -> str:
    return f"U+{value:04X}" if isinstance(value, int) else repr(value)


def _one_line(message: str, limit: int = 300) -> str:
    flat = " ".join(message.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class _Refused(yaml.MarkedYAMLError):
    """A limit the composer enforces while parsing; carries the SpecError code."""

    def __init__(self, problem: str, mark: yaml.Mark, code: str) -> None:
        super().__init__(problem=problem, problem_mark=mark)
        self.code = code


@dataclass(frozen=True)
class _Alias:
    """Where ``*name`` was written: the composer keeps the reference instead of sharing the node."""

    target: yaml.Node
    anchor: str
    start_mark: yaml.Mark


class _Loader(yaml.SafeLoader):
    """SafeLoader that keeps ISO dates and times as strings: events and specs are JSON-shaped.

    Its composer counts nested collections as it goes (PyYAML composes recursively, so a deep
    document would otherwise end in RecursionError), and returns aliases as :class:`_Alias` so
    that their expansion is counted and bounded by :class:`_Walk`.
    """

    _depth = 0
    _values = 0
    _aliases = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> Any:
        self._values += 1
        if self._values > MAX_YAML_VALUES:
            raise _Refused(f"more than {MAX_YAML_VALUES:,} values in one file", self.peek_event().start_mark,
                           codes.SPEC_TOO_LARGE)
        if self.check_event(AliasEvent):
            event = self.get_event()
            self._aliases += 1
            if self._aliases > MAX_ALIAS_NODES:  # each adds at least one value: refuse before reading on
                raise _Refused(f"more than {MAX_ALIAS_NODES:,} aliases in one file", event.start_mark,
                               codes.SPEC_YAML_ALIASES)
            if event.anchor not in self.anchors:
                raise yaml.composer.ComposerError(None, None, f"found undefined alias {event.anchor!r}",
                                                  event.start_mark)
            return _Alias(self.anchors[event.anchor], event.anchor, event.start_mark)
        if not self.check_event(CollectionStartEvent):
            return super().compose_node(parent, index)
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise _Refused(f"more than {MAX_YAML_DEPTH} levels of nested mappings and lists",
                               self.peek_event().start_mark, codes.SPEC_TOO_DEEP)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}

_JSON_SCALARS = (str, int, float, bool, type(None))
_NUMBER_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
_PLAIN_TAGS = {yaml.MappingNode: "tag:yaml.org,2002:map", yaml.SequenceNode: "tag:yaml.org,2002:seq"}


@dataclass
class _Walk:
    """Turns composed nodes into values, recording lines; expands aliases within the budget."""

    doc: SourceDoc
    loader: _Loader
    expanded: int = 0  # values produced through aliases so far
    aliases: list[_Alias] = field(default_factory=list)  # the aliases being expanded, outermost first
    on_path: set[int] = field(default_factory=set)  # ids of the collections enclosing the current node

    def error(self, path: PathKey, line: int, message: str, code: str = codes.SPEC_YAML) -> SpecError:
        return SpecError(message, file=self.doc.file, path=format_path(path), line=line, code=code)

    def convert(self, node: yaml.Node | _Alias, path: PathKey, depth: int) -> Any:
        if isinstance(node, _Alias):
            return self.alias(node, path, depth)
        line = node.start_mark.line + 1
        self.doc.lines.setdefault(path, line)
        if self.aliases:
            self.expanded += 1
            if self.expanded > MAX_ALIAS_NODES:
                alias = self.aliases[0]
                raise self.error(path, alias.start_mark.line + 1, f"aliases expand to more than {MAX_ALIAS_NODES:,} "
                                 f"values (*{alias.anchor} and the aliases inside it): an alias bomb? Write the "
                                 "values out, or use fewer aliases", codes.SPEC_YAML_ALIASES)
        if not isinstance(node, yaml.CollectionNode):
            return self.scalar(node, path)
        if node.tag != _PLAIN_TAGS[type(node)]:
            raise self.error(path, line, f"the tag {node.tag} is not supported; a spec holds plain mappings, "
                             "lists, text, numbers, booleans and null")
        if depth >= MAX_YAML_DEPTH:
            raise self.error(path, line, f"more than {MAX_YAML_DEPTH} levels of nested mappings and lists "
                             "(aliases included)", codes.SPEC_TOO_DEEP)
        self.on_path.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self.mapping(node, path, depth)
            return [self.convert(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        finally:
            self.on_path.discard(id(node))

    def alias(self, alias: _Alias, path: PathKey, depth: int) -> Any:
        line = alias.start_mark.line + 1
        self.doc.lines.setdefault(path, line)
        if id(alias.target) in self.on_path:
            raise self.error(path, line, f"the alias *{alias.anchor} is inside the value it refers to (a cycle)",
                             codes.SPEC_YAML_ALIASES)
        self.aliases.append(alias)
        try:
            return self.convert(alias.target, path, depth)
        finally:
            self.aliases.pop()

    def mapping(self, node: yaml.MappingNode, path: PathKey, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                line = key_node.start_mark.line + 1
                raise self.error(path, line, "mapping keys must be plain names (no merge keys, complex keys or "
                                 "aliases)")
            key = self.scalar(key_node, path)
            skey = ("true" if key else "false") if isinstance(key, bool) else str(key)
            if skey in out:
                raise self.error((*path, skey), key_node.start_mark.line + 1,
                                 f"duplicate key {skey!r} (first written on line {self.doc.lines[(*path, skey)]})")
            self.doc.lines[(*path, skey)] = key_node.start_mark.line + 1
            out[skey] = self.convert(value_node, (*path, skey), depth + 1)
        return out

    def scalar(self, node: yaml.Node, path: PathKey) -> Any:
        line = node.start_mark.line + 1
        if node.tag in _NUMBER_TAGS and len(node.value) > MAX_NUMBER_CHARS:
            raise self.error(path, line, f"a number written with more than {MAX_NUMBER_CHARS} characters; quote it "
                             "if it is text")
        try:
            value = self.loader.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
            problem = getattr(exc, "problem", None) or str(exc)
            raise self.error(path, line, _one_line(f"cannot read this value: {problem}")) from None
        if not isinstance(value, _JSON_SCALARS):
            raise self.error(path, line, f"the tag {node.tag} makes a {type(value).__name__}; a spec holds plain "
                             "mappings, lists, text, numbers, booleans and null")
        return value
