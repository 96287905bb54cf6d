"""Generated Python that a reader can find: a traceback shows its lines, `router spec show-code` prints it.

Mappings (``router.spec.mapgen``) and Avro writers (``router.spec.avro_writer``) are compiled to
Python source and ``exec``-ed once. Compiled under a plain ``"<mapping>"`` name, a failure inside
them gave a traceback with no source line. Here each text is compiled under a name that says what
it was generated from (the spec file, the Avro record), and the text is put in ``linecache``, the
way ``dataclasses`` and ``attrs`` do, so tracebacks, ``pdb`` and ``inspect`` show the generated
line (mapping lines end with a comment naming the spec file, line and field they come from).
"""

from __future__ import annotations

import hashlib
import linecache
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class GeneratedCode:
    """One generated function's source, the name it was compiled under and the constants it is bound to."""

    what: str  # e.g. "mapping of com.example.pagerduty.Incident"
    filename: str
    text: str
    constants: dict[str, Any] = field(default_factory=dict, repr=False)


def generated_name(text: str, what: str, where: str = "") -> str:
    """The name ``text`` is compiled under: it says ``what`` and ``where`` and holds a digest of the
    text, so two different texts never share one linecache entry."""
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    return f"<generated {what}{f', {where}' if where else ''}, {digest}>"


def compile_generated(text: str, what: str, where: str = "") -> tuple[Any, str]:
    """(code object, filename) for ``text``, its lines registered in ``linecache`` under that filename."""
    filename = generated_name(text, what, where)
    # mtime None: linecache.checkcache keeps the entry (there is no file to compare it with).
    linecache.cache[filename] = (len(text), None, text.splitlines(keepends=True), filename)
    return compile(text, filename, "exec"), filename
