"""The error-code catalogue (router/codes.py) is the only place a code is written down: codes are
unique and well formed, no source file carries a bare code literal, every error class's code and
every gateway problem is declared, nothing declared is dead, and the generated docs are current."""

from __future__ import annotations

import ast
import importlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from router import codes
from router.errors import RouterError
from tools.codes.cli import REGENERATE, stale_docs

ROOT = Path(__file__).resolve().parents[2]
SOURCE_DIRS = ("router", "producers", "consumers", "services", "tools")
CATALOGUE_FILE = ROOT / "router" / "codes.py"
FIXED = re.compile(r"^[a-z]+\.[a-z][a-z0-9_]*$")
FAMILY = re.compile(r"^[a-z]+\.[a-z0-9_]*<[a-z]+>$")
# The `router.` prefix is also every logger, group and span attribute name (`router.route`,
# `router.tenant`), so only the root's default `router.error` carries it; it is not scanned.
SCANNED_PREFIXES = sorted({code.split(".", 1)[0] for code in codes.CATALOGUE} - {"router"})
CODE_LITERAL = re.compile(rf"^(?:{'|'.join(SCANNED_PREFIXES)})\.[a-z0-9_]+$")
NOT_CODES = {"dlq.md", "admin.log"}  # file names that look like codes


def source_files() -> Iterator[Path]:
    for folder in SOURCE_DIRS:
        yield from (p for p in sorted((ROOT / folder).rglob("*.py")) if p != CATALOGUE_FILE)


def constants() -> dict[str, str]:
    """The catalogue's public constants: name → code."""
    return {name: value for name, value in vars(codes).items()
            if name.isupper() and isinstance(value, str) and value in codes.CATALOGUE}


def test_codes_are_unique_and_well_formed() -> None:
    by_code: dict[str, list[str]] = {}
    for name, code in constants().items():
        by_code.setdefault(code, []).append(name)
    assert {c: n for c, n in by_code.items() if len(n) > 1} == {}, "one constant per code"
    assert set(by_code) == set(codes.CATALOGUE), "every entry has its constant"
    for code, entry in codes.CATALOGUE.items():
        assert entry.code == code
        assert FIXED.match(code) or FAMILY.match(code), f"{code!r}: codes are <area>.<reason>, lowercase"
        assert entry.meaning and "\n" not in entry.meaning and "\n" not in entry.action, code
        assert bool(entry.stages) == (entry.area == "dlq"), f"{code}: a dead-letter code names its stages"
    with pytest.raises(ValueError, match="declared twice"):
        codes._declare("decode.invalid_json", "dlq", "DLQ", retryable=False, meaning="again")


def test_constant_names_follow_their_codes() -> None:
    for name, code in constants().items():
        assert name == re.sub(r"[.<>]+", "_", code).strip("_").upper() or code == codes.GATEWAY_HTTP, (name, code)


def test_no_bare_code_literal_in_the_source() -> None:
    """Raise sites name the catalogue's constant; a code written as a string is refused, declared
    or not, and so is one built with an f-string where a code goes (``code=``, ``"code":``)."""
    found = []
    for path in source_files():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        where = path.relative_to(ROOT)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str) and CODE_LITERAL.match(node.value)
                    and node.value not in NOT_CODES):
                state = "declared" if node.value in codes.CATALOGUE else "NOT in the catalogue"
                found.append(f"{where}:{node.lineno}: {node.value!r} ({state})")
            dynamic = [kw.value for kw in node.keywords if kw.arg == "code"] if isinstance(node, ast.Call) else []
            if isinstance(node, ast.Dict):
                dynamic += [v for k, v in zip(node.keys, node.values, strict=True)
                            if isinstance(k, ast.Constant) and k.value == "code"]
            found += [f"{where}:{v.lineno}: code built as {ast.unparse(v)}" for v in dynamic
                      if isinstance(v, ast.JoinedStr)]
    assert found == [], "use a router.codes constant (declare new codes there):\n" + "\n".join(found)


def test_every_error_class_code_is_declared() -> None:
    for name in ("producers.cohorts.errors", "router.dlq.read", "router.dlq.replay", "services.registry.compat",
                 "router.spec.load", "consumers.route.worker", "consumers.deliver.auth"):
        importlib.import_module(name)
    seen, todo = set(), [RouterError]
    while todo:
        cls = todo.pop()
        seen.add(cls)
        todo += [c for c in cls.__subclasses__() if c not in seen]
    assert len(seen) > 15
    assert [f"{c.__qualname__}: {c.code}" for c in seen if c.code not in codes.CATALOGUE] == []


def test_gateway_problems_match_the_catalogue() -> None:
    from producers.webhooks.problems import CODES

    gateway = {e.code: e for e in codes.CATALOGUE.values() if e.area == "gateway" and e.code != codes.GATEWAY_HTTP}
    assert set(CODES) == set(gateway)
    for code, (status, _title) in CODES.items():
        assert gateway[code].seen == f"HTTP {status}", code
    assert codes.gateway_http(400) == "gateway.http_400"


def test_internal_codes_per_stage() -> None:
    stages: tuple[codes.InternalStage, ...] = ("decode", "map", "encode", "deliver")
    assert {stage: codes.internal(stage) for stage in stages} == {
        "decode": "internal.decode", "map": "internal.map", "encode": "internal.encode", "deliver": "internal.deliver"}


def test_every_declared_code_is_used() -> None:
    """A catalogue entry nothing refers to is a documented code nobody emits."""
    text = "\n".join(p.read_text(encoding="utf-8") for p in source_files())
    via_helpers = {codes.GATEWAY_HTTP: "codes.gateway_http(",
                   **{code: "codes.internal(" for code in codes._INTERNAL.values()}}
    unused = [name for name, code in constants().items()
              if not re.search(rf"\b{name}\b", text) and via_helpers.get(code, "\0") not in text]
    assert unused == []


def test_generated_docs_are_current() -> None:
    stale = [str(p.relative_to(ROOT)) for p in stale_docs()]
    assert stale == [], f"{', '.join(stale)} out of date with router/codes.py: run `{REGENERATE}`"
