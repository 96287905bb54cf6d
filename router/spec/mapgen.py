"""Generate one Python function per mapped record, so the hot path runs straight-line code.

The mapping compiler (``router.spec.mapping``) decides everything at load time and describes each
output field as a :class:`FieldPlan`. This module turns a record's plans into the source of one
``build(item, root, meta)`` function: shared path prefixes are walked once, the common field
forms (a path, a ``$`` name, a template of paths, ``map`` / ``default`` / ``as``) are written
inline, and the other forms call the closure the compiler already built. Semantics are the
closures' exactly (tests/unit/test_mapgen.py runs both on the same events).

Safety: nothing from a spec is pasted into the source. Keys, literals, tables and functions are
bound as default arguments named ``_c<n>``; the source only holds generated identifiers. Each field's
code starts with a comment naming where the field was written (``FieldPlan.origin``: the spec file,
its line, the YAML path), repeated after each line that calls or raises, so a traceback through
generated code names the spec field.
`router spec show-code` prints the source (router.spec.generated, docs/spec.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from router.spec.generated import GeneratedCode, compile_generated
from router.spec.paths import MISSING

_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)

ValueFn = Callable[[Any, Any, Any], Any]


@dataclass(frozen=True)
class FieldPlan:
    """How to compute one output field; ``closure`` is the reference (and fallback) form.

    ``source`` is one of: ``path`` (``steps`` are plain dict keys from ``item``), ``meta``
    (``meta_name``), ``template`` (``parts``: literal strings and ("path", steps) / ("meta", name)),
    ``const`` (``literal``), or ``closure`` (call ``value``: anything else).
    """

    name: str
    closure: ValueFn  # the whole field as the compiler built it (value, missing, check)
    source: str = "closure"
    steps: tuple[str, ...] = ()
    meta_name: str = ""
    parts: tuple[Any, ...] = ()
    literal: Any = None
    value: ValueFn | None = None  # source "closure": the value part (default/map/as applied inside)
    render: ValueFn | None = None  # source "template": the reference renderer (slow path)
    default: Any = MISSING
    table: dict[str, Any] | None = None
    key_of: Callable[[Any], Any] | None = None
    conv: Callable[[Any], Any] | None = None
    required: bool = False
    fallback: Any = None
    check: str = "any"  # str | int | long | bool | any
    accepts: Callable[[Any], bool] | None = None
    missing: Callable[[], Any] | None = None  # raises when required, else returns the fallback
    wrong: Callable[[Any], Exception] | None = None
    origin: str = ""  # where the field is written, e.g. "integrations/x.yaml:23 mapping.fields.title"


@dataclass
class _Source:
    lines: list[str] = field(default_factory=list)
    consts: dict[str, Any] = field(default_factory=dict)
    prefixes: dict[tuple[str, ...], str] = field(default_factory=dict)

    def const(self, value: Any) -> str:
        name = f"_c{len(self.consts)}"
        self.consts[name] = value
        return name

    def path(self, steps: tuple[str, ...]) -> str:
        """The variable holding the value at ``steps`` from ``item`` (computed once per call)."""
        if not steps:
            return "item"
        if steps in self.prefixes:
            return self.prefixes[steps]
        parent = self.path(steps[:-1])
        var = f"_p{len(self.prefixes)}"
        key = self.const(steps[-1])
        self.lines.append(f"    {var} = {parent}.get({key}, _MISSING) if type({parent}) is dict else _MISSING")
        self.prefixes[steps] = var
        return var


def generate(plans: list[FieldPlan], what: str = "mapping", where: str = ""
             ) -> Callable[[Any, Any, Any], dict[str, Any]]:
    """One ``build(item, root, meta) -> dict`` equivalent to calling every plan's closure.

    ``what`` and ``where`` name the generated code in tracebacks (router.spec.generated); the
    function carries its :class:`GeneratedCode` as ``build.generated``.
    """
    src = _Source()
    body: list[str] = []
    for i, plan in enumerate(plans):
        lines = _field(src, plan, f"v{i}")
        body += _with_origin(lines, plan.origin) if plan.origin else lines
    result = ", ".join(f"{src.const(p.name)}: v{i}" for i, p in enumerate(plans))
    src.consts["_MISSING"] = MISSING
    params = ", ".join(f"{name}={name}" for name in src.consts)
    text = "\n".join([f"def build(item, root, meta, {params}):", *src.lines, *body, f"    return {{{result}}}", ""])
    namespace: dict[str, Any] = dict(src.consts)
    code, filename = compile_generated(text, what, where)
    exec(code, namespace)  # noqa: S102 - generated identifiers only, see module doc
    build: Callable[[Any, Any, Any], dict[str, Any]] = namespace["build"]
    build.__source__ = text  # type: ignore[attr-defined]  # for debugging and tests
    build.generated = GeneratedCode(what, filename, text, dict(src.consts))  # type: ignore[attr-defined]
    build.plans = tuple(plans)  # type: ignore[attr-defined]  # the reference closures, for tests
    return build


def _with_origin(lines: list[str], origin: str) -> list[str]:
    """A comment line naming ``origin`` first, and ``origin`` again after every line that calls or
    raises (the lines a traceback can stop at). The shared prefix walks get none: they serve several
    fields and cannot fail."""
    return [f"    # {origin}", *(f"{line}  # {origin}" if "(" in line else line for line in lines)]


def _field(src: _Source, plan: FieldPlan, v: str) -> list[str]:
    if plan.source == "closure":
        return [f"    {v} = {src.const(plan.closure)}(item, root, meta)"]
    if plan.source == "const" and plan.wrong is None:  # an unmapped field's Avro default
        return [f"    {v} = {src.const(plan.literal)}"]
    lines = _value(src, plan, v)
    lines += _after_value(src, plan, v)
    lines += _check(src, plan, v)
    return lines


def _value(src: _Source, plan: FieldPlan, v: str) -> list[str]:
    if plan.source == "path":
        return [f"    {v} = {src.path(plan.steps)}"]
    if plan.source == "meta":
        return [f"    {v} = meta.{_meta_attr(plan.meta_name)}"]
    if plan.source == "const":
        return [f"    {v} = {src.const(plan.literal)}"]
    return _template(src, plan, v)


def _meta_attr(name: str) -> str:
    if name not in ("tenant", "source", "event_id", "integration", "received_at"):
        raise ValueError(f"unknown meta name {name!r}")
    return name


def _template(src: _Source, plan: FieldPlan, v: str) -> list[str]:
    """Fast path for str / int parts; anything else (or a hole) takes the reference renderer."""
    lines = [f"    {v}_ok = True"]
    pieces: list[str] = []
    for j, part in enumerate(plan.parts):
        if isinstance(part, str):
            pieces.append(src.const(part))
            continue
        kind, ref = part
        var = f"{v}_{j}"
        expr = src.path(ref) if kind == "path" else f"meta.{_meta_attr(ref)}"
        lines += [
            f"    {var} = {expr}",
            f"    if type({var}) is not str:",
            f"        if type({var}) is int:",
            f"            {var} = str({var})",
            "        else:",
            f"            {v}_ok = False",
        ]
        pieces.append(var)
    joined = " + ".join(pieces) if pieces else "''"
    lines.append(f"    {v} = ({joined}) if {v}_ok else {src.const(plan.render)}(item, root, meta)")
    return lines


def _after_value(src: _Source, plan: FieldPlan, v: str) -> list[str]:
    """default, map and as, in the order compile_value applies them."""
    if plan.table is None and plan.conv is None and plan.default is MISSING:
        return []
    default = src.const(plan.default)
    lines = [f"    if {v} is _MISSING or {v} is None:", f"        {v} = {default}"]
    if plan.table is None and plan.conv is None:
        return lines
    lines.append("    else:")
    if plan.table is not None:
        table, key_of = src.const(plan.table), src.const(plan.key_of)
        lines += [
            f"        {v} = {table}.get({v} if type({v}) is str else {key_of}({v}), _MISSING)",
            f"        if {v} is _MISSING or {v} is None:",
            f"            {v} = {default}",
        ]
        if plan.conv is not None:
            lines += ["        else:", f"            {v} = {src.const(plan.conv)}({v})"]
    else:
        lines.append(f"        {v} = {src.const(plan.conv)}({v})")
    return lines


def _check(src: _Source, plan: FieldPlan, v: str) -> list[str]:
    if plan.required:
        on_missing = f"        {v} = {src.const(plan.missing)}()"
    else:
        on_missing = f"        {v} = {src.const(plan.fallback)}"
    test = {
        "str": f"type({v}) is not str",
        "bool": f"type({v}) is not bool",
        "int": f"type({v}) is not int or not {_INT32[0]} <= {v} <= {_INT32[1]}",
        "long": f"type({v}) is not int or not {_INT64[0]} <= {v} <= {_INT64[1]}",
    }.get(plan.check, f"not {src.const(plan.accepts)}({v})")
    return [
        f"    if {v} is _MISSING or {v} is None:",
        on_missing,
        f"    elif {test}:",
        f"        raise {src.const(plan.wrong)}({v})",
    ]
