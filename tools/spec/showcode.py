"""`router spec show-code INTEGRATION`: the Python an integration's spec is compiled to.

What a partner engineer reads when a mapping does something unexpected or a traceback ends in
``<generated mapping of …>``: every generated function of the mapping (nested records first), each
line ending with the spec file, line and field it comes from, then the constants it is bound to
(spec values never enter the source as text), then the Avro writer of the output schema.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from router.spec.avro_writer import _Unsupported, generate_source
from router.spec.generated import GeneratedCode, generated_name
from router.spec.model import Integration

SHOWN_CHARS = 120


def _constants(constants: dict[str, Any]) -> Iterator[str]:
    if constants:
        yield "# constants:"
    for name, value in constants.items():
        shown = repr(value)
        yield f"#   {name} = {shown if len(shown) <= SHOWN_CHARS else shown[:SHOWN_CHARS] + '…'}"


def _section(code: GeneratedCode) -> Iterator[str]:
    yield f"# ---- {code.what}, compiled as {code.filename}"
    yield from code.text.rstrip("\n").splitlines()
    yield from _constants(code.constants)
    yield ""


def _avro_writer(integration: Integration) -> Iterator[str]:
    schema = integration.schema
    try:
        text, constants = generate_source(schema.raw)
    except _Unsupported:
        yield f"# ---- avro writer of {schema.full_name}: not generated; fastavro writes this schema itself"
        return
    what = f"avro writer of {schema.full_name}"
    code = GeneratedCode(what, generated_name(text, what), text, {f"_K{i}": v for i, v in enumerate(constants)})
    yield from _section(code)


def show_code(integration: Integration, *, avro: bool = True) -> str:
    """The generated source of ``integration``'s mapping (and, with ``avro``, its Avro writer)."""
    lines = [f"# {integration.name} v{integration.version}, {integration.file}",
             "# Each mapping line ends with the spec file, line and field it was generated from; a traceback",
             "# through this code names the same <generated …> file.", ""]
    for code in integration.generated:
        lines += _section(code)
    if avro:
        lines += _avro_writer(integration)
    return "\n".join(lines)
